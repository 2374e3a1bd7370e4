// SPDX-License-Identifier: MIT
// systemd's protocols as gw::sd speaks them without libsystemd
// (lib/src/sd_protocol.hpp, lib/src/systemd.cpp): notifications received on
// a datagram socket of the test's own (file system and abstract), the
// addresses refused, LISTEN_* with another process's pid, malformed counts
// and names, FD_CLOEXEC on every passed fd, the variables always unset, and
// WATCHDOG_*. With GW_WITH_SYSTEMD=OFF (GWT_WITH_SYSTEMD 0) the public
// functions must return -ENOSYS and leave the environment alone; the
// protocol functions underneath are tested the same in both builds.
//
// Single-threaded: the tests set and unset environment variables and put
// sockets on fds 3 and 4, which systemd would have passed.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "gw/fd.hpp"
#include "gw/systemd.hpp"
#include "sd_protocol.hpp"

namespace {

namespace detail = gw::sd::detail;

// ---- helpers ---------------------------------------------------------------

void clear_systemd_env() {
  for (const char *name :
       {"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"}) {
    unsetenv(name);
  }
}

std::string pid_text(pid_t pid) { return std::to_string(pid); }

// gw::sd::notify() as the build has it: with systemd support it is the call
// under test; without, it must refuse with -ENOSYS, and the same protocol is
// then exercised through detail::send_notify() on the same NOTIFY_SOCKET.
int notify_via_env(const char *state) {
#if GWT_WITH_SYSTEMD
  return gw::sd::notify(state);
#else
  assert_int_equal(gw::sd::notify(state), -ENOSYS);
  return detail::send_notify(std::getenv("NOTIFY_SOCKET"), state);
#endif
}

// A datagram socket bound where NOTIFY_SOCKET will point. The test owns it;
// the destructor removes the file of a file system socket.
struct Receiver {
  gw::Fd fd;
  std::string path;  // file system only
};

Receiver bind_receiver(const sockaddr_un &addr, socklen_t length) {
  Receiver receiver;
  receiver.fd.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  assert_true(receiver.fd.get() >= 0);
  assert_int_equal(bind(receiver.fd.get(), reinterpret_cast<const sockaddr *>(&addr), length), 0);
  return receiver;
}

// The one datagram waiting on `fd`, without blocking: an AF_UNIX datagram is
// in the receiver's queue by the time sendto() returns.
std::string receive_now(int fd) {
  char buffer[4096];
  ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
  assert_true(n >= 0);
  return std::string(buffer, static_cast<size_t>(n));
}

void assert_nothing_waiting(int fd) {
  char byte;
  assert_int_equal(recv(fd, &byte, 1, MSG_DONTWAIT), -1);
  assert_int_equal(errno, EAGAIN);
}

// Sockets standing where systemd passes them (fds 3 and 4, no FD_CLOEXEC),
// with whatever the test process had there put back afterwards.
struct PassedFds {
  static constexpr int count = 2;
  int saved[count] = {-1, -1};

  // Saved first, then the pair moved above 10: socketpair() itself may get
  // fds 3 and 4, which dup2() would then leave alone.
  PassedFds() {
    for (int i = 0; i < count; ++i) saved[i] = fcntl(detail::listen_fds_start + i, F_DUPFD_CLOEXEC, 10);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    int high[2];
    for (int i = 0; i < count; ++i) {
      high[i] = fcntl(pair[i], F_DUPFD_CLOEXEC, 10);
      assert_true(high[i] >= 10);
      close(pair[i]);
    }
    for (int i = 0; i < count; ++i) {
      const int target = detail::listen_fds_start + i;
      assert_int_equal(dup2(high[i], target), target);  // dup2: no FD_CLOEXEC on the copy
      close(high[i]);
      assert_int_equal(fcntl(target, F_GETFD), 0);
    }
  }
  ~PassedFds() {
    for (int i = 0; i < count; ++i) {
      const int target = detail::listen_fds_start + i;
      if (saved[i] >= 0) {
        dup2(saved[i], target);
        close(saved[i]);
      } else {
        close(target);
      }
    }
  }
  static bool cloexec(int i) { return (fcntl(detail::listen_fds_start + i, F_GETFD) & FD_CLOEXEC) != 0; }
};

void set_listen_env(const std::string &pid, const char *fds, const char *names) {
  setenv("LISTEN_PID", pid.c_str(), 1);
  setenv("LISTEN_FDS", fds, 1);
  if (names) {
    setenv("LISTEN_FDNAMES", names, 1);
  } else {
    unsetenv("LISTEN_FDNAMES");
  }
}

int setup(void **) {
  clear_systemd_env();
  gw::sd::take_all_listen_fds();
  return 0;
}

// ---- notify ------------------------------------------------------------------

void notify_reaches_a_file_system_socket(void **) {
  char dir[] = "/tmp/gw-sd-XXXXXX";
  assert_non_null(mkdtemp(dir));
  const std::string path = std::string(dir) + "/notify";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  Receiver receiver = bind_receiver(addr, sizeof addr);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);

