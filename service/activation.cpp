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
    return "inherited socket fd " + std::to_string(socket.fd) + " (FileDescriptorName=" + socket.name +
           ", bound to " + bound_to(socket) + ")";
}

std::string unmatched_error(const InheritedSocket &socket) {
    const std::string where = socket.local ? socket.local->to_string() : std::string("IP:PORT");
    return label(socket) + " matches no route: name a route \"" + socket.name + "\" or give a route listen = \"" +
           where + "\"";
}

}  // namespace

ActivationPlan match_inherited(const std::vector<Route> &routes, const std::vector<InheritedSocket> &sockets) {
    ActivationPlan plan;
    plan.route_of.assign(sockets.size(), -1);
    std::vector<bool> taken(routes.size(), false);
    auto take = [&](std::size_t socket, std::size_t route) {
        plan.route_of[socket] = static_cast<int>(route);
        taken[route] = true;
    };
    // A socket that matches is assigned even when it is not listening: adopting
    // it then fails with the kernel's precise reason (not listening, not a
    // stream socket), which names the route it was meant for.
    //
    // By name first, so that a named socket is never lost to an unnamed one
    // that happens to match the same route's address.
    for (std::size_t s = 0; s < sockets.size(); ++s) {
        for (std::size_t r = 0; r < routes.size(); ++r) {
            if (!taken[r] && routes[r].name == sockets[s].name) {
                take(s, r);
                break;
            }
        }
    }
    for (std::size_t s = 0; s < sockets.size(); ++s) {
        if (plan.route_of[s] >= 0 || !sockets[s].local) continue;
        for (std::size_t r = 0; r < routes.size(); ++r) {
            if (!taken[r] && routes[r].listen && routes[r].listen->address.matches(*sockets[s].local)) {
                take(s, r);
                break;
            }
        }
    }
    for (std::size_t s = 0; s < sockets.size(); ++s) {
        if (plan.route_of[s] >= 0) continue;
        if (!sockets[s].listening)
            plan.errors.push_back(printable_line(label(sockets[s]) +
                                                 " is not a listening stream socket: give its socket unit "
                                                 "ListenStream= and Accept=no"));
        else
            plan.errors.push_back(printable_line(unmatched_error(sockets[s])));
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
