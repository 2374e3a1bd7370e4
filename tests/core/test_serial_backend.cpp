// SPDX-License-Identifier: MIT
// The serial backend against pseudo-terminals standing in for UARTs: the test
// owns each pty's master (the far end of the cable) and the backend opens the
// slave by its path. Everything runs on the test's thread: the helpers drive
// the server's loop (dispatch) while they wait on the client sockets and the
// master, each wait bounded by a deadline, so that nothing sleeps to
// synchronise and a lost byte fails instead of hanging.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
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

namespace {

namespace fs = std::filesystem;
using gwc::Clock;
using gwc::ms_since;

void set_nonblocking(int fd) { assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }

using gwc::Pty;
using gwc::TempDir;

Pty open_pty() { return gwc::open_pty(O_NONBLOCK); }

using gwc::Logs;

bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

int connect_from(int port, const char *source);

// A server with one listener whose handler is the backend under test.
struct Fixture {
  Logs logs;
  TempDir locks;
  std::unique_ptr<gw::Server> server;  // declared before backend: the listener's reference outlives ours
  std::shared_ptr<gw::SerialBackend> backend;
  gw::Listener *listener = nullptr;

  Fixture(gw::SerialBackendConfig config, gw::ListenerConfig listener_config = {}) {
    gw::ServerConfig server_config;
    server_config.logger.sink = &Logs::sink;
    server_config.logger.user_data = &logs;
    server_config.logger.max_level = gw::LogLevel::info;
    assert_int_equal(gw::Server::create(server, server_config), 0);
    if (config.open_options.lock_dir == gw::SerialOpenOptions{}.lock_dir) config.open_options.lock_dir = locks.path;
    std::unique_ptr<gw::SerialBackend> created;
    std::string why;
    int rc = gw::SerialBackend::create(created, server->loop(), server->logger(), config, "serial:" + config.path, why);
    if (rc) fail_msg("create: %s", why.c_str());
    backend = std::move(created);
    assert_int_equal(server->listen(listener, "127.0.0.1:0", listener_config, backend), 0);
  }
  std::vector<gw::Fd> clients;  // closed before the server, so that the backend sees them go

  ~Fixture() {
    clients.clear();
    backend.reset();
  }

  const gw::SerialCounters &counters() const { return backend->counters(); }

  // Runs the loop until `done` or the deadline; false on the deadline.
  bool until(const std::function<bool()> &done, int timeout_ms = 5000) {
    return gwc::run_until(
        done, [&] { server->loop().dispatch(1); }, timeout_ms);
  }

  // A client socket, connected and accepted (the backend saw on_open).
  int connect(const char *source = nullptr) {
    const uint64_t before = listener->stats().accepted.load();
    int fd = source ? connect_from(listener->port(), source) : gwc::connect_to(listener->port());
    clients.emplace_back(fd);
    set_nonblocking(fd);
    assert_true(until([&] { return listener->stats().accepted.load() > before; }));
    return fd;
  }
  // A client that the device serves (opened for it, on-connect).
  int connect_served(const char *source = nullptr) {
    int fd = connect(source);
    assert_true(until([&] { return backend->device_open(); }));
    return fd;
  }
  // Closes a client before the test ends (the peer leaving).
  void hang_up(int fd) {
    for (auto &client : clients) {
      if (client.get() == fd) client.reset();
    }
  }

  // Reads from `fd` (non-blocking) until `length` bytes came, driving the
  // loop meanwhile. Fails on the deadline or EOF.
  std::string read_exactly(int fd, size_t length, int timeout_ms = 5000) {
    std::string data;
    const auto start = Clock::now();
    while (data.size() < length) {
      char buffer[65536];
      ssize_t n = read(fd, buffer, std::min(sizeof buffer, length - data.size()));
      if (n > 0) {
        data.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) fail_msg("EOF after %zu of %zu bytes: \"%s\"", data.size(), length, data.c_str());
      if (errno != EAGAIN && errno != EIO) fail_msg("read: %s", std::strerror(errno));
      if (ms_since(start) > timeout_ms)
        fail_msg("timed out after %zu of %zu bytes: \"%s\"", data.size(), length, data.c_str());
      server->loop().dispatch(1);
    }
    return data;
  }

