// SPDX-License-Identifier: MIT
// Fuzz target: matching inherited sockets to routes (match_inherited), with
// arbitrary route sets, names, addresses and listening flags.
//
// Input: a byte stream read as small choices: the number of routes and
// sockets, each route's name and listen address, each socket's name, local
// address and listening flag (names and addresses from small pools, so they
// collide often, plus arbitrary bytes). Checked: no crash; one entry per
// socket; each socket serves at most one route and each route gets at most
// one socket; an assigned socket matches its route by name or by address; an unassigned one is reported (exactly one
// printable line per unassigned socket); and no socket is left out while a free route would have taken it.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "activation.hpp"
#include "config.hpp"

namespace {

using namespace gw::service;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_activation: %s\n", what);
    std::abort();
  }
}

struct Input {
  const uint8_t *data;
  size_t size, at = 0;
  uint8_t byte() { return at < size ? data[at++] : 0; }
  std::string bytes(size_t n) {
    std::string s;
    for (size_t i = 0; i < n && at < size; ++i) s += static_cast<char>(data[at++]);
    return s;
  }
};

const char *const names[] = {"a", "b", "echo", "unknown", "modbus", ""};
const char *const addresses[] = {
    "127.0.0.1:7000",          "127.0.0.1:0",    ":7000",  "0.0.0.0:7000", "[::]:7000", "[::1]:7000",
    "[::ffff:127.0.0.1]:7000", "127.0.0.2:7001", "[::1]:0"};

std::string pick_name(Input &in) {
  uint8_t b = in.byte();
  if (b < 200) return names[b % (sizeof names / sizeof names[0])];
  return in.bytes(b % 8);
}

gw::ListenAddress pick_address(Input &in) {
  gw::ListenAddress la;
  int rc = gw::parse_listen_address(addresses[in.byte() % (sizeof addresses / sizeof addresses[0])], la);
  require(rc == 0, "a pool address does not parse");
  return la;
}

bool one_printable_line(const std::string &m) {
  for (unsigned char c : m)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Input in{data, size};
  std::vector<Route> routes(in.byte() % 6);
  for (Route &r : routes) {
    r.name = pick_name(in);
    if (in.byte() % 3) {
      ListenAddress listen;
      listen.address = pick_address(in);
      listen.canonical = listen.address.to_string();
      listen.text = listen.canonical;
      r.listen = listen;
    }
  }
  std::vector<InheritedSocket> sockets(in.byte() % 7);
  for (size_t i = 0; i < sockets.size(); ++i) {
    InheritedSocket &s = sockets[i];
    s.fd = static_cast<int>(3 + i);
    s.name = pick_name(in);
    uint8_t flags = in.byte();
    s.listening = flags & 1;
    if (flags & 2) {
      s.local = pick_address(in).address;
      // Systemd may have bound any port: sometimes another one.
      if (flags & 4) reinterpret_cast<sockaddr_in *>(&s.local->storage)->sin_port = htons(in.byte());
    }
  }

  ActivationPlan plan = match_inherited(routes, sockets);
  require(plan.route_of.size() == sockets.size(), "not one entry per socket");
  std::vector<int> sockets_of_route(routes.size(), 0);
  size_t unassigned = 0;
  for (size_t s = 0; s < sockets.size(); ++s) {
    int r = plan.route_of[s];
    require(r >= -1 && r < static_cast<int>(routes.size()), "route index out of range");
    if (r < 0) {
      ++unassigned;
      continue;
    }
    ++sockets_of_route[static_cast<size_t>(r)];
    const Route &route = routes[static_cast<size_t>(r)];
    bool by_name = route.name == sockets[s].name;
    bool by_address = sockets[s].local && route.listen && route.listen->address.matches(*sockets[s].local);
    require(by_name || by_address, "a socket got a route it does not match");
  }
  for (int count : sockets_of_route) require(count <= 1, "a route got two sockets");
  require(plan.errors.size() == unassigned, "not one error per unassigned socket");
  for (const std::string &e : plan.errors) require(one_printable_line(e), "an error is not one printable line");
  for (size_t s = 0; s < sockets.size(); ++s) {
    if (plan.route_of[s] >= 0) continue;
    for (size_t r = 0; r < routes.size(); ++r) {
      if (sockets_of_route[r]) continue;
      bool by_name = routes[r].name == sockets[s].name;
      bool by_address = sockets[s].local && routes[r].listen && routes[r].listen->address.matches(*sockets[s].local);
      require(!by_name && !by_address, "a socket was refused although a free route matches it");
    }
  }
  return 0;
}
