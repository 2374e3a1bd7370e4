// SPDX-License-Identifier: MIT
// Socket activation: which inherited socket (from systemd's LISTEN_FDS) serves
// which route. A pure function over plain values, so it can be tested and
// fuzzed without systemd, plus the one helper that asks the kernel about a fd.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "gw/address.hpp"

namespace gw::service {

// What the daemon knows about one inherited fd.
struct InheritedSocket {
  int fd = -1;                             // shown in messages only
  std::string name;                        // FileDescriptorName= ("unknown" when unnamed)
  std::optional<gw::SocketAddress> local;  // getsockname(); unset if that failed
  bool listening = false;                  // SO_ACCEPTCONN
};

struct ActivationPlan {
  // Per inherited socket, in the same order: the index of the route it
  // serves in the routes given, or -1 when it serves none (see errors).
  std::vector<int> route_of;
  // One printable line per socket that serves no route, saying why and how
  // to fix it. Startup fails when there is any.
  std::vector<std::string> errors;
  bool ok() const noexcept { return errors.empty(); }
};

// Matches sockets to routes: first by name (FileDescriptorName= equal to a
// route's name), then, for the sockets left, by address (the first route in
// file order whose `listen` the socket's local address serves, see
// gw::ListenAddress::matches). Each route gets at most one socket and each
// socket at most one route. A socket that matches no free route is reported
// (as "not a listening stream socket" when it is not one). A matched socket
// that is not listening is still assigned: Server::adopt refuses it with the
// precise reason, for the route it was meant for.
ActivationPlan match_inherited(const std::vector<Route> &routes, const std::vector<InheritedSocket> &sockets);

// Fills an InheritedSocket from the kernel (getsockname, SO_ACCEPTCONN).
InheritedSocket inspect_inherited(int fd, std::string name);

}  // namespace gw::service
