// SPDX-License-Identifier: MIT
// The Modbus gateway over pseudo-terminals and loopback sockets. The test
// plays the RTU slaves on each pty's master with a tiny responder (and, for
// the TCP bus, a Modbus TCP server on a loopback socket); its clients are
// plain loopback sockets. Everything runs on the test's thread: the waits
// drive the server's loop (dispatch) and the test's own ends in turn, each
// bounded by a deadline, so that a lost frame fails instead of hanging.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"
#include "serial_helpers.hpp"

#include "gw/modbus.hpp"
#include "gw/modbus_codec.hpp"
#include "gw/server.hpp"

namespace {

namespace fs = std::filesystem;
namespace mb = gw::modbus;
using gwc::Clock;
using gwc::ms_since;
using mb::Bytes;

void set_nonblocking(int fd) { assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }
uint16_t be16(const uint8_t *at) { return static_cast<uint16_t>(at[0] << 8 | at[1]); }

using gwc::Logs;

// A register server's answer: reads give register i the value start + i,
// writes are acknowledged, function 100 answers "ok".
Bytes standard_reply(const Bytes &request) {
  const uint8_t address = request[0], function = request[1];
  Bytes pdu{function};
  if (function == 3 || function == 4) {
    const uint16_t start = be16(&request[2]), quantity = be16(&request[4]);
    pdu.push_back(static_cast<uint8_t>(2 * quantity));
    for (uint16_t i = 0; i < quantity; ++i) {
      pdu.push_back(static_cast<uint8_t>((start + i) >> 8));
      pdu.push_back(static_cast<uint8_t>(start + i));
    }
  } else if (function == 5 || function == 6 || function == 16) {
    pdu.insert(pdu.end(), request.begin() + 2, request.begin() + 6);
  } else {
    pdu.push_back('o');
    pdu.push_back('k');
  }
  return mb::rtu_frame(address, pdu.data(), pdu.size());
}

// The RTU slaves at the far end of the "cable": the pty's master. Each
// request it sees is kept with the time its first read returned it.
struct Slave {
  gwc::Pty pty = gwc::open_pty(O_NONBLOCK);
  Bytes input;
  struct Seen {
    Bytes frame;
    Clock::time_point at;
    Clock::time_point replied_at{};  // when its reply was written, if any
  };
  std::vector<Seen> seen;
  // The answer to a request; empty: silence.
  std::function<Bytes(const Bytes &)> respond = standard_reply;

