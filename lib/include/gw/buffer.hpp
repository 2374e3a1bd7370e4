// SPDX-License-Identifier: MIT
// Buffer: bytes waiting to be parsed or written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include <sys/uio.h>

namespace gw {

/// A FIFO byte queue that holds memory only while it holds data: an idle
/// connection's buffers cost nothing, and once drained the memory goes back to
/// the allocator. Growth is geometric, so appending is amortised O(1) and a
/// steady flow reuses one block. Not thread-safe; owned by one connection.
class Buffer {
 public:
  size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return begin_ == end_; }
  const uint8_t *data() const noexcept { return storage_.get() + begin_; }

  void append(const void *bytes, size_t length) {
    if (length == 0) return;
    reserve_tail(length);
    std::memcpy(storage_.get() + end_, bytes, length);
    end_ += length;
  }

  /// Appends the pieces, leaving out their first `skip` bytes: what a partial
  /// writev()/sendmsg() did not take.
  void append_parts(const iovec *parts, int count, size_t skip) {
    for (int i = 0; i < count; ++i) {
      size_t length = parts[i].iov_len;
      if (skip >= length) {
        skip -= length;
        continue;
      }
      append(static_cast<const uint8_t *>(parts[i].iov_base) + skip, length - skip);
      skip = 0;
    }
  }

  /// Drops `length` bytes from the front; frees the block once empty.
  void consume(size_t length) noexcept {
    begin_ += length;
    if (begin_ >= end_) release();
  }

  void release() noexcept {
    storage_.reset();
    capacity_ = begin_ = end_ = 0;
  }

 private:
  void reserve_tail(size_t length) {
    if (end_ + length <= capacity_) return;
    size_t used = size();
    if (used + length <= capacity_ && begin_ >= capacity_ / 2) {
      // Enough room once the consumed front is reclaimed: slide, do not grow.
      std::memmove(storage_.get(), storage_.get() + begin_, used);
    } else {
      size_t capacity = capacity_ ? capacity_ : 512;
      while (capacity < used + length) capacity *= 2;
      std::unique_ptr<uint8_t[]> bigger(new uint8_t[capacity]);
      if (used) std::memcpy(bigger.get(), storage_.get() + begin_, used);
      storage_ = std::move(bigger);
      capacity_ = capacity;
    }
    begin_ = 0;
    end_ = used;
  }

  std::unique_ptr<uint8_t[]> storage_;
  size_t capacity_ = 0, begin_ = 0, end_ = 0;
};

}  // namespace gw
