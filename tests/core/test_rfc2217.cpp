// SPDX-License-Identifier: MIT
// The serial backend's RFC 2217 sessions against pseudo-terminals: a raw TCP
// client does Telnet by hand (so that every byte on the wire is the test's),
// the backend opens the pty's slave, and the test reads the line settings
// back with tcgetattr on the master (a pty pair has one termios, the
// slave's). Covers the server's offers and its answers to supported and
// unknown options, SET requests reaching the pty and answered with the value
// in effect, rfc2217 allow_settings = false, all 256 byte values both ways,
// purge, DTR/RTS/break on a device without modem lines, flow control
// suspend and resume, and hostile clients (an endless subnegotiation, a
// negotiation flood that does not read its answers), each bounded.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <functional>
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

#include "gw/serial_backend.hpp"
#include "gw/server.hpp"
#include "gw/telnet.hpp"

namespace {

namespace tn = gw::telnet;
using gwc::Clock;
using gwc::ms_since;

std::string bytes(std::initializer_list<int> list) {
  std::string out;
  for (int b : list) out.push_back(static_cast<char>(b));
  return out;
}
// IAC SB COM-PORT code value... IAC SE, as a client sends it (value escaped).
std::string request(int code, const std::string &value) {
  std::string out = bytes({255, 250, 44, code});
  for (char c : value) {
    out.push_back(c);
    if (static_cast<uint8_t>(c) == 255) out.push_back(c);
  }
  return out + bytes({255, 240});
}
std::string baud_value(uint32_t baud) {
  return bytes({static_cast<int>(baud >> 24), static_cast<int>((baud >> 16) & 255), static_cast<int>((baud >> 8) & 255),
                static_cast<int>(baud & 255)});
}
// The server's answer to `code` with `value`, unescaped, as the decoder gives it.
std::string answer(int code, const std::string &value) { return bytes({44, code + 100}) + value; }

// What the server sent, decoded: data, and every command as its own entry.
struct Received final : tn::Sink {
  std::string data;
  std::vector<std::string> negotiations;     // "251,0" for WILL BINARY
  std::vector<std::string> subnegotiations;  // bodies
  tn::Decoder decoder;
  Received() { decoder.set_binary(true); }
  void on_data(const uint8_t *p, size_t n) override { data.append(reinterpret_cast<const char *>(p), n); }
  void on_negotiation(uint8_t command, uint8_t option) override {
    negotiations.push_back(std::to_string(command) + "," + std::to_string(option));
  }
  void on_subnegotiation(const uint8_t *p, size_t n) override {
    subnegotiations.emplace_back(reinterpret_cast<const char *>(p), n);
  }
  void on_command(uint8_t) override {}
  void on_overflow() override {}
  bool has_negotiation(const std::string &n) const {
    for (const auto &x : negotiations) {
      if (x == n) return true;
    }
    return false;
  }
};

using gwc::Logs;

// A server with one rfc2217 listener on a pty, driven on the test's thread.
struct Fixture {
  Logs logs;
  gwc::TempDir locks;
  gwc::Pty pty = gwc::open_pty(O_NONBLOCK);
  std::unique_ptr<gw::Server> server;
  std::shared_ptr<gw::SerialBackend> backend;
  gw::Listener *listener = nullptr;
  std::vector<gw::Fd> clients;

  explicit Fixture(std::function<void(gw::SerialBackendConfig &)> adjust = {},
                   gw::ListenerConfig listener_config = {}) {
    termios raw{};
    assert_int_equal(tcgetattr(pty.master.get(), &raw), 0);
    cfmakeraw(&raw);
    assert_int_equal(tcsetattr(pty.master.get(), TCSANOW, &raw), 0);
    gw::SerialBackendConfig config;
    config.path = pty.slave;
    config.open_options.lock_dir = locks.path;
    config.rfc2217.enabled = true;
    if (adjust) adjust(config);
    gw::ServerConfig server_config;
    server_config.logger.sink = &Logs::sink;
    server_config.logger.user_data = &logs;
    server_config.logger.max_level = gw::LogLevel::info;
    assert_int_equal(gw::Server::create(server, server_config), 0);
    std::unique_ptr<gw::SerialBackend> created;
    std::string why;
    if (gw::SerialBackend::create(created, server->loop(), server->logger(), config, "serial:" + config.path, why))
      fail_msg("create: %s", why.c_str());
    backend = std::move(created);
    assert_int_equal(server->listen(listener, "127.0.0.1:0", listener_config, backend), 0);
  }
  ~Fixture() {
    clients.clear();
    backend.reset();
  }