  void poll() {
    if (!pty.master) return;
    uint8_t buffer[512];
    for (;;) {
      const ssize_t n = read(pty.master.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      input.insert(input.end(), buffer, buffer + n);
    }
    for (;;) {
      const mb::RtuScan scan = mb::scan_rtu_request(input.data(), input.size());
      if (scan.status == mb::ScanStatus::need_more) break;
      if (scan.status == mb::ScanStatus::error) fail_msg("the slave got a malformed frame: %s", scan.reason);
      const Bytes frame(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(scan.length));
      input.erase(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(scan.length));
      seen.push_back({frame, Clock::now()});
      const Bytes reply = respond(frame);
      if (reply.empty()) continue;
      assert_int_equal(write(pty.master.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
      seen.back().replied_at = Clock::now();
    }
  }
};

// A Modbus TCP device on a loopback socket: one connection at a time, each
// request kept; `respond` gives the PDU (empty: no answer now).
struct TcpDevice {
  gw::Fd listening;
  gw::Fd conn;
  int port = 0;
  Bytes input;
  struct Seen {
    uint16_t transaction;
    uint8_t unit;
    Bytes pdu;
  };
  std::vector<Seen> seen;
  std::function<Bytes(const Seen &)> respond = [](const Seen &s) {
    Bytes request{s.unit};
    request.insert(request.end(), s.pdu.begin(), s.pdu.end());
    request.push_back(0);
    request.push_back(0);
    const Bytes rtu = standard_reply(request);
    return Bytes(rtu.begin() + 1, rtu.end() - 2);
  };

  TcpDevice() { listening.reset(gwc::listen_loopback(4, SOCK_NONBLOCK, &port)); }
  gw::SocketAddress address() const {
    gw::SocketAddress out;
    assert_int_equal(gw::parse_ip_port("127.0.0.1:" + std::to_string(port), out), 0);
    return out;
  }
  void answer(uint16_t transaction, uint8_t unit, const Bytes &pdu) {
    const Bytes adu = mb::mbap_frame(transaction, unit, pdu.data(), pdu.size());
    assert_int_equal(send(conn.get(), adu.data(), adu.size(), MSG_NOSIGNAL), static_cast<ssize_t>(adu.size()));
  }
  void poll() {
    const int fd = accept4(listening.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn.reset(fd);
      input.clear();
    }
    if (!conn) return;
    uint8_t buffer[1024];
    const ssize_t n = recv(conn.get(), buffer, sizeof buffer, 0);
    if (n > 0) input.insert(input.end(), buffer, buffer + n);
    for (;;) {
      const mb::MbapScan scan = mb::scan_mbap(input.data(), input.size());
      if (scan.status != mb::ScanStatus::frame) break;
      Seen request{scan.transaction, scan.unit, Bytes(input.begin() + 7, input.begin() + scan.length)};
      input.erase(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(scan.length));
      seen.push_back(request);
      const Bytes pdu = respond(request);
      if (!pdu.empty()) answer(request.transaction, request.unit, pdu);
    }
  }
};

struct Fixture {
  Logs logs;
  gwc::TempDir dir;
  Slave slave;
  std::unique_ptr<TcpDevice> device;
  std::unique_ptr<gw::Server> server;
  std::shared_ptr<gw::ModbusGateway> gateway;
  gw::Listener *listener = nullptr;
  std::vector<gw::Fd> clients;
  std::map<int, Bytes> received;

  static gw::SerialBackendConfig line(const std::string &path, uint32_t baud = 115200) {
    gw::SerialBackendConfig device;
    device.path = path;
    device.settings.baud = baud;
    return device;
  }
  void start_server() {
    gw::ServerConfig server_config;
    server_config.logger.sink = &Logs::sink;
    server_config.logger.user_data = &logs;
    server_config.logger.max_level = gw::LogLevel::info;
    assert_int_equal(gw::Server::create(server, server_config), 0);
  }
  void listen() { assert_int_equal(server->listen(listener, "127.0.0.1:0", gw::ListenerConfig{}, gateway), 0); }

  // An RTU bus on `device_config`'s path, or (path empty) the slave's pty.
  explicit Fixture(gw::ModbusConfig config, gw::SerialBackendConfig device_config = line("")) {
    start_server();
    if (device_config.path.empty()) device_config.path = slave.pty.slave;
    device_config.open_options.lock_dir = dir.path;
    std::unique_ptr<gw::ModbusGateway> created;
    std::string why;
    if (gw::ModbusGateway::create_rtu(created, server->loop(), server->logger(), config, device_config, "modbus:test",
                                      why))
      fail_msg("create_rtu: %s", why.c_str());
    gateway = std::move(created);
    listen();
  }
  // A TCP bus to a device of the test.
  Fixture(gw::ModbusConfig config, std::unique_ptr<TcpDevice> tcp) : device(std::move(tcp)) {
    start_server();
    std::unique_ptr<gw::ModbusGateway> created;
    std::string why;
    if (gw::ModbusGateway::create_tcp(created, server->loop(), server->logger(), config, device->address(),
                                      "modbus:tcp", why))
      fail_msg("create_tcp: %s", why.c_str());
    gateway = std::move(created);
    listen();
  }
  ~Fixture() {
    clients.clear();
    server->stop_now();
    gateway.reset();
  }

  const gw::ModbusCounters &counters() const { return gateway->counters(); }

  void step() {
    server->loop().dispatch(1);
    slave.poll();
    if (device) device->poll();
  }
  bool until(const std::function<bool()> &done, int timeout_ms = 5000) {
    return gwc::run_until(
        done, [&] { step(); }, timeout_ms);
  }
  void run_for(int ms) {
    const auto start = Clock::now();
    while (ms_since(start) < ms) step();
  }

  int connect() {
    const uint64_t before = listener->stats().accepted.load();
    const int fd = gwc::connect_to(listener->port());
    clients.emplace_back(fd);
    set_nonblocking(fd);
    assert_true(until([&] { return listener->stats().accepted.load() > before; }));
    return fd;
  }
  void send_bytes(int fd, const Bytes &bytes) {
    assert_int_equal(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  void request(int fd, uint16_t transaction, uint8_t unit, const Bytes &pdu) {
    send_bytes(fd, mb::mbap_frame(transaction, unit, pdu.data(), pdu.size()));
  }
  // Reads what came on `fd` into received[fd]; false once it has closed.
  bool pull(int fd) {
    uint8_t buffer[4096];
    for (;;) {
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        received[fd].insert(received[fd].end(), buffer, buffer + n);
        continue;
      }
      return !(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK));
    }
  }
  // The next MBAP answer on `fd`; fails on the deadline.
  Bytes answer(int fd, int timeout_ms = 5000) {
    Bytes adu;
    const bool got = until(
        [&] {
          pull(fd);
          Bytes &in = received[fd];
          const mb::MbapScan scan = mb::scan_mbap(in.data(), in.size());
          if (scan.status != mb::ScanStatus::frame) return false;
          adu.assign(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(scan.length));
          in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(scan.length));
          return true;
        },
        timeout_ms);
    if (!got) fail_msg("no answer within %d ms", timeout_ms);
    return adu;
  }
  bool closed_by_gateway(int fd) {
    return until([&] { return !pull(fd); });
  }
  bool quiet(int fd, int ms) {
    run_for(ms);
    pull(fd);
    return received[fd].empty();
  }
};

const Bytes read_10 = {0x03, 0x00, 0x00, 0x00, 0x0A};

Bytes read_pdu(uint16_t start, uint16_t quantity) {
  return {0x03, static_cast<uint8_t>(start >> 8), static_cast<uint8_t>(start), 0, static_cast<uint8_t>(quantity)};
}

void expect_exception(const Bytes &adu, uint8_t function, uint8_t code) {
  assert_int_equal(adu.size(), 9);
  assert_int_equal(adu[7], function | 0x80);
  assert_int_equal(adu[8], code);
}

// ---- tests -------------------------------------------------------------------

void invalid_configurations_are_named(void **) {
  struct Case {
    gw::ModbusConfig config;
    const char *part;
  } cases[4];
  cases[0].config.max_queue = 0, cases[0].part = "max_queue";
  cases[1].config.retries = 11, cases[1].part = "retries";
  cases[2].config.response_timeout_ms = 60001, cases[2].part = "response_timeout";
  cases[3].config.unit_map = {{3, 4}, {3, 5}}, cases[3].part = "twice";
  for (const Case &c : cases) {
    std::string why;
    assert_int_equal(c.config.validate(why), -EINVAL);
    if (why.find(c.part) == std::string::npos) fail_msg("'%s' does not name %s", why.c_str(), c.part);
  }
  gw::ModbusConfig broadcast;
  broadcast.unit_map = {{0, 4}};
  std::string why;
  assert_int_equal(broadcast.validate(why), -EINVAL);
  assert_true(why.find("broadcast") != std::string::npos);
  gw::ModbusConfig to_zero;
  to_zero.unit_map = {{4, 0}};
  assert_int_equal(to_zero.validate(why), -EINVAL);
  gw::ModbusConfig good;
  good.unit_map = {{1, 247}, {247, 1}};
  assert_int_equal(good.validate(why), 0);
}

void round_trip_keeps_the_transaction_id(void **) {
  Fixture f(gw::ModbusConfig{});
  const int client = f.connect();
  f.request(client, 0x1234, 1, read_10);
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[0]), 0x1234);
  assert_int_equal(adu[6], 1);
  assert_int_equal(adu[7], 0x03);
  assert_int_equal(adu[8], 20);
  assert_int_equal(adu.size(), 9 + 20);
  assert_int_equal(f.slave.seen.size(), 1);
  const Bytes expected = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
  assert_true(f.slave.seen[0].frame == expected);
  assert_int_equal(f.counters().requests.load(), 1);
  assert_int_equal(f.counters().replies.load(), 1);
}

void exceptions_pass_through(void **) {
  Fixture f(gw::ModbusConfig{});
  f.slave.respond = [](const Bytes &request) {
    const uint8_t pdu[] = {static_cast<uint8_t>(request[1] | 0x80), 0x02};
    return mb::rtu_frame(request[0], pdu, sizeof pdu);
  };
  const int client = f.connect();
  f.request(client, 7, 1, read_10);
  expect_exception(f.answer(client), 0x03, 0x02);
  assert_int_equal(f.counters().exceptions.load(), 1);
  // A user-defined function passes too, both ways.
  f.slave.respond = standard_reply;
  f.request(client, 8, 1, {100, 1, 2, 3});
  const Bytes adu = f.answer(client);
  assert_int_equal(adu[7], 100);
  assert_int_equal(adu[8], 'o');
  assert_true(f.slave.seen.back().frame == mb::rtu_frame(1, Bytes{100, 1, 2, 3}.data(), 4));
}

void timeout_answers_0x0B_after_the_retries(void **) {
  gw::ModbusConfig config;
  config.response_timeout_ms = 50;
  config.retries = 2;
  Fixture f(config);
  f.slave.respond = [](const Bytes &) { return Bytes{}; };
  const int client = f.connect();
  const auto start = Clock::now();
  f.request(client, 9, 1, read_10);
  expect_exception(f.answer(client), 0x03, 0x0B);
  assert_true(ms_since(start) >= 3 * 50);
  assert_int_equal(f.slave.seen.size(), 3);  // the first try and two retries
  assert_int_equal(f.counters().timeouts.load(), 3);
  assert_int_equal(f.logs.count("no answer from bus address 1"), 1);
}

void bad_crc_reply_is_counted_and_retried(void **) {
  gw::ModbusConfig config;
  config.response_timeout_ms = 200;
  config.retries = 1;
  Fixture f(config);
  int calls = 0;
  f.slave.respond = [&](const Bytes &request) {
    Bytes reply = standard_reply(request);
    if (calls++ == 0) reply.back() ^= 0x5A;
    return reply;
  };
  const int client = f.connect();
  f.request(client, 10, 1, read_pdu(5, 1));
  const Bytes adu = f.answer(client);
  assert_int_equal(adu[7], 0x03);
  assert_int_equal(be16(&adu[9]), 5);
  assert_int_equal(f.slave.seen.size(), 2);
  assert_int_equal(f.counters().crc_errors.load(), 1);
  assert_int_equal(f.counters().timeouts.load(), 0);
}

void wrong_unit_in_the_reply_is_a_failed_try(void **) {
  gw::ModbusConfig config;
  config.response_timeout_ms = 100;
  Fixture f(config);
  f.slave.respond = [](const Bytes &request) {
    Bytes other = request;
    other[0] = 2;
    return standard_reply(other);
  };
  const int client = f.connect();
  f.request(client, 11, 1, read_10);
  expect_exception(f.answer(client), 0x03, 0x0B);
  assert_int_equal(f.counters().timeouts.load(), 1);
}

void broadcast_gets_no_reply_and_the_bus_stays_quiet(void **) {
  gw::ModbusConfig config;
  config.broadcast_delay_ms = 150;
  Fixture f(config);
  f.slave.respond = [](const Bytes &request) { return request[0] == 0 ? Bytes{} : standard_reply(request); };
  const int client = f.connect();
  f.request(client, 1, 0, {0x06, 0x00, 0x01, 0x00, 0x02});
  f.request(client, 2, 1, read_pdu(1, 1));
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[0]), 2);  // only the read is answered
  assert_int_equal(f.slave.seen.size(), 2);
  assert_int_equal(f.slave.seen[0].frame[0], 0);
  const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(f.slave.seen[1].at - f.slave.seen[0].at);
  if (gap.count() < 150) fail_msg("the next frame came %lld ms after the broadcast", (long long)gap.count());
  assert_int_equal(f.counters().broadcasts.load(), 1);
  assert_true(f.quiet(client, 100));
}

