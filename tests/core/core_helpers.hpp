// SPDX-License-Identifier: MIT
// Shared by the core suites (C++ cmocka against lib/ directly): small client
// helpers for loopback tests. Header-only; include after <cmocka.h>.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

namespace gwc {

/// A blocking client socket connected to 127.0.0.1:port; fails the test if
/// the connect does. The caller owns the fd.
inline int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  return fd;
}

/// A socket listening on 127.0.0.1 at a port the kernel picks, with `flags`
/// added to its type (SOCK_NONBLOCK, say); *port gets the port. Fails the test
/// if the bind or listen does. The caller owns the fd.
inline int listen_loopback(int backlog, int flags, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  assert_int_equal(listen(fd, backlog), 0);
  socklen_t length = sizeof address;
  assert_int_equal(getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length), 0);
  *port = ntohs(address.sin_port);
  return fd;
}

}  // namespace gwc
