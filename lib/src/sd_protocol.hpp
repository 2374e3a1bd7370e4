// SPDX-License-Identifier: MIT
// systemd's documented, stable protocols (sd_listen_fds(3), sd_notify(3),
// sd_watchdog_enabled(3)) spoken directly, without libsystemd and the
// libraries it pulls in (libgcrypt, liblzma, libzstd, liblz4, libcap).
//
// The parsers take the variables' values as arguments and make no system
// call, so that unit tests and the fuzzer can drive them with any text;
// send_notify() and cloexec_listen_fds() are the only system calls.
// lib/src/systemd.cpp reads and unsets the environment and keeps the pool.
// Private to gw_systemd and its tests.
//
// Every function here is reentrant and thread-safe: no state, no allocation
// except the returned names.
#pragma once
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gw::sd::detail {

/// The first passed fd (SD_LISTEN_FDS_START of sd-daemon.h): systemd passes
/// LISTEN_FDS sockets as fds 3, 4, ... in this order.
constexpr int listen_fds_start = 3;

/// The name of a passed fd that the unit gave no FileDescriptorName= (the
/// special name of sd_listen_fds(3)).
constexpr const char *unknown_name = "unknown";

/// Parses `text` as a decimal number of at most `max`: digits only, at least
/// one, no sign, no white space, nothing after. Returns false otherwise
/// (also on null, and when the value would pass `max` or overflow).
bool parse_decimal(const char *text, uint64_t max, uint64_t &value) noexcept;

/// What LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES say.
struct ListenEnv {
  /// 0, or -EINVAL when the variables are malformed or disagree.
  int error = 0;
  /// How many fds (from listen_fds_start on) systemd passed to this process.
  /// Also set when only the names are wrong (error -EINVAL): the fds are then
  /// still this process's, and the caller must still keep them from leaking
  /// into children (FD_CLOEXEC).
  int count = 0;
  /// When error is 0: LISTEN_FDNAMES split at ':', exactly `count` names; or
  /// empty when LISTEN_FDNAMES is unset, and every fd is then "unknown"
  /// (unknown_name). Nothing is allocated per fd here: a huge LISTEN_FDS costs
  /// no memory before the caller finds fd 3 + n closed.
  std::vector<std::string> names;
};

/// Parses the three variables (null when unset) for the process `self`.
/// LISTEN_PID or LISTEN_FDS unset, or LISTEN_PID naming another process: no
/// fds, no error (the variables were meant for a parent or were inherited).
/// LISTEN_FDS=0: no fds, and LISTEN_FDNAMES is not looked at.
/// LISTEN_PID or LISTEN_FDS not a strict decimal (parse_decimal), LISTEN_PID
/// 0, or more fds than an int can number from 3: -EINVAL and no fds.
///
/// A LISTEN_FDNAMES with more or fewer names than LISTEN_FDS: -EINVAL, as
/// libsystemd's sd_listen_fds_with_names() returns, with `count` still set
/// and no names. Guessing which name belongs to which fd could serve a route
/// on another route's socket; refusing them all is the safe answer.
/// Throws std::bad_alloc only.
ListenEnv parse_listen_env(const char *listen_pid, const char *listen_fds, const char *listen_fdnames, pid_t self);

/// Parses WATCHDOG_USEC and WATCHDOG_PID (null when unset) for the process
/// `self`, as sd_watchdog_enabled(3) does: WATCHDOG_USEC unset -> 0;
/// WATCHDOG_USEC not a strict decimal, 0, or UINT64_MAX (systemd's
/// "infinity") -> -EINVAL; WATCHDOG_PID set but not a strict decimal or 0 ->
/// -EINVAL; WATCHDOG_PID naming another process -> 0; else 1 and `usec` set.
int parse_watchdog_env(const char *watchdog_usec, const char *watchdog_pid, pid_t self, uint64_t &usec) noexcept;

/// The AF_UNIX address that a NOTIFY_SOCKET value names.
struct NotifyAddress {
  sockaddr_un addr{};
  socklen_t length = 0;
};

/// Turns a NOTIFY_SOCKET value into an address: "/path" is a file system
/// socket, "@name" one in the abstract namespace (the '@' becomes the leading
/// NUL). Returns 0, -EINVAL when the path is too long for sun_path or the
/// abstract name is empty, or -EAFNOSUPPORT for every other form (systemd
/// also knows "vsock:CID:PORT", which a board's gateway does not need).
int notify_address(const char *value, NotifyAddress &out) noexcept;

/// Sends `state` to the NOTIFY_SOCKET value `notify_socket` (null: not
/// started by systemd) as one datagram from a socket of its own, closed
/// before returning. Returns 1 when sent, 0 when `notify_socket` is null,
/// -EINVAL for a null `state`, a notify_address() error, -EPROTO when the
/// kernel took only part of the message, or the -errno of socket/sendto.
/// Never raises SIGPIPE (MSG_NOSIGNAL).
int send_notify(const char *notify_socket, const char *state) noexcept;

/// Sets FD_CLOEXEC on fds listen_fds_start .. listen_fds_start + count - 1,
/// so that no child inherits a passed socket. Returns 0, or the -errno of the
/// first fd that fails (-EBADF: LISTEN_FDS counts more fds than are open),
/// leaving the ones after it as they were.
int cloexec_listen_fds(int count) noexcept;

}  // namespace gw::sd::detail
