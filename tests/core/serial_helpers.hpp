// SPDX-License-Identifier: MIT
// Shared by the serial suites: pseudo-terminal pairs standing in for UARTs,
// scratch directories for lock files and symlinks, and a log sink. Header-only; include
// after <cmocka.h>. Includes no <termios.h> (test_serial_port.cpp uses
// <asm/termbits.h>, which conflicts with it).
#pragma once
#include <fcntl.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "gw/fd.hpp"
#include "gw/log.hpp"

namespace gwc {

using Clock = std::chrono::steady_clock;

inline long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

/// Calls `step` (one turn of the test's event loop) until `done` holds or
/// `timeout_ms` has passed; false on the deadline.
template <typename Done, typename Step>
bool run_until(Done &&done, Step &&step, int timeout_ms) {
  const auto start = Clock::now();
  while (!done()) {
    if (ms_since(start) > timeout_ms) return false;
    step();
  }
  return true;
}

/// A pseudo-terminal pair: the master is the far end of the "cable", owned
/// by the test; the slave (by its path) is the serial device. Closing the
/// master is an unplug.
struct Pty {
  gw::Fd master;
  std::string slave;
};

/// `extra_flags`: O_NONBLOCK for a master that the test reads and writes
/// while it drives a loop.
inline Pty open_pty(int extra_flags = 0) {
  Pty pty;
  pty.master.reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | extra_flags));
  assert_true(pty.master.get() >= 0);
  assert_int_equal(grantpt(pty.master.get()), 0);
  assert_int_equal(unlockpt(pty.master.get()), 0);
  char name[128];
  assert_int_equal(ptsname_r(pty.master.get(), name, sizeof name), 0);
  pty.slave = name;
  return pty;
}

/// A scratch directory (lock files, symlinks), removed with its contents.
struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/gw-serial-XXXXXX";
    assert_non_null(mkdtemp(pattern));
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string operator/(const std::string &name) const { return path + "/" + name; }
};

/// The log lines of the code under test, kept for the assertions: install
/// `sink` with this as its user data.
struct Logs {
  std::vector<std::string> lines;
  static void sink(gw::LogLevel, const char *line, void *user_data) {
    static_cast<Logs *>(user_data)->lines.emplace_back(line);
  }
  /// How many lines contain `text`.
  size_t count(const std::string &text) const {
    size_t n = 0;
    for (const auto &line : lines) n += line.find(text) != std::string::npos;
    return n;
  }
};

}  // namespace gwc
