// SPDX-License-Identifier: MIT
// The systemd glue: the one module that talks to systemd, used by gatewayd and
// by the C API. Built on libsystemd's sd-daemon; without GW_WITH_SYSTEMD every
// function returns -ENOSYS (a board without systemd has nothing to talk to).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gw::sd {

/// True when built with libsystemd.
bool available() noexcept;

/// A listening socket that systemd passed (LISTEN_FDS), with its
/// FileDescriptorName= ("unknown" when the unit named none).
struct ListenFd {
  int fd = -1;
  std::string name;
};

/// Collects the sockets passed by systemd, if this process got any, and clears
/// LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES so that children never inherit them.
/// Collected fds stay in a process-wide pool until taken. Thread-safe.
/// Returns how many fds the pool holds now, or a negative errno.
int collect_listen_fds() noexcept;

/// Takes the pooled fd named `name`: 0 and *fd set, or -ENOENT. The caller
/// owns the fd from then on. Thread-safe.
int take_listen_fd(const std::string &name, int &fd) noexcept;

/// Takes every pooled fd. The caller owns them. Thread-safe.
std::vector<ListenFd> take_all_listen_fds();

/// sd_notify(): returns > 0 when sent, 0 when there is no NOTIFY_SOCKET (not
/// started by systemd), or a negative errno. Thread-safe.
int notify(const char *state) noexcept;

/// sd_watchdog_enabled(): > 0 and *usec set when systemd expects WATCHDOG=1
/// at least every *usec microseconds, 0 when it does not, or a negative errno.
int watchdog_usec(uint64_t &usec) noexcept;

}  // namespace gw::sd
