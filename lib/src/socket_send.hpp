// SPDX-License-Identifier: MIT
// Internal: one non-blocking send of a few parts, shared by Connection and
// BackendLink (the two places that hand bytes straight to a socket).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

namespace gw {

// Sends `parts` on the non-blocking socket `fd` without SIGPIPE; returns what
// send(2)/sendmsg(2) returned (retried on EINTR). A single part, the common
// case (raw framing), goes through send(2): the kernel then skips copying a
// msghdr and importing an iovec array, which is measurable per message on
// small-message ping-pong. Thread-agnostic; the caller owns `fd`.
inline ssize_t send_parts_now(int fd, const iovec *parts, int count) noexcept {
  ssize_t n;
  if (count == 1) {
    do n = ::send(fd, parts[0].iov_base, parts[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n;
  }
  msghdr message{};
  message.msg_iov = const_cast<iovec *>(parts);
  message.msg_iovlen = static_cast<size_t>(count);
  do n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace gw
