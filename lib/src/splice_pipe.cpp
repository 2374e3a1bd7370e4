// SPDX-License-Identifier: MIT
#include "splice_pipe.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <cerrno>

namespace gw {
namespace {

// splice() has no MSG_NOSIGNAL: splicing into a socket whose peer has closed
// raises SIGPIPE, which kills a program that does not ignore it (gatewayd
// does; firmware embedding the core may not). So the loop thread blocks
// SIGPIPE before its first splice, and a SIGPIPE that a splice raised is taken
// back at once (sigtimedwait without waiting) so that it never stays pending.
// Only the failing call pays for that; the fast path makes no extra call.
void block_sigpipe_on_this_thread() noexcept {
  thread_local bool blocked = false;
  if (blocked) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  blocked = pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}

void take_back_sigpipe() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  timespec no_wait{};
  while (sigtimedwait(&set, nullptr, &no_wait) == SIGPIPE) {}
}

}  // namespace

int SplicePipe::open() noexcept {
  block_sigpipe_on_this_thread();
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  // Bigger pipes mean fewer wake-ups per megabyte on a bulk flow; the pages
  // are only allocated while data sits in the pipe. Refused (an unprivileged
  // user over fs.pipe-user-pages-soft): keep the default.
  int size = ::fcntl(write_end_.get(), F_SETPIPE_SZ, 256 * 1024);
  if (size > 0) capacity_ = static_cast<size_t>(size);
  return 0;
}

ssize_t SplicePipe::fill_from(int socket) noexcept {
  ssize_t n = ::splice(socket, nullptr, write_end_.get(), nullptr, room(), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) held_ += static_cast<size_t>(n);
  return n < 0 ? -errno : n;
}

ssize_t SplicePipe::drain_to(int socket) noexcept {
  if (!held_) return 0;
  ssize_t n = ::splice(read_end_.get(), nullptr, socket, nullptr, held_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) held_ -= static_cast<size_t>(n);
  if (n >= 0) return n;
  int error = errno;
  if (error == EPIPE) take_back_sigpipe();
  return -error;
}

ssize_t SplicePipe::read_into(void *buffer, size_t length) noexcept {
  ssize_t n = ::read(read_end_.get(), buffer, length);
  if (n > 0) held_ -= static_cast<size_t>(n);
  return n;
}

}  // namespace gw
