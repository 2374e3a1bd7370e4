// SPDX-License-Identifier: MIT
// Internal: the socket options the core sets, in one place: setting one
// integer option, and opening a non-blocking TCP connect that sends without
// Nagle (BackendLink and the Modbus TCP bus both connect out).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "gw/address.hpp"
#include "gw/fd.hpp"

namespace gw {

/// setsockopt() of one int; 0 or a negated errno. Thread-agnostic.
inline int set_int_option(int fd, int level, int name, int value) noexcept {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

/// True for the families that speak TCP (TCP_NODELAY means something there).
inline bool is_tcp_family(int family) noexcept { return family == AF_INET || family == AF_INET6; }

/// Opens a non-blocking socket into `fd` and starts connecting it to `to`.
/// A TCP socket gets TCP_NODELAY first: a gateway passes a client's small
/// writes on as they come, and with Nagle a second small write waits for the
/// ACK of the first, which a backend that answers only a whole request
/// delays by its delayed-ACK timer (40 ms on Linux). Returns 0 once the
/// connect is under way (EINPROGRESS included), or the errno of the failing
/// call; `fd` then holds the socket (or nothing) for the caller to drop.
inline int start_connect(Fd &fd, const SocketAddress &to) noexcept {
  fd.reset(::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  // Best effort, as on accepted sockets: a socket without it still works.
  if (is_tcp_family(to.family())) set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  if (::connect(fd.get(), to.get(), to.length) != 0 && errno != EINPROGRESS) return errno;
  return 0;
}

}  // namespace gw
