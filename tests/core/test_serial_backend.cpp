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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
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

#include "gw/serial_backend.hpp"
#include "gw/server.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

void set_nonblocking(int fd) { assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }

// A pseudo-terminal pair: the master is the far end, the slave path the
// serial device. Closing the master is an unplug.
struct Pty {
  gw::Fd master;
  std::string slave;
};

Pty open_pty() {
  Pty pty;
  pty.master.reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  assert_true(pty.master.get() >= 0);
  assert_int_equal(grantpt(pty.master.get()), 0);
  assert_int_equal(unlockpt(pty.master.get()), 0);
  char name[128];
  assert_int_equal(ptsname_r(pty.master.get(), name, sizeof name), 0);
  pty.slave = name;
  return pty;
}

// A scratch directory (lock files, symlinks), removed with its contents.
struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/gw-serial-backend-XXXXXX";
    assert_non_null(mkdtemp(pattern));
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string &name) const { return path + "/" + name; }
};

// The backend's log lines, kept for the assertions.
struct Logs {
  std::vector<std::string> lines;
  static void sink(gw::LogLevel, const char *line, void *user_data) {
    static_cast<Logs *>(user_data)->lines.emplace_back(line);
  }
  size_t count(const std::string &text) const {
    size_t n = 0;
    for (const auto &line : lines) n += line.find(text) != std::string::npos;
    return n;
  }
};

bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

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
  ~Fixture() { backend.reset(); }

  const gw::SerialCounters &counters() const { return backend->counters(); }

  // Runs the loop until `done` or the deadline; false on the deadline.
  bool until(const std::function<bool()> &done, int timeout_ms = 5000) {
    const auto start = Clock::now();
    while (!done()) {
      if (ms_since(start) > timeout_ms) return false;
      server->loop().dispatch(1);
    }
    return true;
  }

  // A client socket, connected and accepted (the backend saw on_open).
  int connect() {
    const size_t before = listener->client_count();
    int fd = gwc::connect_to(listener->port());
    set_nonblocking(fd);
    assert_true(until([&] { return listener->client_count() > before || accepted_and_closed(fd); }));
    return fd;
  }
  // A client refused at once may be gone from the listener before we look.
  bool accepted_and_closed(int fd) {
    char byte;
    return recv(fd, &byte, 1, MSG_PEEK) >= 0;
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
      if (ms_since(start) > timeout_ms) fail_msg("timed out after %zu of %zu bytes: \"%s\"", data.size(), length, data.c_str());
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
  int client = f.connect();
  assert_true(f.until([&] { return f.backend->device_open(); }));
  write_all(client, "hello device");
  assert_string_equal(f.read_exactly(pty.master.get(), 12).c_str(), "hello device");
  write_all(pty.master.get(), "hello client");
  assert_string_equal(f.read_exactly(client, 12).c_str(), "hello client");
  assert_int_equal(f.counters().bytes_to_device.load(), 12);
  assert_int_equal(f.counters().bytes_from_device.load(), 12);
  assert_int_equal(f.counters().opens.load(), 1);
  assert_int_equal(f.logs.count("device open ("), 1);
  // The last client gone, the device is closed (the board saves power).
  close(client);
  assert_true(f.until([&] { return !f.backend->device_open(); }));
  assert_int_equal(f.logs.count("device closed"), 1);
}

void line_round_trip_both_ways(void **) {
  Pty pty = open_pty();
  auto config = config_for(pty.slave);
  config.packing.delimiter = "\n";
  config.packing.keep_delimiter = false;  // the line framing adds its own '\n'
  Fixture f(config, framed(gw::Framing::line));
  int client = f.connect();
  assert_true(f.until([&] { return f.backend->device_open(); }));
  write_all(client, "first\nsecond\n");
  assert_string_equal(f.read_exactly(pty.master.get(), 13).c_str(), "first\nsecond\n");
  write_all(pty.master.get(), "ab");  // held: no delimiter yet
  assert_true(f.stays_quiet(client, 50));
  write_all(pty.master.get(), "c\nxyz\n");
  assert_string_equal(f.read_exactly(client, 8).c_str(), "abc\nxyz\n");
  close(client);
}

void u16be_payload_reaches_the_device_without_its_prefix(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave), framed(gw::Framing::u16be));
  int client = f.connect();
  assert_true(f.until([&] { return f.backend->device_open(); }));
  write_all(client, std::string("\0\3xyz\0\2ok", 9));
  assert_string_equal(f.read_exactly(pty.master.get(), 5).c_str(), "xyzok");
  write_all(pty.master.get(), "Q");
  assert_true(f.read_exactly(client, 3) == std::string("\0\1Q", 3));
  close(client);
}

// ---------------------------------------------------------------------------
// Client policies

void exclusive_refuses_the_second_client(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int first = f.connect();
  assert_true(f.until([&] { return f.backend->device_open(); }));
  int second = f.connect();
  const std::string said = f.read_to_eof(second);
  assert_string_equal(said.c_str(), ("serial:" + pty.slave + " is in use by another client\n").c_str());
  assert_int_equal(f.counters().refused_busy.load(), 1);
  // The first client was not disturbed.
  write_all(pty.master.get(), "still yours");
  assert_string_equal(f.read_exactly(first, 11).c_str(), "still yours");
  close(first);
  close(second);
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
  close(client);
  close(again);
}

void unplug_closes_the_clients_with_a_reason(void **) {
  Pty pty = open_pty();
  Fixture f(config_for(pty.slave));
  int client = f.connect();
  assert_true(f.until([&] { return f.backend->device_open(); }));
  pty.master.reset();  // the unplug
  const std::string said = f.read_to_eof(client);
  assert_string_equal(said.c_str(), ("serial:" + pty.slave + ": the device was lost (hang-up)\n").c_str());
  assert_false(f.backend->device_open());
  assert_int_equal(f.counters().losses.load(), 1);
  assert_int_equal(f.logs.count("device lost (hang-up)"), 1);
  close(client);
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(raw_round_trip_both_ways),
      cmocka_unit_test(line_round_trip_both_ways),
      cmocka_unit_test(u16be_payload_reaches_the_device_without_its_prefix),
      cmocka_unit_test(exclusive_refuses_the_second_client),
      cmocka_unit_test(missing_device_refused_with_its_reason),
      cmocka_unit_test(unplug_closes_the_clients_with_a_reason),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
