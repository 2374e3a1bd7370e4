// SPDX-License-Identifier: MIT
// The heap an idle client costs (issue 11): at most 256 bytes for a client of
// an echo route, 512 for a proxied one (its backend connection included).
// Counted, not timed: the allocator's bytes in use before and after 1000
// clients have each had one 1-byte echo and then sit idle, divided by their
// number. Everything a connection keeps counts, however it is allocated: the
// Connection and its list node, a BackendLink and its side objects, buffers
// that were not freed once drained, a timer left behind.
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GW_FOOTPRINT_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GW_FOOTPRINT_SANITIZER 1
#endif
#endif
#ifdef GW_FOOTPRINT_SANITIZER
// From <sanitizer/allocator_interface.h>, which not every compiler installs;
// every sanitizer runtime with its own allocator exports it.
extern "C" size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"

#include "gw/fd.hpp"
#include "gw/forwarder.hpp"
#include "gw/server.hpp"

namespace {

// The targets, in heap bytes per idle client (the daemon's resident
// memory per client is this plus the pages' slack).
constexpr size_t echo_budget = 256;
constexpr size_t proxied_budget = 512;

constexpr size_t wanted_clients = 1000;
constexpr size_t batch = 50;  // connects in flight at once, well within the backlog

// Bytes the allocator behind malloc and operator new has handed out and not
// got back. glibc counts whole chunks (header and rounding included), the
// sanitizers' allocators the bytes asked for: the budgets hold for both.
size_t heap_in_use() {
#ifdef GW_FOOTPRINT_SANITIZER
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

// A proxied client holds four sockets here (client, accepted, backend, the
// backend's accepted end): fewer clients where RLIMIT_NOFILE is low.
size_t clients_for(size_t fds_per_client) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  size_t fit = (static_cast<size_t>(limit.rlim_cur) - 64) / fds_per_client;
  size_t clients = fit < wanted_clients ? fit / batch * batch : wanted_clients;
  if (clients < 200)
    fail_msg("RLIMIT_NOFILE %llu is too low for this test: raise it to %zu (ulimit -n)",
             static_cast<unsigned long long>(limit.rlim_cur), wanted_clients * fds_per_client + 64);
  return clients;
}

// A backend that is only sockets, not a gw::Listener: none of its memory is
// in the count. It echoes every byte it gets and keeps its connections open.
struct RawEchoBackend {
  gw::Fd listening;
  std::vector<gw::Fd> accepted;
  gw::SocketAddress address;

  RawEchoBackend() {
    int port = 0;
    listening.reset(gwc::listen_loopback(4096, SOCK_NONBLOCK, &port));
    address.length = sizeof address.storage;
    assert_int_equal(getsockname(listening.get(), address.get(), &address.length), 0);
    accepted.reserve(wanted_clients + 1);
  }