  // Everything `fd` sends up to its EOF; fails on the deadline.
  std::string read_to_eof(int fd, int timeout_ms = 5000) {
    std::string data;
    const auto start = Clock::now();
    for (;;) {
      char buffer[4096];
      ssize_t n = read(fd, buffer, sizeof buffer);
      if (n > 0) {
        data.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return data;
      if (errno == ECONNRESET) return data;
      if (ms_since(start) > timeout_ms) fail_msg("no EOF within %d ms; got \"%s\"", timeout_ms, data.c_str());
      server->loop().dispatch(1);
    }
  }

  // One direction of a bulk transfer, driven with the loop: `data` is
  // written into `from` (non-blocking, from `written` on) and read from `to`
  // until all of it came. Returns what came; `longest_stall_ms` is the
  // longest time `from` took no bytes.
  std::string transfer(int from, int to, const std::string &data, size_t written,
                       long long *longest_stall_ms = nullptr) {
    std::string received;
    auto last_progress = Clock::now();
    const auto start = Clock::now();
    while (received.size() < data.size()) {
      if (ms_since(start) > 30000) fail_msg("%zu of %zu bytes after 30 s", received.size(), data.size());
      ssize_t n = written < data.size()
                      ? write(from, data.data() + written, std::min<size_t>(65536, data.size() - written))
                      : 0;
      if (n > 0) {
        written += static_cast<size_t>(n);
        if (longest_stall_ms) *longest_stall_ms = std::max(*longest_stall_ms, ms_since(last_progress));
        last_progress = Clock::now();
      }
      server->loop().dispatch(0);
      char buffer[65536];
      n = read(to, buffer, sizeof buffer);
      if (n > 0) received.append(buffer, static_cast<size_t>(n));
      if (n == 0) fail_msg("EOF after %zu bytes", received.size());
    }
    return received;
  }

  // Writes `data` into `from` without reading the other side, until `from`
  // takes nothing for 300 ms; returns how much it took.
  size_t write_until_held_back(int from, const std::string &data) {
    size_t written = 0;
    auto last_progress = Clock::now();
    while (written < data.size() && ms_since(last_progress) < 300) {
      ssize_t n = write(from, data.data() + written, std::min<size_t>(65536, data.size() - written));
      if (n > 0) {
        written += static_cast<size_t>(n);
        last_progress = Clock::now();
      }
      server->loop().dispatch(1);
    }
    return written;
  }

  // True when nothing arrives on `fd` for `quiet_ms` of running the loop.
  bool stays_quiet(int fd, int quiet_ms) {
    const auto start = Clock::now();
    while (ms_since(start) < quiet_ms) {
      server->loop().dispatch(1);
      char byte;
      if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    }
    return true;
  }
};

void write_all(int fd, const std::string &data) {
  size_t done = 0;
  const auto start = Clock::now();
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN) fail_msg("write: %s", std::strerror(errno));
    if (ms_since(start) > 5000) fail_msg("write timed out");
  }
}

// A client connected from `source` (any 127.x address reaches loopback).
int connect_from(int port, const char *source) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, source, &address.sin_addr), 1);
  assert_int_equal(bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  address.sin_port = htons(static_cast<uint16_t>(port));
  assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &address.sin_addr), 1);
  assert_int_equal(::connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
  set_nonblocking(fd);
  return fd;
}

std::string pattern(size_t length, uint32_t seed = 2463534242u) {
  std::string data(length, '\0');
  uint32_t x = seed;  // xorshift: no short period a bug could hide in
  for (auto &byte : data) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    byte = static_cast<char>(x);
  }
  return data;
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

gw::SerialBackendConfig config_for(const std::string &path) {
  gw::SerialBackendConfig config;
  config.path = path;
  config.settings.baud = 115200;
  return config;
}

gw::ListenerConfig framed(gw::Framing framing) {
  gw::ListenerConfig config;
  config.framing = framing;
  return config;
}

// ---------------------------------------------------------------------------
// Round trips

void raw_round_trip_both_ways(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  assert_false(f.backend->device_open());  // on-connect: nobody has asked yet
  int client = f.connect_served();
  write_all(client, "hello device");
  assert_string_equal(f.read_exactly(pty.master.get(), 12).c_str(), "hello device");
  write_all(pty.master.get(), "hello client");
  assert_string_equal(f.read_exactly(client, 12).c_str(), "hello client");
  assert_int_equal(f.counters().bytes_to_device.load(), 12);
  assert_int_equal(f.counters().bytes_from_device.load(), 12);
  assert_int_equal(f.counters().opens.load(), 1);
  assert_int_equal(f.logs.count("device open ("), 1);
  // The last client gone, the device is closed (the board saves power).
  f.hang_up(client);
  assert_true(f.until([&] { return !f.backend->device_open(); }));
  assert_int_equal(f.logs.count("device closed"), 1);
}