void past_max_queue_answers_0x06(void **) {
  gw::ModbusConfig config;
  config.max_queue = 2;
  config.response_timeout_ms = 300;
  Fixture f(config);
  f.slave.respond = [](const Bytes &) { return Bytes{}; };
  const int client = f.connect();
  Bytes four;
  for (uint16_t tid = 1; tid <= 4; ++tid) {
    const Bytes adu = mb::mbap_frame(tid, 1, read_10.data(), read_10.size());
    four.insert(four.end(), adu.begin(), adu.end());
  }
  f.send_bytes(client, four);
  const Bytes first = f.answer(client, 200);  // at once, long before any timeout
  const Bytes second = f.answer(client, 200);
  assert_int_equal(be16(&first[0]), 3);
  assert_int_equal(be16(&second[0]), 4);
  expect_exception(first, 0x03, 0x06);
  expect_exception(second, 0x03, 0x06);
  assert_int_equal(f.counters().busy.load(), 2);
  expect_exception(f.answer(client), 0x03, 0x0B);
  expect_exception(f.answer(client), 0x03, 0x0B);
}

void unit_map_translates_both_ways(void **) {
  gw::ModbusConfig config;
  config.unit_map = {{5, 17}};
  Fixture f(config);
  const int client = f.connect();
  f.request(client, 3, 5, read_10);
  const Bytes adu = f.answer(client);
  assert_int_equal(adu[6], 5);
  assert_int_equal(f.slave.seen.back().frame[0], 17);
  f.request(client, 4, 6, read_10);  // not mapped: passes unchanged
  assert_int_equal(f.answer(client)[6], 6);
  assert_int_equal(f.slave.seen.back().frame[0], 6);
}

