// SPDX-License-Identifier: MIT
// The systemd glue: the one module that talks to systemd, used by gatewayd and
// by the C API. It speaks the protocols of sd_listen_fds(3), sd_notify(3) and
// sd_watchdog_enabled(3) itself (lib/src/sd_protocol.hpp), without linking
// libsystemd; without GW_WITH_SYSTEMD every function returns -ENOSYS (a board
// without systemd has nothing to talk to).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gw::sd {

/// True when built with systemd support (GW_WITH_SYSTEMD).
bool available() noexcept;

/// A listening socket that systemd passed (LISTEN_FDS), with its
/// FileDescriptorName= ("unknown" when the unit named none).
struct ListenFd {
  int fd = -1;
  std::string name;
};

/// Collects the sockets passed by systemd, if this process got any, and clears
/// LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES so that children never inherit them.
/// Every passed fd gets FD_CLOEXEC. Collected fds stay in a process-wide pool
/// until taken. Thread-safe (but see getenv: no other thread may set or unset
/// variables meanwhile). Returns how many fds the pool holds now, or a
/// negative errno: -EINVAL for malformed variables or a LISTEN_FDNAMES whose
/// count differs from LISTEN_FDS (then no fd is pooled: names that do not
/// match cannot say which socket is which), -EBADF when a counted fd is not
/// open.
int collect_listen_fds() noexcept;

/// Takes the pooled fd named `name`: 0 and *fd set, or -ENOENT. The caller
/// owns the fd from then on. Thread-safe.
int take_listen_fd(const std::string &name, int &fd) noexcept;

/// Takes every pooled fd. The caller owns them. Thread-safe.
std::vector<ListenFd> take_all_listen_fds();

/// sd_notify(0, state): returns > 0 when sent, 0 when there is no
/// NOTIFY_SOCKET (not started by systemd), or a negative errno (-EAFNOSUPPORT
/// for a NOTIFY_SOCKET that is neither "/path" nor "@abstract"). Sends one
/// datagram from a socket of its own: thread-safe, no state.
int notify(const char *state) noexcept;

/// sd_watchdog_enabled(0, &usec): > 0 and *usec set when systemd expects
/// WATCHDOG=1 at least every *usec microseconds, 0 when it does not (also
/// when WATCHDOG_PID names another process), or -EINVAL for a malformed
/// WATCHDOG_USEC/WATCHDOG_PID. Leaves the variables set. Thread-safe.
int watchdog_usec(uint64_t &usec) noexcept;

}  // namespace gw::sd
