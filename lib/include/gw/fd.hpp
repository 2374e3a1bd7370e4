// SPDX-License-Identifier: MIT
// Fd: the single owner of one file descriptor.
#pragma once
#include <unistd.h>

#include <utility>

namespace gw {

/// Owns one file descriptor and closes it exactly once, in its destructor or
/// in reset(). Move-only. Not thread-safe (like the fd it wraps, it belongs to
/// one thread at a time).
///
/// How the core's functions take one, so that the type says who owns it:
/// - `Fd &&` when taking it over can fail: the function moves from it only on
///   success, so on failure the caller still owns it (and, for an adopted
///   socket, finds it as it was). Server::adopt, Listener::create and
///   Connection::create are of this kind.
/// - `Fd` by value when it always takes it, even to close it at once (a
///   refused client): the caller has given it up at the call.
class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd &&other) noexcept : fd_(other.release()) {}
  Fd &operator=(Fd &&other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  /// Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }

  /// Closes the owned fd (if any) and takes ownership of `fd`. close() is not
  /// retried on EINTR: on Linux the fd is gone either way.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace gw