void line_round_trip_both_ways(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.packing.delimiter = "\n";
  config.packing.keep_delimiter = false;  // the line framing adds its own '\n'
  Fixture f(config, framed(gw::Framing::line));
  int client = f.connect_served();
  write_all(client, "first\nsecond\n");
  assert_string_equal(f.read_exactly(pty.master.get(), 13).c_str(), "first\nsecond\n");
  write_all(pty.master.get(), "ab");  // held: no delimiter yet
  assert_true(f.stays_quiet(client, 50));
  write_all(pty.master.get(), "c\nxyz\n");
  assert_string_equal(f.read_exactly(client, 8).c_str(), "abc\nxyz\n");
  // A last line ended by EOF instead of '\n' reaches the device as it came.
  write_all(client, "last");
  shutdown(client, SHUT_WR);
  assert_string_equal(f.read_exactly(pty.master.get(), 4).c_str(), "last");
  assert_true(f.read_to_eof(client).empty());  // and the client's EOF ends its session
  assert_true(f.until([&] { return !f.backend->device_open(); }));
  char byte;
  assert_int_equal(read(pty.master.get(), &byte, 1), -1);  // no '\n' was added
}

void u16be_payload_reaches_the_device_without_its_prefix(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave), framed(gw::Framing::u16be));
  int client = f.connect_served();
  write_all(client, std::string("\0\3xyz\0\2ok", 9));
  assert_string_equal(f.read_exactly(pty.master.get(), 5).c_str(), "xyzok");
  write_all(pty.master.get(), "Q");
  assert_true(f.read_exactly(client, 3) == std::string("\0\1Q", 3));
}

// A packet longer than a framed route's max_frame goes out as several
// messages, none over the limit.
void long_packets_split_at_max_frame(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.packing.delimiter = "\n";
  config.packing.keep_delimiter = false;
  gw::ListenerConfig limits = framed(gw::Framing::u16be);
  limits.max_frame = 4;
  Fixture f(config, limits);
  int client = f.connect_served();
  write_all(pty.master.get(), "abcdefghij\n");
  assert_true(f.read_exactly(client, 16) == std::string("\0\4abcd\0\4efgh\0\2ij", 16));
}

// ---------------------------------------------------------------------------
// Client policies

void exclusive_refuses_the_second_client(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int first = f.connect_served();
  int second = f.connect();
  const std::string said = f.read_to_eof(second);
  assert_string_equal(said.c_str(), ("serial:" + pty.slave + " is in use by another client\n").c_str());
  assert_int_equal(f.counters().refused_busy.load(), 1);
  // The first client was not disturbed.
  write_all(pty.master.get(), "still yours");
  assert_string_equal(f.read_exactly(first, 11).c_str(), "still yours");
}

void kick_old_hands_the_port_to_the_newcomer(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.clients = gw::SerialClients::kick_old;
  Fixture f(config);
  int old_client = f.connect_served();
  int newcomer = f.connect();
  const std::string said = f.read_to_eof(old_client);
  assert_true(contains(said, "serial:" + pty.slave + " was taken over by a new client from 127.0.0.1:"));
  assert_int_equal(std::count(said.begin(), said.end(), '\n'), 1);
  assert_int_equal(f.counters().kicked.load(), 1);
  // The newcomer has the port, both ways; the device stayed open.
  write_all(newcomer, "mine");
  assert_string_equal(f.read_exactly(pty.master.get(), 4).c_str(), "mine");
  write_all(pty.master.get(), "yes");
  assert_string_equal(f.read_exactly(newcomer, 3).c_str(), "yes");
  assert_int_equal(f.counters().opens.load(), 1);
}

void shared_fans_out_and_keeps_frames_whole(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.clients = gw::SerialClients::shared;
  Fixture f(config, framed(gw::Framing::line));
  int a = f.connect();
  int b = f.connect();
  assert_true(f.until([&] { return f.backend->device_open() && f.listener->client_count() == 2; }));
  write_all(pty.master.get(), "to all");
  assert_string_equal(f.read_exactly(a, 7).c_str(), "to all\n");
  assert_string_equal(f.read_exactly(b, 7).c_str(), "to all\n");
  // Both send many long lines while the far end does not read: the device
  // queue fills and writes to the device are partial, yet every line
  // arrives whole, and each client's lines in order.
  const size_t lines = 200, width = 999;
  std::string from_a, from_b;
  for (size_t i = 0; i < lines; ++i) {
    from_a += std::string(width, 'a') + "\n";
    from_b += std::string(width, 'b') + "\n";
  }
  size_t sent_a = 0, sent_b = 0;
  std::string at_device;
  const auto start = Clock::now();
  while (at_device.size() < from_a.size() + from_b.size()) {
    if (ms_since(start) > 10000) fail_msg("%zu bytes reached the device", at_device.size());
    for (auto [fd, text, sent] :
         {std::tuple<int, std::string *, size_t *>{a, &from_a, &sent_a}, {b, &from_b, &sent_b}}) {
      ssize_t n =
          *sent < text->size() ? write(fd, text->data() + *sent, std::min<size_t>(3000, text->size() - *sent)) : 0;
      if (n > 0) *sent += static_cast<size_t>(n);
    }
    f.server->loop().dispatch(1);
    if (sent_a + sent_b < from_a.size() + from_b.size() && ms_since(start) < 200) continue;  // let the queue fill first
    char buffer[8192];
    ssize_t n = read(pty.master.get(), buffer, sizeof buffer);
    if (n > 0) at_device.append(buffer, static_cast<size_t>(n));
  }
  size_t count_a = 0, count_b = 0;
  for (size_t at = 0; at < at_device.size(); at += width + 1) {
    const char kind = at_device[at];
    if (at_device.compare(at, width + 1, std::string(width, kind) + "\n") != 0)
      fail_msg("line at %zu is not whole", at);
    count_a += kind == 'a';
    count_b += kind == 'b';
  }
  assert_int_equal(count_a, lines);
  assert_int_equal(count_b, lines);
}