void cache_answers_repeated_reads_until_a_write(void **) {
  gw::ModbusConfig config;
  config.cache_ms = 10000;
  Fixture f(config);
  const int client = f.connect();
  f.request(client, 1, 1, read_pdu(0, 2));
  const Bytes first = f.answer(client);
  f.request(client, 2, 1, read_pdu(0, 2));
  const Bytes second = f.answer(client);
  assert_int_equal(f.slave.seen.size(), 1);
  assert_int_equal(f.counters().cache_hits.load(), 1);
  assert_true(Bytes(first.begin() + 7, first.end()) == Bytes(second.begin() + 7, second.end()));
  assert_int_equal(be16(&second[0]), 2);
  f.request(client, 3, 1, read_pdu(0, 3));  // another range: the bus
  f.answer(client);
  assert_int_equal(f.slave.seen.size(), 2);
  f.request(client, 4, 1, {0x06, 0x00, 0x00, 0x12, 0x34});  // a write drops unit 1's entries
  f.answer(client);
  f.request(client, 5, 1, read_pdu(0, 2));
  f.answer(client);
  assert_int_equal(f.slave.seen.size(), 4);
  assert_int_equal(f.counters().cache_hits.load(), 1);
}

void eight_clients_pipelining_each_get_their_own_answers(void **) {
  Fixture f(gw::ModbusConfig{});
  std::vector<int> fds;
  for (int i = 0; i < 8; ++i) fds.push_back(f.connect());
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 8; ++i) {
      const uint16_t start = static_cast<uint16_t>(i * 100 + round);
      f.request(fds[i], static_cast<uint16_t>(1000 * i + round), static_cast<uint8_t>(i + 1), read_pdu(start, 1));
    }
  }
  for (int i = 0; i < 8; ++i) {
    for (int round = 0; round < 4; ++round) {
      const Bytes adu = f.answer(fds[i]);
      assert_int_equal(be16(&adu[0]), 1000 * i + round);
      assert_int_equal(adu[6], i + 1);
      assert_int_equal(be16(&adu[9]), i * 100 + round);
    }
  }
  assert_int_equal(f.slave.seen.size(), 32);
  assert_int_equal(f.counters().replies.load(), 32);
}