  bool until(const std::function<bool()> &done, int timeout_ms = 5000) {
    return gwc::run_until(
        done, [&] { server->loop().dispatch(1); }, timeout_ms);
  }
  // A client the device serves, with the server's four offers read.
  int connect(Received &received) {
    const uint64_t before = listener->stats().accepted.load();
    int fd = gwc::connect_to(listener->port());
    clients.emplace_back(fd);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    assert_true(until([&] { return listener->stats().accepted.load() > before && backend->device_open(); }));
    assert_true(receive(fd, received, [&] { return received.negotiations.size() >= 4; }));
    return fd;
  }
  void send(int fd, const std::string &data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n > 0) done += static_cast<size_t>(n);
      server->loop().dispatch(0);
    }
  }
  // Reads and decodes `fd` until `done`; false on the deadline or EOF.
  bool receive(int fd, Received &received, const std::function<bool()> &done, int timeout_ms = 5000) {
    const auto start = Clock::now();
    while (!done()) {
      uint8_t buffer[65536];
      ssize_t n = read(fd, buffer, sizeof buffer);
      if (n > 0) {
        received.decoder.feed(buffer, static_cast<size_t>(n), received);
        continue;
      }
      if (n == 0 || ms_since(start) > timeout_ms) return false;
      server->loop().dispatch(1);
    }
    return true;
  }
  // Sends one COM-PORT request and waits for its answer; returns the body.
  std::string ask(int fd, Received &received, int code, const std::string &value) {
    const size_t before = received.subnegotiations.size();
    send(fd, request(code, value));
    if (!receive(fd, received, [&] { return received.subnegotiations.size() > before; }))
      fail_msg("no answer to COM-PORT code %d", code);
    return received.subnegotiations.back();
  }
  std::string read_device(size_t length, int timeout_ms = 5000) {
    std::string data;
    const auto start = Clock::now();
    while (data.size() < length && ms_since(start) < timeout_ms) {
      char buffer[65536];
      ssize_t n = read(pty.master.get(), buffer, std::min(sizeof buffer, length - data.size()));
      if (n > 0)
        data.append(buffer, static_cast<size_t>(n));
      else
        server->loop().dispatch(1);
    }
    return data;
  }
  speed_t line_speed() {
    termios t{};
    assert_int_equal(tcgetattr(pty.master.get(), &t), 0);
    return cfgetospeed(&t);
  }
  tcflag_t cflag() {
    termios t{};
    assert_int_equal(tcgetattr(pty.master.get(), &t), 0);
    return t.c_cflag;
  }
};

void offers_and_option_answers(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  // WILL BINARY, DO BINARY, WILL SGA, DO COM-PORT-OPTION.
  assert_true(r.negotiations == (std::vector<std::string>{"251,0", "253,0", "251,3", "253,44"}));
  // The acks are not answered; ECHO and an unknown option are refused; the
  // client's DO COM-PORT is agreed to, and the modem state follows.
  f.send(fd, bytes({255, 253, 0, 255, 251, 0, 255, 251, 44, 255, 253, 1, 255, 253, 99, 255, 251, 98, 255, 253, 44}));
  assert_true(f.receive(fd, r, [&] { return r.negotiations.size() >= 8 && !r.subnegotiations.empty(); }));
  assert_true(r.has_negotiation("252,1"));   // WONT ECHO
  assert_true(r.has_negotiation("252,99"));  // WONT 99
  assert_true(r.has_negotiation("254,98"));  // DONT 98
  assert_true(r.has_negotiation("251,44"));  // WILL COM-PORT
  assert_int_equal(r.negotiations.size(), 8);
  assert_true(r.subnegotiations[0] == answer(7, bytes({0})));  // a pty has no modem lines
  // Asked again: only the refusal repeats, the agreed options stay quiet.
  f.send(fd, bytes({255, 253, 0, 255, 251, 44, 255, 253, 99}));
  assert_true(f.receive(fd, r, [&] { return r.negotiations.size() >= 9; }));
  assert_true(r.negotiations.back() == "252,99");
  assert_true(f.receive(
                  fd, r, [] { return false; }, 200) == false);
  assert_int_equal(r.negotiations.size(), 9);
}

