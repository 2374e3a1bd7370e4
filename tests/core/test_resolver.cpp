// SPDX-License-Identifier: MIT
// The resolver and named backends, against the library itself with injected
// lookups: a 3 s lookup does not hold up other clients, every address is tried
// in order (refused, or silent past the connect timeout), an unresolvable name
// closes its clients until it resolves, and cancelled lookups never answer.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"

#include "gw/forwarder.hpp"
#include "gw/resolver.hpp"
#include "gw/server.hpp"

namespace {

using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

gw::SocketAddress ipv4(const char *ip, int port) {
  gw::SocketAddress out;
  assert_int_equal(gw::numeric_address(ip, static_cast<uint16_t>(port), out), 0);
  return out;
}

// A server with an echo listener (the backend, and a route of its own) on a
// loop thread. Members in destruction order: the server goes last.
struct Fixture {
  std::unique_ptr<gw::Server> server;
  std::shared_ptr<gw::EchoHandler> echo = std::make_shared<gw::EchoHandler>();
  gw::Listener *backend = nullptr;
  std::thread loop;

  Fixture() {
    gw::ServerConfig config;
    config.logger.max_level = getenv("GW_TEST_LOG") ? gw::LogLevel::debug : gw::LogLevel::error;
    assert_int_equal(gw::Server::create(server, config), 0);
    assert_int_equal(server->listen(backend, "127.0.0.1:0", gw::ListenerConfig{}, echo), 0);
  }
  gw::Listener *front(std::shared_ptr<gw::ConnectionHandler> handler) {
    gw::Listener *out = nullptr;
    assert_int_equal(server->listen(out, "127.0.0.1:0", gw::ListenerConfig{}, std::move(handler)), 0);
    return out;
  }
  std::shared_ptr<gw::Resolver> resolver(gw::LookupFunction lookup) {
    return std::make_shared<gw::Resolver>(server->loop(), std::move(lookup));
  }
  std::unique_ptr<gw::ResolvedName> name(std::shared_ptr<gw::Resolver> resolver, uint16_t port,
                                         gw::ResolvedName::Options options = {}) {
    return std::make_unique<gw::ResolvedName>(std::move(resolver), "backend.test", port, "test backend",
                                              server->logger(), options);
  }
  void run() {
    loop = std::thread([this] { server->run(); });
  }
  ~Fixture() {
    if (loop.joinable()) {
      server->stop();
      loop.join();
    }
  }
};

using gwc::connect_to;

// Sends `text`, expects it back within timeout_ms. False on EOF or timeout.
bool round_trip(int fd, const char *text, int timeout_ms = 5000) {
  size_t length = std::strlen(text);
  if (write(fd, text, length) != static_cast<ssize_t>(length)) return false;
  std::vector<char> back(length);
  size_t done = 0;
  while (done < length) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return false;
    ssize_t n = read(fd, back.data() + done, length - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return std::memcmp(back.data(), text, length) == 0;
}

// True if the server closes `fd` (EOF or reset) within timeout_ms.
bool closed_by_server(int fd, int timeout_ms = 5000) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return false;
  char byte;
  return read(fd, &byte, 1) <= 0;
}

// A route to a name that takes 3 s to resolve is added while the server runs
// (as a reload adds one): an echo client is answered at once all along, and
// the named route's first client waits for the answer and is served.
void slow_lookup_does_not_hold_up_other_clients(void **) {
  Fixture f;
  gw::SocketAddress backend = f.backend->local_address();
  auto resolver = f.resolver([backend](const std::string &, uint16_t) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    return gw::Resolution{{backend}, ""};
  });
  f.run();
  int other = connect_to(f.backend->port());
  std::promise<int> front_port;
  auto start = Clock::now();
  f.server->loop().post([&] {
    auto forwarder =
        std::make_shared<gw::Forwarder>(f.name(resolver, static_cast<uint16_t>(backend.port())), "tcp://backend.test");
    gw::Listener *front = nullptr;
    int rc = f.server->listen(front, "127.0.0.1:0", gw::ListenerConfig{}, forwarder);
    front_port.set_value(rc == 0 ? front->port() : -1);
  });
  long long worst = 0;
  for (int i = 0; i < 20; ++i) {
    auto one = Clock::now();
    assert_true(round_trip(other, "echo during the lookup"));
    worst = std::max(worst, ms_since(one));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  long long echo_ms = ms_since(start);
  int port = front_port.get_future().get();
  assert_true(port > 0);
  int named = connect_to(port);
  assert_true(round_trip(named, "after the answer", 5000));
  long long named_ms = ms_since(start);
  std::printf(
      "worst echo round trip during a 3 s lookup: %lld ms (20 in %lld ms); the named route's first client: "
      "%lld ms\n",
      worst, echo_ms, named_ms);
  assert_true(worst < 500);
  assert_true(echo_ms < 2500);  // all of them inside the 3 s lookup
  assert_true(named_ms >= 2900);
  close(named);
  close(other);
}

// The first address refuses (nothing on 127.0.0.2), the second serves: for a
// fixed list and for a name that resolves to both.
void second_address_serves_when_first_refuses(void **) {
  Fixture f;
  int port = f.backend->port();
  std::vector<gw::SocketAddress> both{ipv4("127.0.0.2", port), ipv4("127.0.0.1", port)};
  gw::Listener *fixed = f.front(std::make_shared<gw::Forwarder>(both, "tcp://two"));
  auto resolver = f.resolver([both](const std::string &, uint16_t) { return gw::Resolution{both, ""}; });
  gw::Listener *named =
      f.front(std::make_shared<gw::Forwarder>(f.name(resolver, static_cast<uint16_t>(port)), "tcp://backend.test"));
  f.run();
  for (gw::Listener *front : {fixed, named}) {
    int fd = connect_to(front->port());
    assert_true(round_trip(fd, "second address"));
    close(fd);
  }
}

// A first address that never answers (its accept queue is full, so SYNs are
// dropped) costs one connect timeout, then the next address serves.
void silent_address_times_out_then_next_serves(void **) {
  Fixture f;
  int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  gw::SocketAddress any = ipv4("127.0.0.1", 0);
  assert_int_equal(bind(silent, any.get(), any.length), 0);
  assert_int_equal(listen(silent, 0), 0);
  gw::SocketAddress silent_address;
  silent_address.length = sizeof silent_address.storage;
  assert_int_equal(getsockname(silent, silent_address.get(), &silent_address.length), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(fd, silent_address.get(), silent_address.length);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  gw::ForwarderOptions options;
  options.connect_timeout_ms = 300;
  std::vector<gw::SocketAddress> list{silent_address, f.backend->local_address()};
  gw::Listener *front = f.front(std::make_shared<gw::Forwarder>(list, "tcp://silent-then-good", options));
  f.run();
  auto start = Clock::now();
  int fd = connect_to(front->port());
  assert_true(round_trip(fd, "after a timeout"));
  long long took = ms_since(start);
  std::printf("silent first address: served after %lld ms (connect timeout 300 ms)\n", took);
  assert_true(took >= 290);
  assert_true(took < 3000);
  close(fd);
  for (int filler : fillers) close(filler);
  close(silent);
}

// A name that does not resolve: its clients are closed at once, the lookup is
// retried with backoff, and once it resolves clients are served.
void unresolvable_name_closes_clients_until_it_resolves(void **) {
  Fixture f;
  gw::SocketAddress backend = f.backend->local_address();
  auto failures_left = std::make_shared<std::atomic<int>>(3);
  auto lookups = std::make_shared<std::atomic<int>>(0);
  auto resolver = f.resolver([backend, failures_left, lookups](const std::string &, uint16_t) {
    ++*lookups;
    if (failures_left->fetch_sub(1) > 0) return gw::Resolution{{}, "Name or service not known"};
    return gw::Resolution{{backend}, ""};
  });
  gw::ResolvedName::Options options;
  options.retry_min_ms = 100;
  options.retry_max_ms = 400;
  auto owned = f.name(resolver, static_cast<uint16_t>(backend.port()), options);
  gw::Listener *front = f.front(std::make_shared<gw::Forwarder>(std::move(owned), "tcp://backend.test"));
  f.run();
  // The first answer (a failure) comes within a moment; then clients are closed.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int early = connect_to(front->port());
  assert_true(closed_by_server(early));
  close(early);
  // 100 + 200 + 400 ms of backoff, then it resolves.
  auto start = Clock::now();
  bool served = false;
  while (!served && ms_since(start) < 5000) {
    int fd = connect_to(front->port());
    served = round_trip(fd, "resolved", 1000);
    close(fd);
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  assert_true(served);
  assert_int_equal(lookups->load(), 4);
}

// A cancelled lookup never calls back; a Resolver destroyed during a slow
// lookup does not wait for it.
void cancelled_lookups_never_answer(void **) {
  std::unique_ptr<gw::EventLoop> loop;
  assert_int_equal(gw::EventLoop::create(loop), 0);
  auto slow = [](const std::string &, uint16_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return gw::Resolution{{}, "late"};
  };
  int answers = 0;
  Clock::time_point start;
  {
    gw::Resolver::Lookup in_flight;  // outlives the resolver, as an owner's handle may
    gw::Resolver resolver(*loop, slow);
    gw::Resolver::Lookup kept, cancelled;
    assert_int_equal(resolver.resolve(kept, "a", 1,
                                      [&](gw::Resolution r) {
                                        ++answers;
                                        assert_string_equal(r.error.c_str(), "late");
                                      }),
                     0);
    assert_int_equal(resolver.resolve(cancelled, "b", 1, [&](gw::Resolution) { answers += 100; }), 0);
    cancelled.cancel();
    assert_false(cancelled.active());
    start = Clock::now();
    while (kept.active() && ms_since(start) < 5000) loop->dispatch(100);
    loop->dispatch(400);  // room for the cancelled one's answer, which must not come
    assert_int_equal(answers, 1);

    assert_int_equal(resolver.resolve(in_flight, "c", 1, [&](gw::Resolution) { answers += 1000; }), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a worker is inside the lookup now
    start = Clock::now();
  }  // the resolver goes with the worker still inside the lookup: no waiting for it
  assert_true(ms_since(start) < 100);
  start = Clock::now();
  loop->dispatch(500);
  assert_true(ms_since(start) >= 400);  // nothing woke the loop
  assert_int_equal(answers, 1);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(slow_lookup_does_not_hold_up_other_clients),
      cmocka_unit_test(second_address_serves_when_first_refuses),
      cmocka_unit_test(silent_address_times_out_then_next_serves),
      cmocka_unit_test(unresolvable_name_closes_clients_until_it_resolves),
      cmocka_unit_test(cancelled_lookups_never_answer),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