  void serve() {
    for (int fd; (fd = accept4(listening.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
      accepted.emplace_back(fd);
    for (gw::Fd &fd : accepted) {
      uint8_t bytes[64];
      ssize_t n = recv(fd.get(), bytes, sizeof bytes, 0);
      if (n > 0) assert_int_equal(send(fd.get(), bytes, static_cast<size_t>(n), MSG_NOSIGNAL), n);
    }
  }
};

struct Fixture {
  std::unique_ptr<gw::Server> server;
  gw::Listener *front = nullptr;
  std::unique_ptr<RawEchoBackend> backend;  // proxied routes only
  std::vector<gw::Fd> clients;

  Fixture(const gw::ListenerConfig &config, bool proxied) {
    gw::ServerConfig server_config;
    server_config.logger.max_level = gw::LogLevel::error;
    assert_int_equal(gw::Server::create(server, server_config), 0);
    std::shared_ptr<gw::ConnectionHandler> handler;
    if (proxied) {
      backend = std::make_unique<RawEchoBackend>();
      handler = std::make_shared<gw::Forwarder>(backend->address, "tcp://" + backend->address.to_string());
    } else {
      handler = std::make_shared<gw::EchoHandler>();
    }
    assert_int_equal(server->listen(front, "127.0.0.1:0", config, handler), 0);
    clients.reserve(wanted_clients + 1);
  }

  // One turn: the server's loop, then the backend.
  void step() {
    pollfd p{server->loop().poll_fd(), POLLIN, 0};
    poll(&p, 1, 10);
    server->dispatch_ready();
    if (backend) backend->serve();
  }

  // `count` more clients, each sending `message` and reading its echo; they
  // stay connected.
  void add_clients(size_t count, const std::string &message) {
    size_t first = clients.size();
    for (size_t i = 0; i < count; ++i) {
      clients.emplace_back(gwc::connect_to(front->port()));
      assert_int_equal(send(clients.back().get(), message.data(), message.size(), MSG_NOSIGNAL), message.size());
    }
    std::vector<size_t> got(count, 0);
    size_t done = 0;
    for (int turn = 0; done < count; ++turn) {
      if (turn > 3000) fail_msg("only %zu of %zu clients had their echo after 30 s", done, count);
      step();
      for (size_t i = 0; i < count; ++i) {
        if (got[i] == message.size()) continue;
        char back[64];
        ssize_t n = recv(clients[first + i].get(), back, sizeof back, MSG_DONTWAIT);
        if (n <= 0) continue;
        got[i] += static_cast<size_t>(n);
        if (got[i] == message.size()) ++done;
      }
    }
    for (int turn = 0; turn < 5; ++turn) step();  // the last writes' aftermath, deferred frees
  }
};

// Heap bytes per idle client of a route with `config`, after each client's
// `message` has been echoed.
size_t idle_bytes_per_client(const gw::ListenerConfig &config, bool proxied, const std::string &message) {
  size_t count = clients_for(proxied ? 4 : 2);
  Fixture f(config, proxied);
  // A first client makes what the server allocates once (the loop's scratch
  // buffer, the per-IP entry, the timer heap): not per client.
  f.add_clients(1, message);
  size_t before = heap_in_use();
  for (size_t added = 0; added < count; added += batch) f.add_clients(batch, message);
  size_t after = heap_in_use();
  assert_int_equal(f.front->client_count(), count + 1);
  size_t per_client = after > before ? (after - before) / count : 0;
  std::printf("# %s route%s: %zu heap bytes per idle client (%zu clients, %zu -> %zu)\n", proxied ? "proxied" : "echo",
              config.framing == gw::Framing::line ? " (line framing)" : "", per_client, count, before, after);
  // A count of nothing means the counter does not see this allocator: then
  // the test would prove nothing.
  assert_true(per_client >= sizeof(void *));
  return per_client;
}

void echo_client_within_budget(void **) {
  assert_true(idle_bytes_per_client(gw::ListenerConfig{}, false, "x") <= echo_budget);
}

// A framed route with a frame deadline: a complete line leaves no input
// buffer and no frame timer behind.
void framed_echo_client_within_budget(void **) {
  gw::ListenerConfig config;
  config.framing = gw::Framing::line;
  config.frame_timeout_ms = 60000;
  assert_true(idle_bytes_per_client(config, false, "x\n") <= echo_budget);
}

void proxied_client_within_budget(void **) {
  assert_true(idle_bytes_per_client(gw::ListenerConfig{}, true, "x") <= proxied_budget);
}

// What the budget buys must not lose anything: the compact peer address
// gives back every family whole, inline (IPv4, IPv6 with its flow and scope,
// an unnamed Unix client) or from its heap copy (a Unix client bound to a
// path longer than the inline bytes).
void expect_round_trip(const gw::SocketAddress &original) {
  gw::CompactAddress compact(original);
  gw::SocketAddress back = compact.get();
  assert_int_equal(back.length, original.length);
  assert_memory_equal(&back.storage, &original.storage, original.length);
  assert_string_equal(back.to_string().c_str(), original.to_string().c_str());
}

void compact_peer_keeps_every_address_whole(void **) {
  gw::SocketAddress v4;
  assert_int_equal(gw::parse_ip_port("192.0.2.7:502", v4), 0);
  expect_round_trip(v4);

  gw::SocketAddress v6;
  assert_int_equal(gw::parse_ip_port("[2001:db8::7]:65535", v6), 0);
  auto *in6 = reinterpret_cast<sockaddr_in6 *>(&v6.storage);
  in6->sin6_flowinfo = htonl(0x12345);
  in6->sin6_scope_id = 3;
  expect_round_trip(v6);

  gw::SocketAddress unnamed;
  std::memset(&unnamed.storage, 0, sizeof unnamed.storage);
  unnamed.storage.ss_family = AF_UNIX;
  unnamed.length = sizeof(sa_family_t);
  expect_round_trip(unnamed);

  gw::SocketAddress named;
  std::string path = "/run/" + std::string(90, 'p') + ".sock";
  assert_int_equal(gw::parse_unix_address("unix:" + path, named), 0);
  assert_true(named.length > sizeof(sockaddr_in6));  // the heap branch
  expect_round_trip(named);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(echo_client_within_budget),
      cmocka_unit_test(framed_echo_client_within_budget),
      cmocka_unit_test(proxied_client_within_budget),
      cmocka_unit_test(compact_peer_keeps_every_address_whole),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