  assert_true(notify_via_env("READY=1\nSTATUS=serving 3 routes") > 0);
  assert_string_equal(receive_now(receiver.fd.get()).c_str(), "READY=1\nSTATUS=serving 3 routes");
  assert_nothing_waiting(receiver.fd.get());

  unlink(path.c_str());
  rmdir(dir);
}

void notify_reaches_an_abstract_socket(void **) {
  const std::string name = "gw-sd-test-" + pid_text(getpid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // leading NUL: abstract
  Receiver receiver = bind_receiver(addr, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size()));
  setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);

  assert_true(notify_via_env("WATCHDOG=1") > 0);
  assert_string_equal(receive_now(receiver.fd.get()).c_str(), "WATCHDOG=1");
  assert_nothing_waiting(receiver.fd.get());
}

void notify_without_notify_socket_sends_nothing(void **) { assert_int_equal(notify_via_env("READY=1"), 0); }

void notify_refuses_a_path_too_long_for_sun_path(void **) {
  const size_t room = sizeof(sockaddr_un{}.sun_path);
  detail::NotifyAddress address;
  // A file system path needs its NUL inside sun_path; an abstract name not.
  assert_int_equal(detail::notify_address(("/" + std::string(room - 2, 'a')).c_str(), address), 0);
  assert_int_equal(detail::notify_address(("/" + std::string(room - 1, 'a')).c_str(), address), -EINVAL);
  assert_int_equal(detail::notify_address(("@" + std::string(room - 1, 'a')).c_str(), address), 0);
  assert_int_equal(detail::notify_address(("@" + std::string(room, 'a')).c_str(), address), -EINVAL);
  assert_int_equal(detail::notify_address("@", address), -EINVAL);

  setenv("NOTIFY_SOCKET", ("/tmp/" + std::string(200, 'a')).c_str(), 1);
  assert_int_equal(notify_via_env("READY=1"), -EINVAL);
  setenv("NOTIFY_SOCKET", ("@" + std::string(200, 'a')).c_str(), 1);
  assert_int_equal(notify_via_env("READY=1"), -EINVAL);
}

void notify_refuses_other_address_families(void **) {
  for (const char *value : {"vsock:2:1234", "vsock-stream:2:1234", "relative/notify", ""}) {
    setenv("NOTIFY_SOCKET", value, 1);
    assert_int_equal(notify_via_env("READY=1"), -EAFNOSUPPORT);
  }
}

// ---- LISTEN_* ------------------------------------------------------------------

void decimal_parsing_is_strict(void **) {
  uint64_t value = 7;
  assert_true(detail::parse_decimal("0", 10, value) && value == 0);
  assert_true(detail::parse_decimal("2147483647", INT_MAX, value) && value == INT_MAX);
  assert_false(detail::parse_decimal("2147483648", INT_MAX, value));
  assert_true(detail::parse_decimal("18446744073709551615", UINT64_MAX, value) && value == UINT64_MAX);
  assert_false(detail::parse_decimal("18446744073709551616", UINT64_MAX, value));
  assert_false(detail::parse_decimal("99999999999999999999", UINT64_MAX, value));
  assert_false(detail::parse_decimal("5", 3, value));
  value = 7;
  for (const char *bad : {"", "3x", "-1", "+3", " 3", "3 ", "0x3", "3\n"}) {
    assert_false(detail::parse_decimal(bad, UINT64_MAX, value));
  }
  assert_false(detail::parse_decimal(nullptr, UINT64_MAX, value));
  assert_int_equal(value, 7);  // untouched by a failure
}

#if GWT_WITH_SYSTEMD

void assert_listen_env_unset() {
  assert_null(std::getenv("LISTEN_PID"));
  assert_null(std::getenv("LISTEN_FDS"));
  assert_null(std::getenv("LISTEN_FDNAMES"));
}

void listen_env_of_another_process_gives_no_fds_and_is_unset(void **) {
  PassedFds passed;
  set_listen_env(pid_text(getpid() + 1), "2", "a:b");
  assert_int_equal(gw::sd::collect_listen_fds(), 0);
  assert_listen_env_unset();
  assert_true(gw::sd::take_all_listen_fds().empty());
  assert_false(PassedFds::cloexec(0));  // not ours: left as they were
}