void set_requests_reach_the_pty(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  assert_true(f.ask(fd, r, 1, baud_value(19200)) == answer(1, baud_value(19200)));
  assert_int_equal(f.line_speed(), B19200);
  assert_true(f.ask(fd, r, 1, baud_value(0)) == answer(1, baud_value(19200)));   // a query
  assert_true(f.ask(fd, r, 1, baud_value(10)) == answer(1, baud_value(19200)));  // out of range: the value in effect
  assert_int_equal(f.line_speed(), B19200);
  assert_true(f.ask(fd, r, 1, baud_value(115200)) == answer(1, baud_value(115200)));
  assert_int_equal(f.line_speed(), B115200);
  assert_true(f.ask(fd, r, 4, bytes({2})) == answer(4, bytes({2})));
  assert_true(f.cflag() & CSTOPB);
  assert_true(f.ask(fd, r, 4, bytes({1})) == answer(4, bytes({1})));
  assert_false(f.cflag() & CSTOPB);
  assert_true(f.ask(fd, r, 4, bytes({3})) == answer(4, bytes({1})));  // 1.5: not a SerialSettings value
  // Parity and data bits: the pty keeps neither; the answer is what was applied.
  assert_true(f.ask(fd, r, 3, bytes({3})) == answer(3, bytes({3})));
  assert_true(f.ask(fd, r, 2, bytes({7})) == answer(2, bytes({7})));
  assert_true(f.ask(fd, r, 2, bytes({9})) == answer(2, bytes({7})));
  assert_true(f.ask(fd, r, 3, bytes({0})) == answer(3, bytes({3})));
  assert_true(f.ask(fd, r, 5, bytes({3})) == answer(5, bytes({3})));  // RTS/CTS flow control
  assert_true(f.cflag() & CRTSCTS);
  assert_true(f.ask(fd, r, 5, bytes({0})) == answer(5, bytes({3})));
  assert_true(f.ask(fd, r, 5, bytes({1})) == answer(5, bytes({1})));
  assert_false(f.cflag() & CRTSCTS);
  assert_int_equal(f.logs.count("set the line to 115200 8N2"), 1);
  assert_int_equal(f.logs.count("asked for 10 8N1: baud 10 is out of range"), 1);
}

void settings_refused_keep_the_port(void **) {
  Fixture f([](gw::SerialBackendConfig &c) { c.rfc2217.allow_settings = false; });
  Received r;
  int fd = f.connect(r);
  assert_true(f.ask(fd, r, 1, baud_value(19200)) == answer(1, baud_value(9600)));
  assert_int_equal(f.line_speed(), B9600);
  assert_true(f.ask(fd, r, 4, bytes({2})) == answer(4, bytes({1})));
  assert_false(f.cflag() & CSTOPB);
  assert_true(f.ask(fd, r, 5, bytes({3})) == answer(5, bytes({1})));
  // Signalling still acts: DTR is answered as asked.
  assert_true(f.ask(fd, r, 5, bytes({9})) == answer(5, bytes({9})));
}

void all_byte_values_both_ways(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  f.send(fd, bytes({255, 253, 0, 255, 251, 0}));  // binary both ways (acks)
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  all += all + all;
  std::string escaped;
  for (char c : all) {
    escaped.push_back(c);
    if (static_cast<uint8_t>(c) == 255) escaped.push_back(c);
  }
  f.send(fd, escaped);
  assert_true(f.read_device(all.size()) == all);
  assert_int_equal(write(f.pty.master.get(), all.data(), all.size()), static_cast<ssize_t>(all.size()));
  assert_true(f.receive(fd, r, [&] { return r.data.size() >= all.size(); }));
  assert_true(r.data == all);
}