void readonly_clients_see_output_but_cannot_write(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  gw::Cidr viewer;
  assert_int_equal(gw::parse_cidr("127.0.0.2/32", viewer), 0);
  config.readonly_clients.push_back(viewer);
  Fixture f(config);
  int writer = f.connect();
  int dashboard = f.connect("127.0.0.2");  // admitted next to the exclusive writer
  assert_true(f.until([&] { return f.backend->device_open() && f.listener->client_count() == 2; }));
  write_all(dashboard, "ignored");
  write_all(writer, "cmd");
  assert_string_equal(f.read_exactly(pty.master.get(), 3).c_str(), "cmd");
  assert_true(f.until([&] { return f.counters().discarded_readonly.load() == 7; }));
  char byte;
  assert_int_equal(read(pty.master.get(), &byte, 1), -1);  // nothing else reached the device
  write_all(pty.master.get(), "reading");
  assert_string_equal(f.read_exactly(writer, 7).c_str(), "reading");
  assert_string_equal(f.read_exactly(dashboard, 7).c_str(), "reading");
}

// A client that stops reading in shared mode is dropped; the other client
// receives every byte and the far end's writes are never held up for long.
void shared_drops_a_stalled_client(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.clients = gw::SerialClients::shared;
  gw::ListenerConfig limits;
  limits.max_output = 256 * 1024;
  Fixture f(config, limits);
  int reader = f.connect();
  int stalled = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  f.clients.emplace_back(stalled);
  int small = 4096;
  assert_int_equal(setsockopt(stalled, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(f.listener->port()));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(::connect(stalled, reinterpret_cast<sockaddr *>(&to), sizeof to), 0);
  assert_true(f.until([&] { return f.backend->device_open() && f.listener->client_count() == 2; }));
  const std::string data = pattern(8 << 20);
  long long longest_stall_ms = 0;
  const std::string received = f.transfer(pty.master.get(), reader, data, 0, &longest_stall_ms);
  assert_true(received == data);
  assert_int_equal(f.counters().dropped_slow.load(), 1);
  assert_int_equal(f.logs.count("does not read the device's output fast enough"), 1);
  if (longest_stall_ms > 2000) fail_msg("the far end could not write for %lld ms", longest_stall_ms);
  assert_int_equal(f.listener->client_count(), 1);
}

// The exclusive writer is not dropped when it reads slowly: the device is
// not read meanwhile (the pty's buffer holds the far end back), and every
// byte arrives once it reads again. The data must outgrow what the kernel
// buffers for a loopback client that does not read: Linux 6.18 takes about
// 4 MiB into the socket's send buffer alone (tcp_wmem's maximum), so 16 MiB
// leaves no doubt that the backend, not the kernel, held the far end back.
void exclusive_writer_is_backpressured_not_dropped(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  const std::string data = pattern(16 << 20, 7);
  const size_t written = f.write_until_held_back(pty.master.get(), data);  // the client does not read
  assert_true(written < data.size());                                      // held back: the backend stopped reading
  const std::string received = f.transfer(pty.master.get(), client, data, written);
  assert_true(received == data);
  assert_int_equal(f.counters().dropped_slow.load(), 0);
}

// Client -> device: a far end that does not read holds the client back
// (its reading is paused; its socket fills), and nothing is lost.
void client_is_backpressured_by_a_full_device(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  const std::string data = pattern(16 << 20, 11);
  const size_t written = f.write_until_held_back(client, data);  // the far end does not read
  assert_true(written < data.size());
  const std::string at_device = f.transfer(client, pty.master.get(), data, written);
  assert_true(at_device == data);
  assert_int_equal(f.counters().bytes_to_device.load(), data.size());
}

// tcgetattr on a pty's master reads the slave's termios (the kernel's
// tty_mode_ioctl uses the linked tty): the settings the backend applied.
void line_settings_read_back_on_the_device(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.settings.baud = 57600;
  config.settings.stop_bits = 2;
  config.settings.flow_control = gw::FlowControl::rtscts;
  Fixture f(config);
  f.connect_served();
  termios t{};
  assert_int_equal(tcgetattr(pty.master.get(), &t), 0);
  assert_int_equal(cfgetospeed(&t), B57600);
  assert_true(t.c_cflag & CSTOPB);
  assert_true(t.c_cflag & CRTSCTS);
  assert_false(t.c_lflag & (ICANON | ECHO | ISIG));  // raw
  assert_false(t.c_oflag & OPOST);
}

void always_keeps_the_device_open_and_counts_unheard_output(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.open = gw::SerialOpen::always;
  Fixture f(config);
  assert_true(f.backend->device_open());  // at create, before any client
  write_all(pty.master.get(), "nobody hears this");
  assert_true(f.until([&] { return f.counters().discarded_no_client.load() == 17; }));
  int client = f.connect();
  write_all(pty.master.get(), "you do");
  assert_string_equal(f.read_exactly(client, 6).c_str(), "you do");
  f.hang_up(client);
  assert_true(f.until([&] { return f.listener->client_count() == 0; }));
  f.server->loop().dispatch(10);
  assert_true(f.backend->device_open());  // kept after the last client
  assert_int_equal(f.counters().opens.load(), 1);
}

// Packing as the client sees it: on a framed route each packet is a message.
// `pieces` are written to the far end one after the other, each once the
// backend has read the one before; they must reach the client as one
// message, sent no sooner than `gap_ms` after the last piece.
void expect_one_message_after_the_gap(const gw::SerialBackendConfig &config, const Pty &pty,
                                      const std::vector<std::string> &pieces, long long gap_ms) {
  Fixture f(config, framed(gw::Framing::u16be));
  int client = f.connect_served();
  std::string all;
  Clock::time_point last;
  for (const auto &piece : pieces) {
    write_all(pty.master.get(), piece);
    last = Clock::now();
    all += piece;
    assert_true(f.until([&] { return f.counters().bytes_from_device.load() == all.size(); }));
  }
  const std::string expected = std::string{0, static_cast<char>(all.size())} + all;
  assert_true(f.read_exactly(client, expected.size()) == expected);
  const long long quiet = ms_since(last);
  if (quiet < gap_ms) fail_msg("sent %lld ms after the last byte; the gap is %lld ms", quiet, gap_ms);
}

void idle_gap_packs_device_bytes_into_one_message(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.packing.idle_gap_us = 150000;  // long enough that scheduling cannot split it
  expect_one_message_after_the_gap(config, pty, {"ab", "cd"}, 150);
}

void char_gap_follows_the_baud_rate(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.settings.baud = 300;                // one 8N1 character: 33.3 ms
  config.packing.idle_gap_tenth_chars = 35;  // 3.5 characters: 116.7 ms
  expect_one_message_after_the_gap(config, pty, {"x", "y"}, 116);
}

// ---------------------------------------------------------------------------
// Missing device, unplug

void missing_device_refused_with_its_reason(void **) {
  TempDir dir;
  Fixture f(config_for(dir / "ttyUSB-absent"));
  int client = f.connect();
  const std::string said = f.read_to_eof(client);
  assert_true(contains(said, "serial:" + dir / "ttyUSB-absent" + " is not available: "));
  assert_true(said.back() == '\n' && said.find('\n') == said.size() - 1);  // one line
  assert_int_equal(f.counters().refused_missing.load(), 1);
  assert_int_equal(f.logs.count("device missing"), 1);
  // A second client is refused too, and the state is not logged again.
  int again = f.connect();
  assert_true(contains(f.read_to_eof(again), "is not available"));
  assert_int_equal(f.logs.count("device missing"), 1);
}

void unplug_closes_the_clients_with_a_reason(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  pty.master.reset();  // the unplug
  const std::string said = f.read_to_eof(client);
  assert_string_equal(said.c_str(), ("serial:" + pty.slave + ": the device was lost (hang-up)\n").c_str());
  assert_false(f.backend->device_open());
  assert_int_equal(f.counters().losses.load(), 1);
  assert_int_equal(f.logs.count("device lost (hang-up)"), 1);
}

// A lock file naming a live process (a forked child that waits): the PID is
// in the client's line and in the log.
struct LockHolder {
  pid_t child = -1;
  std::string file;
  LockHolder(const TempDir &locks, const std::string &device) {
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
      pause();
      _exit(0);
    }
    file = locks / ("LCK.." + device.substr(device.rfind('/') + 1));
    char text[32];
    std::snprintf(text, sizeof text, "%10d\n", static_cast<int>(child));
    std::ofstream(file) << text;
  }
  void end() {
    if (child < 0) return;
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    child = -1;
  }
  ~LockHolder() { end(); }
};