void garbage_counts_are_refused_and_unset(void **) {
  for (const char *count : {"3x", "-1", "99999999999999999999", "", "+2", " 2", "2147483647"}) {
    // 2147483647: the last fd would be past INT_MAX.
    set_listen_env(pid_text(getpid()), count, nullptr);
    assert_int_equal(gw::sd::collect_listen_fds(), -EINVAL);
    assert_listen_env_unset();
  }
  for (const char *pid : {"0", "12a", "-5"}) {
    set_listen_env(pid, "1", nullptr);
    assert_int_equal(gw::sd::collect_listen_fds(), -EINVAL);
    assert_listen_env_unset();
  }
  assert_true(gw::sd::take_all_listen_fds().empty());
}

void name_count_mismatch_pools_nothing_but_sets_cloexec(void **) {
  for (const char *names : {"only-one", "a:b:c", ""}) {
    PassedFds passed;
    set_listen_env(pid_text(getpid()), "2", names);
    assert_int_equal(gw::sd::collect_listen_fds(), -EINVAL);
    assert_listen_env_unset();
    assert_true(gw::sd::take_all_listen_fds().empty());
    assert_true(PassedFds::cloexec(0));
    assert_true(PassedFds::cloexec(1));
  }
}

void passed_fds_are_pooled_by_name_with_cloexec(void **) {
  PassedFds passed;
  set_listen_env(pid_text(getpid()), "2", "modbus:");
  assert_int_equal(gw::sd::collect_listen_fds(), 2);
  assert_listen_env_unset();
  assert_true(PassedFds::cloexec(0));
  assert_true(PassedFds::cloexec(1));
  // A second call finds the variables gone and reports what the pool holds.
  assert_int_equal(gw::sd::collect_listen_fds(), 2);
  int fd = -1;
  assert_int_equal(gw::sd::take_listen_fd("modbus", fd), 0);
  assert_int_equal(fd, 3);
  assert_int_equal(gw::sd::take_listen_fd("", fd), 0);  // an empty FileDescriptorName= is still a place
  assert_int_equal(fd, 4);
  assert_int_equal(gw::sd::take_listen_fd("modbus", fd), -ENOENT);
}

void unnamed_fds_are_unknown(void **) {
  PassedFds passed;
  set_listen_env(pid_text(getpid()), "2", nullptr);
  assert_int_equal(gw::sd::collect_listen_fds(), 2);
  const std::vector<gw::sd::ListenFd> all = gw::sd::take_all_listen_fds();
  assert_int_equal(all.size(), 2);
  assert_int_equal(all[0].fd, 3);
  assert_string_equal(all[0].name.c_str(), "unknown");
  assert_int_equal(all[1].fd, 4);
  assert_string_equal(all[1].name.c_str(), "unknown");
}

void a_count_past_the_open_fds_is_ebadf(void **) {
  PassedFds passed;                         // 3 and 4 open
  assert_int_equal(fcntl(5, F_GETFD), -1);  // the premise: the test process has nothing on fd 5
  set_listen_env(pid_text(getpid()), "1000", nullptr);
  assert_int_equal(gw::sd::collect_listen_fds(), -EBADF);
  assert_listen_env_unset();
  assert_true(gw::sd::take_all_listen_fds().empty());
}

// ---- WATCHDOG_* ------------------------------------------------------------------

void watchdog_for_this_process_gives_the_interval(void **) {
  setenv("WATCHDOG_USEC", "30000000", 1);
  setenv("WATCHDOG_PID", pid_text(getpid()).c_str(), 1);
  uint64_t usec = 0;
  assert_int_equal(gw::sd::watchdog_usec(usec), 1);
  assert_int_equal(usec, 30000000);
  unsetenv("WATCHDOG_PID");  // no pid: meant for whoever reads it
  usec = 0;
  assert_true(gw::sd::watchdog_usec(usec) > 0);
  assert_int_equal(usec, 30000000);
  assert_non_null(std::getenv("WATCHDOG_USEC"));  // not unset
}

void watchdog_of_another_process_is_off(void **) {
  setenv("WATCHDOG_USEC", "30000000", 1);
  setenv("WATCHDOG_PID", pid_text(getpid() + 1).c_str(), 1);
  uint64_t usec = 5;
  assert_int_equal(gw::sd::watchdog_usec(usec), 0);
  assert_int_equal(usec, 5);
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  assert_int_equal(gw::sd::watchdog_usec(usec), 0);
}

