// SPDX-License-Identifier: MIT
// Socket activation: see activation.hpp.
#include "activation.hpp"

#include <sys/socket.h>

namespace gw::service {
namespace {

std::string bound_to(const InheritedSocket &socket) {
  return socket.local ? socket.local->to_string() : std::string("an unknown address");
}

std::string label(const InheritedSocket &socket) {
  return "inherited socket fd " + std::to_string(socket.fd) + " (FileDescriptorName=" + socket.name + ", bound to " +
         bound_to(socket) + ")";
}

std::string unmatched_error(const InheritedSocket &socket) {
  const std::string where = socket.local ? socket.local->to_string() : std::string("IP:PORT");
  return label(socket) + " matches no route: name a route \"" + socket.name + "\" or give a route listen = \"" + where +
         "\"";
}

// Why a socket serves no route, and how to fix that.
std::string unassigned_error(const InheritedSocket &socket) {
  if (!socket.listening)
    return printable_line(label(socket) +
                          " is not a listening stream socket: give its socket unit "
                          "ListenStream= and Accept=no");
  return printable_line(unmatched_error(socket));
}

// Gives each socket that has no route yet the first free route, in file
// order, that fits(socket, route).
template <typename Fits>
void assign_first_fit(ActivationPlan &plan, std::vector<bool> &taken, Fits fits) {
  for (std::size_t s = 0; s < plan.route_of.size(); ++s) {
    if (plan.route_of[s] >= 0) continue;
    for (std::size_t r = 0; r < taken.size(); ++r) {
      if (!taken[r] && fits(s, r)) {
        plan.route_of[s] = static_cast<int>(r);
        taken[r] = true;
        break;
      }
    }
  }
}

}  // namespace

ActivationPlan match_inherited(const std::vector<Route> &routes, const std::vector<InheritedSocket> &sockets) {
  ActivationPlan plan;
  plan.route_of.assign(sockets.size(), -1);
  std::vector<bool> taken(routes.size(), false);
  // A socket that matches is assigned even when it is not listening: adopting
  // it then fails with the kernel's precise reason (not listening, not a
  // stream socket), which names the route it was meant for.
  //
  // By name first, so that a named socket is never lost to an unnamed one
  // that happens to match the same route's address.
  assign_first_fit(plan, taken, [&](std::size_t s, std::size_t r) { return routes[r].name == sockets[s].name; });
  assign_first_fit(plan, taken, [&](std::size_t s, std::size_t r) {
    const std::optional<gw::SocketAddress> &local = sockets[s].local;
    return local && routes[r].listen && routes[r].listen->address.matches(*local);
  });
  for (std::size_t s = 0; s < sockets.size(); ++s) {
    if (plan.route_of[s] < 0) plan.errors.push_back(unassigned_error(sockets[s]));
  }
  return plan;
}

InheritedSocket inspect_inherited(int fd, std::string name) {
  InheritedSocket socket;
  socket.fd = fd;
  socket.name = std::move(name);
  gw::SocketAddress local;
  local.length = sizeof local.storage;
  if (getsockname(fd, local.get(), &local.length) == 0) socket.local = local;
  int listening = 0, type = 0;
  socklen_t length = sizeof listening;
  socklen_t type_length = sizeof type;
  socket.listening = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening != 0 &&
                     getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_length) == 0 && type == SOCK_STREAM;
  return socket;
}

}  // namespace gw::service