void locked_port_refused_naming_the_holder(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  LockHolder holder(f.locks, pty.slave);
  int client = f.connect();
  const std::string said = f.read_to_eof(client);
  const std::string pid = "PID " + std::to_string(holder.child);
  if (!contains(said, "serial:" + pty.slave + " is busy: ") || !contains(said, pid))
    fail_msg("said \"%s\"", said.c_str());
  assert_int_equal(std::count(said.begin(), said.end(), '\n'), 1);
  assert_int_equal(f.logs.count("device busy ("), 1);
  assert_true(f.logs.count(pid) >= 1);
  assert_int_equal(f.counters().refused_busy.load(), 1);
}

// With on_device_missing = wait, a held port is tried again (a lock going
// away makes no inotify event) and the waiting client is served.
void waiting_client_served_once_the_lock_is_released(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.on_missing = gw::DeviceMissing::wait;
  Fixture f(config);
  LockHolder holder(f.locks, pty.slave);
  int client = f.connect();
  write_all(client, "queued");  // waits in the client's socket
  assert_true(f.stays_quiet(client, 100));
  assert_false(f.backend->device_open());
  holder.end();  // the holder dies: its lock is stale now
  assert_true(f.until([&] { return f.backend->device_open(); }));
  assert_string_equal(f.read_exactly(pty.master.get(), 6).c_str(), "queued");
  assert_int_equal(f.logs.count("device busy ("), 1);
  assert_int_equal(f.logs.count("device open ("), 1);
}