void watchdog_garbage_is_einval(void **) {
  uint64_t usec = 5;
  for (const char *value : {"0", "", "30s", "-1", "18446744073709551615", "99999999999999999999"}) {
    setenv("WATCHDOG_USEC", value, 1);
    assert_int_equal(gw::sd::watchdog_usec(usec), -EINVAL);
  }
  setenv("WATCHDOG_USEC", "1000", 1);
  for (const char *pid : {"0", "1x", "-1"}) {
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(gw::sd::watchdog_usec(usec), -EINVAL);
  }
  assert_int_equal(usec, 5);
}

#else

void without_systemd_everything_is_enosys(void **) {
  PassedFds passed;
  set_listen_env(pid_text(getpid()), "2", "a:b");
  assert_int_equal(gw::sd::collect_listen_fds(), -ENOSYS);
  assert_non_null(std::getenv("LISTEN_FDS"));  // untouched: nothing here speaks for systemd
  assert_false(PassedFds::cloexec(0));
  setenv("WATCHDOG_USEC", "1000", 1);
  uint64_t usec = 0;
  assert_int_equal(gw::sd::watchdog_usec(usec), -ENOSYS);
  assert_false(gw::sd::available());
}

#endif

// The parsers themselves, in both builds (the public functions above are
// thin: getenv, these, fcntl, unsetenv).
void listen_and_watchdog_parsers(void **) {
  const pid_t self = 1234;
  detail::ListenEnv env = detail::parse_listen_env("1234", "2", "a:b", self);
  assert_int_equal(env.error, 0);
  assert_int_equal(env.count, 2);
  assert_int_equal(env.names.size(), 2);
  assert_string_equal(env.names[1].c_str(), "b");
  env = detail::parse_listen_env("1235", "2", "a:b", self);
  assert_int_equal(env.error, 0);
  assert_int_equal(env.count, 0);
  env = detail::parse_listen_env("1234", "2", "a", self);
  assert_int_equal(env.error, -EINVAL);
  assert_int_equal(env.count, 2);  // still ours: the caller sets FD_CLOEXEC
  assert_true(env.names.empty());
  env = detail::parse_listen_env("1234", "0", "x", self);
  assert_int_equal(env.error, 0);
  assert_int_equal(env.count, 0);
  env = detail::parse_listen_env(nullptr, "2", nullptr, self);
  assert_int_equal(env.error, 0);
  assert_int_equal(env.count, 0);

  uint64_t usec = 0;
  assert_int_equal(detail::parse_watchdog_env("10", "1234", self, usec), 1);
  assert_int_equal(usec, 10);
  assert_int_equal(detail::parse_watchdog_env("10", "1235", self, usec), 0);
  assert_int_equal(detail::parse_watchdog_env("10x", "1234", self, usec), -EINVAL);
  assert_int_equal(detail::parse_watchdog_env(nullptr, "1234", self, usec), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(notify_reaches_a_file_system_socket, setup),
    cmocka_unit_test_setup(notify_reaches_an_abstract_socket, setup),
    cmocka_unit_test_setup(notify_without_notify_socket_sends_nothing, setup),
    cmocka_unit_test_setup(notify_refuses_a_path_too_long_for_sun_path, setup),
    cmocka_unit_test_setup(notify_refuses_other_address_families, setup),
    cmocka_unit_test_setup(decimal_parsing_is_strict, setup),
#if GWT_WITH_SYSTEMD
    cmocka_unit_test_setup(listen_env_of_another_process_gives_no_fds_and_is_unset, setup),
    cmocka_unit_test_setup(garbage_counts_are_refused_and_unset, setup),
    cmocka_unit_test_setup(name_count_mismatch_pools_nothing_but_sets_cloexec, setup),
    cmocka_unit_test_setup(passed_fds_are_pooled_by_name_with_cloexec, setup),
    cmocka_unit_test_setup(unnamed_fds_are_unknown, setup),
    cmocka_unit_test_setup(a_count_past_the_open_fds_is_ebadf, setup),
    cmocka_unit_test_setup(watchdog_for_this_process_gives_the_interval, setup),
    cmocka_unit_test_setup(watchdog_of_another_process_is_off, setup),
    cmocka_unit_test_setup(watchdog_garbage_is_einval, setup),
#else
    cmocka_unit_test_setup(without_systemd_everything_is_enosys, setup),
#endif
    cmocka_unit_test_setup(listen_and_watchdog_parsers, setup),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