void malformed_client_is_closed_alone(void **) {
  gw::ModbusConfig config;
  Fixture f(config);
  bool hold = true;
  Bytes held;
  f.slave.respond = [&](const Bytes &request) {
    if (!hold) return standard_reply(request);
    held = request;
    return Bytes{};
  };
  const int good = f.connect();
  const int bad = f.connect();
  f.request(good, 77, 1, read_10);
  assert_true(f.until([&] { return !held.empty(); }));      // in flight
  f.send_bytes(bad, {0, 1, 0, 9, 0, 6, 1, 3, 0, 0, 0, 1});  // protocol id 9
  assert_true(f.closed_by_gateway(bad));
  assert_int_equal(f.counters().malformed.load(), 1);
  assert_int_equal(f.logs.count("malformed Modbus TCP request (protocol id"), 1);
  // The other client's exchange completes undisturbed.
  const Bytes reply = standard_reply(held);
  assert_int_equal(write(f.slave.pty.master.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  hold = false;
  const Bytes adu = f.answer(good);
  assert_int_equal(be16(&adu[0]), 77);
  assert_int_equal(adu[7], 0x03);
}

// A request that has begun must be complete within the route's
// frame_timeout (the connection's own deadline, which the gateway feeds with
// the bytes it holds): a client sending a byte now and then is closed, and
// the other clients are served meanwhile.
void a_request_left_unfinished_is_closed_at_frame_timeout(void **) {
  gw::ModbusConfig config;
  Fixture f(config);
  gw::ListenerConfig limits;
  limits.frame_timeout_ms = 300;
  f.listener->reconfigure(limits, f.gateway);
  f.slave.respond = standard_reply;
  const int slow = f.connect();
  const int good = f.connect();
  const auto begun = std::chrono::steady_clock::now();
  f.send_bytes(slow, {0, 1, 0, 0, 0, 6, 1});  // the header, and no PDU yet
  f.request(good, 5, 1, read_10);
  const Bytes adu = f.answer(good);
  assert_int_equal(be16(&adu[0]), 5);
  f.send_bytes(slow, {3});  // a byte more: still the same request, the same deadline
  assert_true(f.closed_by_gateway(slow));
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - begun).count();
  // The loop's clock counts whole milliseconds from its batch's start: allow that much early.
  if (waited < 290) fail_msg("closed after %lld ms, before its frame_timeout", static_cast<long long>(waited));
  assert_int_equal(f.logs.count("frame not complete within frame_timeout (300 ms, 8 bytes of it received)"), 1);
  // Whole requests, however slowly they follow each other, are never cut.
  f.request(good, 6, 1, read_10);
  assert_int_equal(be16(&f.answer(good)[0]), 6);
}

void device_missing_at_start_then_appearing(void **) {
  gwc::TempDir links;
  const std::string link = links / "modbus0";
  Fixture f(gw::ModbusConfig{}, Fixture::line(link));
  const int client = f.connect();
  f.request(client, 1, 1, read_10);
  expect_exception(f.answer(client, 500), 0x03, 0x0B);
  assert_int_equal(f.logs.count("device not available"), 1);
  fs::create_symlink(f.slave.pty.slave, link);
  assert_true(f.until([&] { return f.logs.count("device open") == 1; }));
  f.request(client, 2, 1, read_10);
  const Bytes adu = f.answer(client);
  assert_int_equal(adu[7], 0x03);
}

void device_unplugged_mid_request(void **) {
  gwc::TempDir links;
  const std::string link = links / "modbus0";
  gw::ModbusConfig config;
  config.response_timeout_ms = 5000;
  Fixture f(config, Fixture::line(link));
  fs::create_symlink(f.slave.pty.slave, link);
  assert_true(f.until([&] { return f.logs.count("device open") == 1; }));
  f.slave.respond = [](const Bytes &) { return Bytes{}; };
  const int client = f.connect();
  f.request(client, 1, 1, read_10);
  assert_true(f.until([&] { return f.slave.seen.size() == 1; }));
  const auto start = Clock::now();
  f.slave.pty.master.reset();  // the unplug
  expect_exception(f.answer(client), 0x03, 0x0B);
  assert_true(ms_since(start) < 4000);  // not the response timeout
  assert_int_equal(f.logs.count("device lost"), 1);
  // A new adapter under the same name: the route recovers.
  f.slave.pty = gwc::open_pty(O_NONBLOCK);
  fs::remove(link);
  fs::create_symlink(f.slave.pty.slave, link);
  f.slave.seen.clear();
  f.slave.respond = standard_reply;
  assert_true(f.until([&] { return f.logs.count("device back") == 1; }));
  f.request(client, 2, 1, read_10);
  assert_int_equal(f.answer(client)[7], 0x03);
}

void rtu_client_frames_pass_as_rtu(void **) {
  gw::ModbusConfig config;
  config.client_frames = gw::ModbusClientFrames::rtu;
  config.response_timeout_ms = 100;
  Fixture f(config);
  const int client = f.connect();
  const Bytes request = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
  f.send_bytes(client, request);
  const Bytes expected = standard_reply(request);
  assert_true(f.until([&] {
    f.pull(client);
    return f.received[client].size() >= expected.size();
  }));
  assert_true(f.received[client] == expected);
  f.received[client].clear();
  // A timeout gets an RTU exception frame.
  f.slave.respond = [](const Bytes &) { return Bytes{}; };
  f.send_bytes(client, mb::rtu_frame(1, Bytes{100, 9}.data(), 2));
  const uint8_t exception[] = {100 | 0x80, 0x0B};
  const Bytes expected_exception = mb::rtu_frame(1, exception, 2);
  assert_true(f.until([&] {
    f.pull(client);
    return f.received[client].size() >= expected_exception.size();
  }));
  assert_true(f.received[client] == expected_exception);
  // A bad CRC closes that client.
  Bytes broken = request;
  broken[7] ^= 1;
  f.send_bytes(client, broken);
  assert_true(f.closed_by_gateway(client));
  assert_int_equal(f.counters().malformed.load(), 1);
}

// At 1200 baud 3.5 characters are 29.2 ms: a pty does not pace bytes, but
// the gateway's own spacing shows in when the slave sees each request after
// its previous reply. Lower bounds only.
void inter_frame_gap_at_a_low_baud(void **) {
  Fixture f(gw::ModbusConfig{}, Fixture::line("", 1200));
  const int client = f.connect();
  for (uint16_t tid = 1; tid <= 4; ++tid) f.request(client, tid, 1, read_pdu(tid, 1));
  for (uint16_t tid = 1; tid <= 4; ++tid) assert_int_equal(be16(&f.answer(client)[0]), tid);
  assert_int_equal(f.slave.seen.size(), 4);
  using std::chrono::microseconds;
  const long long gap_us = 29167;         // 3.5 characters of 10 bits at 1200 baud
  const long long request_us = 8 * 8334;  // the 8-byte request's own time on the wire
  for (size_t i = 1; i < f.slave.seen.size(); ++i) {
    const auto &previous = f.slave.seen[i - 1];
    const long long after_reply =
        std::chrono::duration_cast<microseconds>(f.slave.seen[i].at - previous.replied_at).count();
    const long long after_request = std::chrono::duration_cast<microseconds>(f.slave.seen[i].at - previous.at).count();
    if (after_reply < gap_us) fail_msg("request %zu came %lld us after the previous reply", i, after_reply);
    // Generous: the test may read the previous request late (a loaded
    // machine), which shortens what it measures; never an upper bound.
    if (after_request < request_us + gap_us - 20000)
      fail_msg("request %zu came %lld us after the previous request", i, after_request);
  }
}

void tcp_bus_remaps_transaction_ids_and_drops_late_answers(void **) {
  gw::ModbusConfig config;
  config.response_timeout_ms = 100;
  auto device = std::make_unique<TcpDevice>();
  Fixture f(config, std::move(device));
  const int a = f.connect();
  const int b = f.connect();
  f.request(a, 0x0505, 1, read_pdu(1, 1));
  f.request(b, 0x0505, 2, read_pdu(2, 1));
  const Bytes answer_a = f.answer(a);
  const Bytes answer_b = f.answer(b);
  assert_int_equal(be16(&answer_a[0]), 0x0505);
  assert_int_equal(be16(&answer_b[0]), 0x0505);
  assert_int_equal(be16(&answer_a[9]), 1);
  assert_int_equal(be16(&answer_b[9]), 2);
  assert_int_equal(f.device->seen.size(), 2);
  assert_true(f.device->seen[0].transaction != f.device->seen[1].transaction);  // remapped
  // A late answer: the device holds the next one past the timeout, then
  // sends it just before answering the following request.
  auto standard = f.device->respond;
  f.device->respond = [](const TcpDevice::Seen &) { return Bytes{}; };
  f.request(a, 0x0A0A, 1, read_pdu(10, 1));
  expect_exception(f.answer(a), 0x03, 0x0B);
  const TcpDevice::Seen late = f.device->seen.back();
  f.device->respond = [&](const TcpDevice::Seen &s) {
    f.device->answer(late.transaction, late.unit, Bytes{0x03, 2, 0xDE, 0xAD});
    return standard(s);
  };
  f.request(a, 0x0B0B, 1, read_pdu(11, 1));
  const Bytes next = f.answer(a);
  assert_int_equal(be16(&next[0]), 0x0B0B);
  assert_int_equal(be16(&next[9]), 11);
  assert_true(f.quiet(a, 100));
}

void tcp_bus_unreachable_answers_0x0B(void **) {
  gw::ModbusConfig config;
  config.response_timeout_ms = 500;
  auto device = std::make_unique<TcpDevice>();
  device->listening.reset();  // nobody listens there any more
  Fixture f(config, std::move(device));
  const int client = f.connect();
  f.request(client, 1, 1, read_10);
  expect_exception(f.answer(client, 400), 0x03, 0x0B);  // the refusal, not the timeout
}

// Bytes on the bus with no request waiting (a slave's late answer, noise)
// are discarded: they never become the next request's answer.
void bus_bytes_with_no_request_are_discarded(void **) {
  Fixture f(gw::ModbusConfig{});
  const int client = f.connect();
  const uint8_t stale_pdu[] = {0x03, 0x02, 0xDE, 0xAD};
  const Bytes stale = mb::rtu_frame(1, stale_pdu, sizeof stale_pdu);
  assert_int_equal(write(f.slave.pty.master.get(), stale.data(), stale.size()), static_cast<ssize_t>(stale.size()));
  f.run_for(30);
  f.request(client, 4, 1, read_pdu(4, 1));
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[9]), 4);
  assert_true(f.quiet(client, 50));
}