// The device appears as `link` -> `pty`: the backend opens it, the bytes
// `client` sent meanwhile (`held`) reach it, and an answer flows back.
void plug_in(Fixture &f, const Pty &pty, const std::string &link, int client, const std::string &held) {
  fs::create_symlink(pty.slave, link);
  assert_true(f.until([&] { return f.backend->device_open(); }));
  assert_string_equal(f.read_exactly(pty.master.get(), held.size()).c_str(), held.c_str());
  write_all(pty.master.get(), "answer");
  assert_string_equal(f.read_exactly(client, 6).c_str(), "answer");
}

// The device appears after the client came: a by-id style symlink is
// created pointing at a pty; the waiting client is then served both ways.
void waiting_client_served_when_the_device_appears(void **) {
  TempDir dir;
  const std::string link = dir / "by-id/usb-FTDI_adapter-if00";
  auto config = config_for(link);
  config.on_missing = gw::DeviceMissing::wait;
  Fixture f(config);
  int client = f.connect();
  write_all(client, "early");
  assert_true(f.stays_quiet(client, 50));
  assert_int_equal(f.logs.count("device missing"), 1);
  Pty pty = open_pty();
  fs::create_directory(dir / "by-id");
  plug_in(f, pty, link, client, "early");
  assert_int_equal(f.counters().refused_missing.load(), 0);
}

void waiting_client_told_when_the_wait_ends(void **) {
  TempDir dir;
  auto config = config_for(dir / "ttyUSB7");
  config.on_missing = gw::DeviceMissing::wait;
  config.device_wait_ms = 200;
  Fixture f(config);
  const auto start = Clock::now();
  int client = f.connect();
  const std::string said = f.read_to_eof(client);
  assert_true(ms_since(start) >= 200);
  assert_string_equal(said.c_str(), ("serial:" + dir / "ttyUSB7" + " did not appear within 200 ms\n").c_str());
  assert_int_equal(f.counters().refused_missing.load(), 1);
}

// Unplug and re-plug with on_device_loss = hold: the client stays; the
// by-id style symlink is removed and recreated to point at a NEW pty; the
// client's data flows again. Meanwhile the process spends no CPU.
void held_client_resumes_on_a_new_device_under_the_same_name(void **) {
  TempDir dir;
  const std::string link = dir / "usb-serial";
  Pty first = open_pty();
  Pty second = open_pty();  // opened now, so that it is another pty than the first
  assert_true(second.slave != first.slave);
  fs::create_symlink(first.slave, link);
  auto config = config_for(link);
  config.on_loss = gw::DeviceLoss::hold;
  Fixture f(config);
  int client = f.connect_served();
  write_all(first.master.get(), "one");
  assert_string_equal(f.read_exactly(client, 3).c_str(), "one");
  first.master.reset();  // unplug
  assert_true(f.until([&] { return !f.backend->device_open(); }));
  fs::remove(link);  // udev removes the by-id link
  // Gone: the loop waits on inotify alone.
  const double cpu_before = cpu_seconds();
  const auto start = Clock::now();
  while (ms_since(start) < 500) f.server->loop().dispatch(500);
  const double cpu = cpu_seconds() - cpu_before;
  if (cpu > 0.02) fail_msg("%.1f ms of CPU over 500 ms with the device gone", cpu * 1000);
  write_all(client, "while away");  // held in the client's socket
  plug_in(f, second, link, client, "while away");
  assert_int_equal(f.counters().losses.load(), 1);
  assert_int_equal(f.counters().opens.load(), 2);
  assert_int_equal(f.logs.count("device lost"), 1);
  assert_int_equal(f.logs.count("device back"), 1);
  assert_int_equal(f.listener->client_count(), 1);
}

