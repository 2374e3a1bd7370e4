// SPDX-License-Identifier: MIT
// systemd's environment and notification protocols, written from their man
// pages (see sd_protocol.hpp). No libsystemd code is used.
#include "sd_protocol.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>

#include "gw/fd.hpp"

namespace gw::sd::detail {
namespace {

// The largest count whose last fd, 3 + count - 1, is still an int.
constexpr uint64_t max_listen_fds = static_cast<uint64_t>(INT_MAX) - listen_fds_start + 1;

// A pid names this process only when it parses as a positive decimal; 0 is
// no process (pid_t is at most INT_MAX on Linux).
bool parse_pid(const char *text, pid_t &pid) {
  uint64_t value = 0;
  if (!parse_decimal(text, INT_MAX, value) || value == 0) return false;
  pid = static_cast<pid_t>(value);
  return true;
}

// LISTEN_FDNAMES split at every ':', empty names kept: "a::b" is three names
// (systemd writes one per fd, so an empty one is still a place).
std::vector<std::string> split_names(const char *text) {
  std::vector<std::string> names;
  const char *start = text;
  for (const char *p = text;; ++p) {
    if (*p == ':' || *p == '\0') {
      names.emplace_back(start, p);
      if (*p == '\0') break;
      start = p + 1;
    }
  }
  return names;
}

}  // namespace

bool parse_decimal(const char *text, uint64_t max, uint64_t &value) noexcept {
  if (!text || *text == '\0') return false;
  uint64_t result = 0;
  for (const char *p = text; *p; ++p) {
    if (*p < '0' || *p > '9') return false;
    const auto digit = static_cast<uint64_t>(*p - '0');
    // result * 10 + digit > max, asked without computing it (it may overflow).
    if (result > max / 10 || (result == max / 10 && digit > max % 10)) return false;
    result = result * 10 + digit;
  }
  value = result;
  return true;
}

ListenEnv parse_listen_env(const char *listen_pid, const char *listen_fds, const char *listen_fdnames, pid_t self) {
  ListenEnv env;
  if (!listen_pid || !listen_fds) return env;
  pid_t pid = 0;
  if (!parse_pid(listen_pid, pid)) {
    env.error = -EINVAL;
    return env;
  }
  if (pid != self) return env;
  uint64_t count = 0;
  if (!parse_decimal(listen_fds, max_listen_fds, count)) {
    env.error = -EINVAL;
    return env;
  }
  env.count = static_cast<int>(count);
  if (env.count == 0 || !listen_fdnames) return env;
  std::vector<std::string> names = split_names(listen_fdnames);
  if (names.size() != count) {
    env.error = -EINVAL;
    return env;
  }
  env.names = std::move(names);
  return env;
}

int parse_watchdog_env(const char *watchdog_usec, const char *watchdog_pid, pid_t self, uint64_t &usec) noexcept {
  if (!watchdog_usec) return 0;
  uint64_t value = 0;
  // UINT64_MAX is systemd's USEC_INFINITY: no interval at all.
  if (!parse_decimal(watchdog_usec, UINT64_MAX - 1, value) || value == 0) return -EINVAL;
  if (watchdog_pid) {
    pid_t pid = 0;
    if (!parse_pid(watchdog_pid, pid)) return -EINVAL;
    if (pid != self) return 0;
  }
  usec = value;
  return 1;
}

int notify_address(const char *value, NotifyAddress &out) noexcept {
  if (!value || (value[0] != '/' && value[0] != '@')) return -EAFNOSUPPORT;
  const size_t length = std::strlen(value);
  out = NotifyAddress{};
  out.addr.sun_family = AF_UNIX;
  if (value[0] == '/') {
    // A file system path needs its terminating NUL inside sun_path.
    if (length >= sizeof out.addr.sun_path) return -EINVAL;
    std::memcpy(out.addr.sun_path, value, length + 1);
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length + 1);
    return 0;
  }
  // Abstract: the '@' stands for the leading NUL, and the name is exactly the
  // bytes after it (the length says where it ends, no terminator).
  if (length < 2) return -EINVAL;
  if (length > sizeof out.addr.sun_path) return -EINVAL;
  std::memcpy(out.addr.sun_path + 1, value + 1, length - 1);
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  return 0;
}

int send_notify(const char *notify_socket, const char *state) noexcept {
  if (!notify_socket) return 0;
  if (!state) return -EINVAL;
  NotifyAddress address;
  if (int rc = notify_address(notify_socket, address); rc != 0) return rc;
  // A socket per message: nothing is shared between threads, and no fd stays
  // open in a process that notifies once. It is closed by `socket`'s owner.
  gw::Fd socket(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket) return -errno;
  const size_t length = std::strlen(state);
  ssize_t sent;
  do {
    sent = ::sendto(socket.get(), state, length, MSG_NOSIGNAL, reinterpret_cast<const sockaddr *>(&address.addr),
                    address.length);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return -errno;
  // A datagram is sent whole or not at all; anything else is not the protocol.
  if (static_cast<size_t>(sent) != length) return -EPROTO;
  return 1;
}

int cloexec_listen_fds(int count) noexcept {
  for (int i = 0; i < count; ++i) {
    const int fd = listen_fds_start + i;
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -errno;
  }
  return 0;
}

}  // namespace gw::sd::detail
