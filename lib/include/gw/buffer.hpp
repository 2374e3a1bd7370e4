// SPDX-License-Identifier: MIT
// Buffer: bytes waiting to be parsed or written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include <sys/uio.h>

namespace gw {

/// A FIFO byte queue that holds memory only while it holds data: an idle
/// connection's buffers cost one null pointer each, and once drained the
/// memory goes back to the allocator. The positions live in the heap block
/// with the bytes, so an empty Buffer is 8 bytes, not 32: every connection and
/// backend link has one or two, nearly all of them empty. Growth is geometric,
/// so appending is amortised O(1) and a steady flow reuses one block. Not
/// thread-safe; owned by one connection.
class Buffer {
 public:
  size_t size() const noexcept { return block_ ? block_->end - block_->begin : 0; }
  bool empty() const noexcept { return !block_; }  // a block is freed as soon as it is drained
  const uint8_t *data() const noexcept { return block_ ? block_->bytes() + block_->begin : nullptr; }

  void append(const void *bytes, size_t length) {
    if (length == 0) return;
    reserve_tail(length);
    std::memcpy(block_->bytes() + block_->end, bytes, length);
    block_->end += length;
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
    if (!block_) return;
    block_->begin += length;
    if (block_->begin >= block_->end) release();
  }

  void release() noexcept { block_.reset(); }

 private:
  /// One heap allocation: this header, then `capacity` bytes, of which
  /// [begin, end) are queued.
  struct Block {
    size_t capacity, begin, end;
    uint8_t *bytes() noexcept { return reinterpret_cast<uint8_t *>(this + 1); }
    const uint8_t *bytes() const noexcept { return reinterpret_cast<const uint8_t *>(this + 1); }
  };
  struct FreeBlock {
    void operator()(Block *block) const noexcept { ::operator delete(block); }
  };
  using BlockPtr = std::unique_ptr<Block, FreeBlock>;

  /// The first block is 512 bytes with its header; each next one doubles.
  static constexpr size_t first_allocation = 512;

  static BlockPtr allocate(size_t capacity) {
    return BlockPtr(new (::operator new(sizeof(Block) + capacity)) Block{capacity, 0, 0});
  }

  void reserve_tail(size_t length) {
    size_t used = size();
    if (block_ && block_->end + length <= block_->capacity) return;
    if (block_ && used + length <= block_->capacity && block_->begin >= block_->capacity / 2) {
      // Enough room once the consumed front is reclaimed: slide, do not grow.
      std::memmove(block_->bytes(), block_->bytes() + block_->begin, used);
    } else {
      size_t allocation = block_ ? sizeof(Block) + block_->capacity : first_allocation;
      while (allocation - sizeof(Block) < used + length) allocation *= 2;
      BlockPtr bigger = allocate(allocation - sizeof(Block));
      if (used) std::memcpy(bigger->bytes(), block_->bytes() + block_->begin, used);
      block_ = std::move(bigger);
    }
    block_->begin = 0;
    block_->end = used;
  }

  BlockPtr block_;  // null while empty
};

}  // namespace gw
