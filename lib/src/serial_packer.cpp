// SPDX-License-Identifier: MIT
#include "serial_packer.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace gw {

SerialPacker::SerialPacker(EventLoop &loop, const SerialPacking &packing, uint32_t gap_us, size_t cap, Emit emit)
    : packing_(packing),
      gap_us_(gap_us),
      cap_(packing.max_packet && packing.max_packet < cap ? packing.max_packet : cap),
      emit_(std::move(emit)),
      gap_timer_(loop, [this] { flush(); }),
      hold_timer_(loop, [this] { flush(); }) {}

bool SerialPacker::passthrough() const noexcept {
  return !gap_us_ && packing_.delimiter.empty() && !packing_.max_packet && !packing_.max_hold_ms;
}

void SerialPacker::set_gap_us(uint32_t gap_us) noexcept { gap_us_ = gap_us; }

void SerialPacker::feed(const uint8_t *data, size_t length) {
  if (passthrough() && pending_.empty()) return emit_capped(data, length);
  while (length > 0) {
    size_t take = cap_ - pending_.size();
    if (take > length) take = length;
    const size_t end = delimiter_end(data, take);
    const bool delimited = end != 0;
    if (delimited) take = end;
    if (pending_.empty() && packing_.max_hold_ms) hold_timer_.start(packing_.max_hold_ms);
    pending_.append(data, take);
    data += take;
    length -= take;
    if (delimited || pending_.size() >= cap_) emit_pending(delimited);
  }
  if (!pending_.empty() && gap_us_) gap_timer_.start(gap_delay_ms(gap_us_));
}

// Where the first delimiter in `data` ends (an offset past it, > 0), taking a
// two-byte delimiter split over the held bytes and `data` into account; 0
// when `data` completes none.
size_t SerialPacker::delimiter_end(const uint8_t *data, size_t length) const noexcept {
  const std::string &delimiter = packing_.delimiter;
  if (delimiter.empty() || length == 0) return 0;
  const auto first = static_cast<uint8_t>(delimiter[0]);
  if (delimiter.size() == 1) {
    const void *found = std::memchr(data, first, length);
    return found ? static_cast<size_t>(static_cast<const uint8_t *>(found) - data) + 1 : 0;
  }
  const auto second = static_cast<uint8_t>(delimiter[1]);
  if (!pending_.empty() && pending_.data()[pending_.size() - 1] == first && data[0] == second) return 1;
  for (size_t i = 0; i + 1 < length; ++i) {
    if (data[i] == first && data[i + 1] == second) return i + 2;
  }
  return 0;
}

void SerialPacker::emit_pending(bool ends_with_delimiter) {
  gap_timer_.stop();
  hold_timer_.stop();
  // Moved out first: emit_ may feed or flush again through its clients.
  Buffer packet = std::move(pending_);
  pending_ = Buffer();
  size_t length = packet.size();
  if (ends_with_delimiter && !packing_.keep_delimiter) length -= std::min(length, packing_.delimiter.size());
  emit_(packet.data(), length);
}

void SerialPacker::emit_capped(const uint8_t *data, size_t length) {
  while (length > 0) {
    const size_t piece = length < cap_ ? length : cap_;
    emit_(data, piece);
    data += piece;
    length -= piece;
  }
}

void SerialPacker::flush() {
  if (pending_.empty()) return;
  emit_pending(false);
}

void SerialPacker::discard() noexcept {
  gap_timer_.stop();
  hold_timer_.stop();
  pending_.release();
}

}  // namespace gw