void always_waits_for_a_device_missing_at_start(void **) {
  TempDir dir;
  auto config = config_for(dir / "ttyACM0");
  config.open = gw::SerialOpen::always;
  const std::string &link = config.path;
  Fixture f(config);
  assert_false(f.backend->device_open());  // not an error: watched
  assert_int_equal(f.logs.count("device missing"), 1);
  Pty pty = open_pty();
  fs::create_symlink(pty.slave, link);
  assert_true(f.until([&] { return f.backend->device_open(); }));
  pty.master.reset();  // lost with no client: watched again, logged once
  assert_true(f.until([&] { return !f.backend->device_open(); }));
  assert_int_equal(f.logs.count("device lost"), 1);
  fs::remove(link);
  Pty again = open_pty();
  fs::create_symlink(again.slave, link);
  assert_true(f.until([&] { return f.backend->device_open(); }));
  assert_int_equal(f.logs.count("device back"), 1);
}

// A setting the driver lacks is a reason, not a crash: RS-485 on a pty.
void rs485_on_a_pty_refused_cleanly(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.settings.rs485.enabled = true;
  Fixture f(config);
  int client = f.connect();
  const std::string said = f.read_to_eof(client);
  // qemu-user 7.2 does not translate TIOCSRS485 (ENOSYS): the reason then
  // names the system rather than the driver.
  unsigned char probe[64] = {};  // a struct serial_rs485 and then some
  const bool known = ioctl(pty.master.get(), TIOCSRS485, probe) < 0 && errno != ENOSYS;
  if (!known) std::printf("# TIOCSRS485: Function not implemented here (qemu-user?)\n");
  const char *reason = known ? "has no RS-485 support" : "this system does not implement TIOCSRS485";
  if (!contains(said, reason)) fail_msg("said \"%s\"", said.c_str());
  assert_int_equal(std::count(said.begin(), said.end(), '\n'), 1);
  assert_int_equal(f.logs.count("device unusable ("), 1);
  assert_false(f.backend->device_open());
}

// Default packing adds no delay: a 16-byte exchange with an echoing far end
// takes a few loop turns, no timer. The figures are printed; the bound
// asserted is far above them (so that a loaded machine does not fail it)
// yet below any packing timer or ser2net's 4 ms p50.
void default_packing_round_trip_latency(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  std::vector<long long> micros;
  const std::string request = "0123456789abcdef";
  for (int i = 0; i < 300; ++i) {
    const auto start = Clock::now();
    write_all(client, request);
    const std::string at_device = f.read_exactly(pty.master.get(), 16);
    write_all(pty.master.get(), at_device);
    f.read_exactly(client, 16);
    micros.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  }
  std::sort(micros.begin(), micros.end());
  const long long p50 = micros[micros.size() / 2], p99 = micros[micros.size() * 99 / 100];
  std::printf("default packing, 16-byte round trip through the backend and a pty: p50 %lld us, p99 %lld us\n", p50,
              p99);
  if (p50 > 2000) fail_msg("p50 %lld us", p50);
}

// A client that sends and leaves at once: the bytes it sent are all handed
// to the device before the on-connect device closes. (Not all of them are
// read here: closing discards what the driver holds, SerialPort's rule; a
// UART's driver queue is waited for through TIOCOUTQ, but a pty's is the
// master's unread input, which TIOCOUTQ does not show.)
void last_bytes_reach_the_device_after_the_client_left(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  const std::string data = pattern(300 * 1024, 5);
  size_t written = 0;
  std::string at_device;
  const auto start = Clock::now();
  while (written < data.size()) {  // the far end reads only now and then
    if (ms_since(start) > 10000) fail_msg("wrote %zu of %zu", written, data.size());
    ssize_t n = write(client, data.data() + written, data.size() - written);
    if (n > 0) written += static_cast<size_t>(n);
    f.server->loop().dispatch(1);
    char buffer[1024];
    n = read(pty.master.get(), buffer, sizeof buffer);
    if (n > 0) at_device.append(buffer, static_cast<size_t>(n));
  }
  f.hang_up(client);
  assert_true(f.until([&] {
    char buffer[65536];
    ssize_t n = read(pty.master.get(), buffer, sizeof buffer);
    if (n > 0) at_device.append(buffer, static_cast<size_t>(n));
    return !f.backend->device_open();
  }));
  assert_int_equal(f.counters().bytes_to_device.load(), data.size());
  assert_true(data.compare(0, at_device.size(), at_device) == 0);  // what arrived is intact and in order
}