// A client that leaves with requests queued: they never reach the bus, and
// the answer to its request in flight is discarded; the next client's
// request is the next on the bus.
void a_client_gone_takes_its_queue_along(void **) {
  Fixture f(gw::ModbusConfig{});
  std::vector<Bytes> held;
  f.slave.respond = [&](const Bytes &request) {
    held.push_back(request);
    return Bytes{};
  };
  const int leaving = f.connect();
  const int staying = f.connect();
  for (uint16_t tid = 1; tid <= 3; ++tid) f.request(leaving, tid, 1, read_pdu(tid, 1));
  assert_true(f.until([&] { return held.size() == 1; }));
  f.request(staying, 9, 1, read_pdu(9, 1));
  f.run_for(20);
  for (auto &client : f.clients) {
    if (client.get() == leaving) client.reset();
  }
  f.run_for(20);
  const Bytes reply = standard_reply(held[0]);
  assert_int_equal(write(f.slave.pty.master.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  f.slave.respond = standard_reply;
  const Bytes adu = f.answer(staying);
  assert_int_equal(be16(&adu[0]), 9);
  assert_int_equal(f.slave.seen.size(), 2);  // the leaver's first request, then the staying client's
  assert_int_equal(be16(&f.slave.seen[1].frame[2]), 9);
}

// A graceful stop lets the request in flight finish: its answer reaches the
// client, and then the client is closed.
void stop_lets_the_request_in_flight_finish(void **) {
  Fixture f(gw::ModbusConfig{});
  Bytes held;
  f.slave.respond = [&](const Bytes &request) {
    held = request;
    return Bytes{};
  };
  const int client = f.connect();
  f.request(client, 5, 1, read_pdu(5, 1));
  assert_true(f.until([&] { return !held.empty(); }));
  f.server->stop();
  f.run_for(50);
  const Bytes reply = standard_reply(held);
  assert_int_equal(write(f.slave.pty.master.get(), reply.data(), reply.size()), static_cast<ssize_t>(reply.size()));
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[0]), 5);
  assert_int_equal(be16(&adu[9]), 5);
  assert_true(f.closed_by_gateway(client));
}

