// SPDX-License-Identifier: MIT
// SplicePipe: the kernel pipe through which splice() moves bytes from one
// socket to another. Private to lib/: only the forwarder's BackendLink uses it.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "gw/fd.hpp"

namespace gw {

/// A kernel pipe between two sockets for splice(), with the count of bytes in
/// it. Owns both ends of the pipe (gw::Fd each); the bytes it holds are kernel
/// pages, allocated only while they sit there. Loop thread only: open() blocks
/// SIGPIPE on the calling thread, which must be the thread that splices.
class SplicePipe {
 public:
  SplicePipe() = default;
  SplicePipe(const SplicePipe &) = delete;
  SplicePipe &operator=(const SplicePipe &) = delete;
  ~SplicePipe();

  /// Makes the pipe (non-blocking, close-on-exec), grown to 256 KiB where the
  /// system allows it; fill_from() may grow it later up to `most` bytes (see
  /// there). Returns 0 or a negated errno (out of fds, say).
  int open(size_t most) noexcept;

  size_t held() const noexcept { return held_; }
  /// What a fill may still bring: 0 once the kernel refused one while the
  /// pipe held bytes (its slots are full: see fill_from), until a drain.
  size_t room() const noexcept { return full_ ? 0 : capacity_ - held_; }

  /// socket -> pipe, as much as fits: > 0 moved, 0 EOF, -EAGAIN, or a negated
  /// errno. The first fill that leaves the pipe full grows it to 1 MiB (at
  /// most open()'s `most`, and while the process-wide budget allows it).
  /// -EAGAIN with bytes held leaves room() at 0 (full) unless it grew.
  ssize_t fill_from(int socket) noexcept;
  /// pipe -> socket: >= 0 moved, -EAGAIN, or a negated errno. A SIGPIPE that
  /// the splice raised (EPIPE) is taken back before this returns.
  ssize_t drain_to(int socket) noexcept;
  /// pipe -> memory, at most `length` bytes (a read(), for handing bytes back
  /// to user space): > 0 read, or what read() returned when it read nothing.
  ssize_t read_into(void *buffer, size_t length) noexcept;

 private:
  bool grow() noexcept;  // true if the pipe grew
  void took(size_t bytes) noexcept {
    held_ -= static_cast<uint32_t>(bytes);
    full_ = false;
  }

  // 32 bits each (a pipe holds at most INT_MAX bytes, F_SETPIPE_SZ takes an
  // int): every forwarded client carries two of these, idle or not.
  Fd read_end_, write_end_;
  uint32_t held_ = 0;
  uint32_t capacity_ = 64 * 1024;  // Linux's default pipe size, until open() learns the real one
  uint32_t most_ = 0;              // what grow() may reach; 0 once it was tried
  bool in_budget_ = false;         // this pipe holds one of the grown pipes' budget
  bool full_ = false;              // the kernel refused a fill; cleared by a drain
};

}  // namespace gw
