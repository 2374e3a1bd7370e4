// SPDX-License-Identifier: MIT
// SerialPacker: cuts the bytes read from a serial device into packets
// (device -> network), by idle gap, delimiter, length and hold time. Internal
// to the serial backend; declared here so that it has a unit test of its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "gw/buffer.hpp"
#include "gw/event_loop.hpp"
#include "gw/serial_backend.hpp"

namespace gw {

/// Holds device bytes until a packet is complete and hands each complete
/// packet to `emit`. With every rule off (the default SerialPacking) it
/// holds nothing: each read is emitted at once, with no copy and no timer.
///
/// Timing: the loop's timers count whole milliseconds, so an idle gap is
/// rounded up to whole milliseconds, plus one, so that it is never shorter
/// than asked (a timer started at 10.9 ms for 1 ms would fire at 11.0 ms).
/// The gap is measured from the read that brought the last bytes, which is
/// at most the driver's latency after the last byte on the wire. max_hold
/// is a limit, so it is not padded: it may end up to 1 ms early.
///
/// Ownership and threading: owned by the serial backend; loop thread only.
/// `emit` may close clients, but must not destroy the packer.
class SerialPacker {
 public:
  using Emit = std::function<void(const uint8_t *data, size_t length)>;

  /// `gap_us`: the effective idle gap (0 = off), already derived from the
  /// baud rate if the configuration gives it in characters. `cap`: the
  /// largest packet held (> 0), whatever max_packet says.
  SerialPacker(EventLoop &loop, const SerialPacking &packing, uint32_t gap_us, size_t cap, Emit emit);

  /// Takes bytes read from the device; emits every packet they complete.
  void feed(const uint8_t *data, size_t length);
  /// Emits what is held (the device is going away, or a timer ran out).
  void flush();
  /// Drops what is held.
  void discard() noexcept;
  /// A new gap after a baud rate change (0 = off).
  void set_gap_us(uint32_t gap_us) noexcept;

  size_t held() const noexcept { return pending_.size(); }
  /// True when no rule is on: reads are emitted as they come.
  bool passthrough() const noexcept;

  /// The timer delay for a gap of `gap_us` (see Timing above).
  static uint64_t gap_delay_ms(uint32_t gap_us) noexcept { return gap_us ? (gap_us + 999) / 1000 + 1 : 0; }

 private:
  size_t delimiter_end(const uint8_t *data, size_t length) const noexcept;
  void emit_pending(bool ends_with_delimiter);
  void emit_capped(const uint8_t *data, size_t length);

  SerialPacking packing_;
  uint32_t gap_us_;
  size_t cap_;
  Emit emit_;
  Buffer pending_;
  Timer gap_timer_;
  Timer hold_timer_;
};

}  // namespace gw