// The device drops the connection: the next request connects again.
void tcp_bus_reconnects_after_loss(void **) {
  auto device = std::make_unique<TcpDevice>();
  Fixture f(gw::ModbusConfig{}, std::move(device));
  const int client = f.connect();
  f.request(client, 1, 1, read_pdu(1, 1));
  assert_int_equal(f.answer(client)[7], 0x03);
  f.device->conn.reset();
  f.run_for(50);
  f.request(client, 2, 1, read_pdu(2, 1));
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[0]), 2);
  assert_int_equal(be16(&adu[9]), 2);
  assert_int_equal(f.device->seen.size(), 2);
}

// A Modbus TCP device that answers with a malformed MBAP header (protocol
// id 7): the connection is dropped (nothing after it can be framed), that
// request gets 0x0B, and the next request connects again and is served.
void tcp_bus_drops_a_device_that_answers_malformed_frames(void **) {
  auto device = std::make_unique<TcpDevice>();
  TcpDevice *raw = device.get();
  bool garbled = false;
  raw->respond = [&, standard = raw->respond](const TcpDevice::Seen &seen) {
    if (garbled) return standard(seen);
    garbled = true;
    const uint8_t bad[] = {static_cast<uint8_t>(seen.transaction >> 8),
                           static_cast<uint8_t>(seen.transaction),
                           0,
                           7,
                           0,
                           3,
                           seen.unit,
                           0x03,
                           0x00};
    assert_int_equal(send(raw->conn.get(), bad, sizeof bad, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof bad));
    return Bytes{};
  };
  Fixture f(gw::ModbusConfig{}, std::move(device));
  const int client = f.connect();
  f.request(client, 1, 1, read_pdu(1, 1));
  expect_exception(f.answer(client), 0x03, 0x0B);
  assert_int_equal(f.logs.count("protocol id"), 1);
  f.request(client, 2, 1, read_pdu(2, 1));
  const Bytes adu = f.answer(client);
  assert_int_equal(be16(&adu[0]), 2);
  assert_int_equal(adu[7], 0x03);
  assert_int_equal(f.device->seen.size(), 2);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(invalid_configurations_are_named),
      cmocka_unit_test(round_trip_keeps_the_transaction_id),
      cmocka_unit_test(exceptions_pass_through),
      cmocka_unit_test(timeout_answers_0x0B_after_the_retries),
      cmocka_unit_test(bad_crc_reply_is_counted_and_retried),
      cmocka_unit_test(wrong_unit_in_the_reply_is_a_failed_try),
      cmocka_unit_test(broadcast_gets_no_reply_and_the_bus_stays_quiet),
      cmocka_unit_test(past_max_queue_answers_0x06),
      cmocka_unit_test(unit_map_translates_both_ways),
      cmocka_unit_test(cache_answers_repeated_reads_until_a_write),
      cmocka_unit_test(eight_clients_pipelining_each_get_their_own_answers),
      cmocka_unit_test(malformed_client_is_closed_alone),
      cmocka_unit_test(a_request_left_unfinished_is_closed_at_frame_timeout),
      cmocka_unit_test(device_missing_at_start_then_appearing),
      cmocka_unit_test(device_unplugged_mid_request),
      cmocka_unit_test(rtu_client_frames_pass_as_rtu),
      cmocka_unit_test(inter_frame_gap_at_a_low_baud),
      cmocka_unit_test(tcp_bus_remaps_transaction_ids_and_drops_late_answers),
      cmocka_unit_test(tcp_bus_unreachable_answers_0x0B),
      cmocka_unit_test(bus_bytes_with_no_request_are_discarded),
      cmocka_unit_test(a_client_gone_takes_its_queue_along),
      cmocka_unit_test(stop_lets_the_request_in_flight_finish),
      cmocka_unit_test(tcp_bus_reconnects_after_loss),
      cmocka_unit_test(tcp_bus_drops_a_device_that_answers_malformed_frames),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