void purge_and_control_lines(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  assert_true(f.ask(fd, r, 12, bytes({3})) == answer(12, bytes({3})));
  assert_true(f.ask(fd, r, 12, bytes({1})) == answer(12, bytes({1})));
  // A pty has no modem lines: DTR and RTS are a virtual state, logged once.
  assert_true(f.ask(fd, r, 5, bytes({8})) == answer(5, bytes({8})));
  assert_true(f.ask(fd, r, 5, bytes({9})) == answer(5, bytes({9})));
  assert_true(f.ask(fd, r, 5, bytes({7})) == answer(5, bytes({9})));
  assert_true(f.ask(fd, r, 5, bytes({12})) == answer(5, bytes({12})));
  assert_true(f.ask(fd, r, 5, bytes({10})) == answer(5, bytes({12})));
  assert_true(f.ask(fd, r, 5, bytes({11})) == answer(5, bytes({11})));
  assert_int_equal(f.logs.count("has no modem lines"), 1);
  // Break: real on a pty (a no-op there), virtual where the ioctl is missing
  // (qemu-user: ENOSYS); answered as asked either way.
  assert_true(f.ask(fd, r, 5, bytes({5})) == answer(5, bytes({5})));
  assert_true(f.ask(fd, r, 5, bytes({4})) == answer(5, bytes({5})));
  assert_true(f.ask(fd, r, 5, bytes({6})) == answer(5, bytes({6})));
  // Masks are stored and answered; a modem state poll is answered.
  assert_true(f.ask(fd, r, 11, bytes({0})) == answer(11, bytes({0})));
  assert_true(f.ask(fd, r, 10, bytes({255})) == answer(10, bytes({255})));
  assert_true(f.ask(fd, r, 7, "") == answer(7, bytes({0})));
  assert_true(f.ask(fd, r, 0, "") == answer(0, "gateway"));
  // Data still flows.
  f.send(fd, "ok");
  assert_true(f.read_device(2) == "ok");
}

void suspend_holds_device_output_until_resume(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  f.send(fd, request(8, ""));  // FLOWCONTROL-SUSPEND
  assert_true(f.until([&] { return false; }, 100) == false);
  assert_int_equal(write(f.pty.master.get(), "held", 4), 4);
  assert_false(f.receive(
      fd, r, [&] { return !r.data.empty(); }, 300));
  f.send(fd, request(9, ""));  // FLOWCONTROL-RESUME
  assert_true(f.receive(fd, r, [&] { return r.data.size() >= 4; }));
  assert_true(r.data == "held");
}

void endless_subnegotiation_is_bounded(void **) {
  Fixture f;
  Received r;
  int fd = f.connect(r);
  f.send(fd, bytes({255, 250, 44}));
  const std::string junk(1 << 20, 'j');
  f.send(fd, junk);
  assert_true(f.read_device(1, 300).empty());  // nothing of it reaches the device
  f.send(fd, bytes({255, 240}));
  // The session goes on: the next request is answered, the overflow logged once.
  assert_true(f.ask(fd, r, 1, baud_value(0)) == answer(1, baud_value(9600)));
  f.send(fd, bytes({255, 250, 44}) + junk + bytes({255, 240}));
  assert_true(f.ask(fd, r, 1, baud_value(0)) == answer(1, baud_value(9600)));
  assert_int_equal(f.logs.count("sent a subnegotiation over"), 1);
}

void negotiation_flood_that_is_not_read_is_dropped(void **) {
  gw::ListenerConfig limits;
  limits.high_water = 16 * 1024;
  limits.low_water = 4 * 1024;
  limits.max_output = 64 * 1024;
  Fixture f([](gw::SerialBackendConfig &c) { c.clients = gw::SerialClients::shared; }, limits);
  Received r;
  int fd = f.connect(r);
  // Small socket buffers, so that the kernel does not absorb the flood.
  const int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  // DO 99 over and over, never reading the WONTs.
  std::string flood;
  for (int i = 0; i < 2000000; ++i) flood += bytes({255, 253, 99});
  size_t written = 0;
  const auto start = Clock::now();
  while (written < flood.size() && ms_since(start) < 3000 && f.backend->counters().dropped_slow.load() == 0) {
    ssize_t n = write(fd, flood.data() + written, std::min<size_t>(65536, flood.size() - written));
    if (n > 0) written += static_cast<size_t>(n);
    f.server->loop().dispatch(1);
  }
  // Either dropped, or held back by the socket: never queued without bound.
  assert_true(f.backend->counters().dropped_slow.load() == 1 || written < flood.size());
  // The device serves another client meanwhile.
  Received r2;
  int fd2 = f.connect(r2);
  assert_true(f.ask(fd2, r2, 1, baud_value(0)) == answer(1, baud_value(9600)));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(offers_and_option_answers),
      cmocka_unit_test(set_requests_reach_the_pty),
      cmocka_unit_test(settings_refused_keep_the_port),
      cmocka_unit_test(all_byte_values_both_ways),
      cmocka_unit_test(purge_and_control_lines),
      cmocka_unit_test(suspend_holds_device_output_until_resume),
      cmocka_unit_test(endless_subnegotiation_is_bounded),
      cmocka_unit_test(negotiation_flood_that_is_not_read_is_dropped),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