// A far end that never takes the last bytes cannot keep an on-connect
// port (and its lock) open forever: it closes after a bounded drain.
void stuck_device_closed_after_a_bounded_drain(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect_served();
  // Less than the device queue's limit, so the client is never paused and
  // its EOF is seen; more than the pty takes while nobody reads it.
  const std::string data = pattern(48 * 1024, 9);
  write_all(client, data);
  f.hang_up(client);
  assert_true(f.until([&] { return f.listener->client_count() == 0; }));
  const auto start = Clock::now();
  assert_true(f.until([&] { return !f.backend->device_open(); }, 10000));
  const long long drained_for = ms_since(start);
  if (drained_for < 1500 || drained_for > 5000)
    fail_msg("closed after %lld ms; the drain is bounded at 2000 ms", drained_for);
  assert_true(f.counters().bytes_to_device.load() < data.size());
}

// validate() names the bad value and its fix; create() refuses it.
void invalid_configurations_are_named(void **) {
  struct Case {
    void (*edit)(gw::SerialBackendConfig &);
    const char *reason;
  };
  const Case cases[] = {
      {[](gw::SerialBackendConfig &c) { c.path = "ttyUSB0"; }, "is not absolute"},
      {[](gw::SerialBackendConfig &c) { c.packing.delimiter = "abc"; }, "delimiter has 3 bytes"},
      {[](gw::SerialBackendConfig &c) { c.on_missing = gw::DeviceMissing::wait, c.device_wait_ms = 0; },
       "device_wait is 0"},
      {[](gw::SerialBackendConfig &c) { c.settings.baud = 10; }, "baud"},
  };
  std::unique_ptr<gw::EventLoop> loop;
  assert_int_equal(gw::EventLoop::create(loop), 0);
  for (const Case &test : cases) {
    gw::SerialBackendConfig config = config_for("/dev/ttyUSB0");
    test.edit(config);
    std::string why;
    assert_int_equal(config.validate(why), -EINVAL);
    if (!contains(why, test.reason)) fail_msg("\"%s\" does not say \"%s\"", why.c_str(), test.reason);
    std::unique_ptr<gw::SerialBackend> backend;
    assert_int_equal(gw::SerialBackend::create(backend, *loop, gw::Logger{}, config, "serial:x", why), -EINVAL);
    assert_null(backend.get());
  }
  std::string why;
  assert_int_equal(config_for("/dev/ttyUSB0").validate(why), 0);
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(invalid_configurations_are_named),
      cmocka_unit_test(raw_round_trip_both_ways),
      cmocka_unit_test(line_round_trip_both_ways),
      cmocka_unit_test(u16be_payload_reaches_the_device_without_its_prefix),
      cmocka_unit_test(long_packets_split_at_max_frame),
      cmocka_unit_test(exclusive_refuses_the_second_client),
      cmocka_unit_test(kick_old_hands_the_port_to_the_newcomer),
      cmocka_unit_test(shared_fans_out_and_keeps_frames_whole),
      cmocka_unit_test(readonly_clients_see_output_but_cannot_write),
      cmocka_unit_test(shared_drops_a_stalled_client),
      cmocka_unit_test(exclusive_writer_is_backpressured_not_dropped),
      cmocka_unit_test(client_is_backpressured_by_a_full_device),
      cmocka_unit_test(line_settings_read_back_on_the_device),
      cmocka_unit_test(always_keeps_the_device_open_and_counts_unheard_output),
      cmocka_unit_test(idle_gap_packs_device_bytes_into_one_message),
      cmocka_unit_test(char_gap_follows_the_baud_rate),
      cmocka_unit_test(missing_device_refused_with_its_reason),
      cmocka_unit_test(unplug_closes_the_clients_with_a_reason),
      cmocka_unit_test(locked_port_refused_naming_the_holder),
      cmocka_unit_test(waiting_client_served_once_the_lock_is_released),
      cmocka_unit_test(waiting_client_served_when_the_device_appears),
      cmocka_unit_test(waiting_client_told_when_the_wait_ends),
      cmocka_unit_test(held_client_resumes_on_a_new_device_under_the_same_name),
      cmocka_unit_test(always_waits_for_a_device_missing_at_start),
      cmocka_unit_test(rs485_on_a_pty_refused_cleanly),
      cmocka_unit_test(default_packing_round_trip_latency),
      cmocka_unit_test(last_bytes_reach_the_device_after_the_client_left),
      cmocka_unit_test(stuck_device_closed_after_a_bounded_drain),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
