// SPDX-License-Identifier: MIT
#include "splice_pipe.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <utility>

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

// A pipe starts at 256 KiB; one that a flow filled grows to 1 MiB, which
// quarters the splices per megabyte of a bulk flow (a splice moves at most a
// pipe's worth). The kernel counts a pipe's capacity, used or not, against
// its user's fs.pipe-user-pages-soft (64 MiB by default), and a user over it
// gets 8 KiB pipes from then on: so grown pipes may take at most a quarter of
// that quota, process-wide, and give their share back when they close.
constexpr size_t open_size = 256 * 1024;
constexpr size_t grown_size = 1024 * 1024;
constexpr size_t page_size = 4096;

// How many pipes may be grown at once: a quarter of the soft quota, in pages,
// over the pages a grown pipe adds. No limit when the quota is off (0).
size_t grown_budget() noexcept {
  static const size_t budget = []() -> size_t {
    unsigned long pages = 16384;  // the kernel's default, if the file cannot be read
    if (FILE *file = std::fopen("/proc/sys/fs/pipe-user-pages-soft", "re")) {
      if (std::fscanf(file, "%lu", &pages) != 1) pages = 16384;
      std::fclose(file);
    }
    if (pages == 0) return static_cast<size_t>(-1);
    return pages / 4 / ((grown_size - open_size) / page_size);
  }();
  return budget;
}

// Pipes grown now, across every server and thread of the process.
std::atomic<size_t> grown_pipes{0};

}  // namespace

SplicePipe::~SplicePipe() {
  if (in_budget_) grown_pipes.fetch_sub(1, std::memory_order_relaxed);
}

int SplicePipe::open(size_t most) noexcept {
  block_sigpipe_on_this_thread();
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  // Bigger pipes mean fewer wake-ups per megabyte on a bulk flow; the pages
  // are only allocated while data sits in the pipe. Refused, the pipe keeps
  // the size the kernel made it, which is not always Linux's default: over
  // fs.pipe-user-pages-soft an unprivileged user gets 8 KiB. room() must not
  // claim more (see fill_from): the pump asks epoll for a readable socket
  // while there is room, and a splice into a full pipe fails (EAGAIN) each
  // time it wakes, a busy loop for as long as the other side is slow.
  int size = ::fcntl(write_end_.get(), F_SETPIPE_SZ, static_cast<int>(open_size));
  if (size <= 0) size = ::fcntl(write_end_.get(), F_GETPIPE_SZ);
  if (size > 0) capacity_ = static_cast<uint32_t>(size);
  most_ = static_cast<uint32_t>(most < grown_size ? most : grown_size);
  return 0;
}

// Only the direction that really carries a bulk flow grows (a download's
// upload pipe stays small), and only once: a refusal (EPERM: over the quota
// or fs.pipe-max-size) is not asked again. The pages are still only
// allocated while bytes sit in the pipe.
bool SplicePipe::grow() noexcept {
  size_t most = std::exchange(most_, 0u);
  if (most <= capacity_) return false;
  if (grown_pipes.fetch_add(1, std::memory_order_relaxed) >= grown_budget()) {
    grown_pipes.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  int size = ::fcntl(write_end_.get(), F_SETPIPE_SZ, static_cast<int>(most));
  if (size <= 0 || static_cast<size_t>(size) <= capacity_) {
    grown_pipes.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  capacity_ = static_cast<uint32_t>(size);
  in_budget_ = true;
  return true;
}

// A pipe is full when its slots are, and a slot holds one piece of a socket
// buffer, whatever its length: F_GETPIPE_SZ counts a page a slot, so the
// bytes a pipe takes are not known in advance. A refusal (EAGAIN) while the
// pipe holds bytes therefore counts as full until a drain, unless the pipe
// could grow. It may have meant a dry socket instead; then reading on before
// the drain would only move bytes from the socket's buffer into the pipe's:
// the flow waits on the drain either way.
ssize_t SplicePipe::fill_from(int socket) noexcept {
  ssize_t n = ::splice(socket, nullptr, write_end_.get(), nullptr, room(), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0) {
    int error = errno;
    if (error == EAGAIN && held_ && !(most_ && grow())) full_ = true;
    return -error;
  }
  held_ += static_cast<uint32_t>(n);
  if (held_ == capacity_ && most_) grow();
  return n;
}

ssize_t SplicePipe::drain_to(int socket) noexcept {
  if (!held_) return 0;
  ssize_t n = ::splice(read_end_.get(), nullptr, socket, nullptr, held_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) took(static_cast<size_t>(n));
  if (n >= 0) return n;
  int error = errno;
  if (error == EPIPE) take_back_sigpipe();
  return -error;
}

ssize_t SplicePipe::read_into(void *buffer, size_t length) noexcept {
  ssize_t n = ::read(read_end_.get(), buffer, length);
  if (n > 0) took(static_cast<size_t>(n));
  return n;
}

}  // namespace gw
