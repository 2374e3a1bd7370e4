// SPDX-License-Identifier: MIT
#include "gw/systemd.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "sd_protocol.hpp"

namespace gw::sd {
namespace {
// The fds collected from LISTEN_FDS and not taken yet. Guarded by pool_mutex,
// which also serialises the environment's read-and-unset in
// collect_listen_fds() (getenv races with unsetenv in glibc: no other thread
// of this process should touch LISTEN_* meanwhile).
std::mutex pool_mutex;
std::vector<ListenFd> pool;
}  // namespace

#if GW_WITH_SYSTEMD

bool available() noexcept { return true; }

namespace {

// Takes the fds that `env` describes into the pool (the caller holds
// pool_mutex). FD_CLOEXEC comes first, also when the names are wrong: the
// fds are this process's either way and must never reach a child.
int pool_listen_fds(const detail::ListenEnv &env) {
  if (int rc = detail::cloexec_listen_fds(env.count); rc < 0) return rc;
  if (env.error < 0) return env.error;
  pool.reserve(pool.size() + static_cast<size_t>(env.count));
  for (int i = 0; i < env.count; ++i) {
    const std::string name = env.names.empty() ? detail::unknown_name : env.names[static_cast<size_t>(i)];
    pool.push_back(ListenFd{detail::listen_fds_start + i, name});
  }
  return 0;
}

}  // namespace

int collect_listen_fds() noexcept {
  std::lock_guard<std::mutex> lock(pool_mutex);
  int rc = 0;
  try {
    rc = pool_listen_fds(detail::parse_listen_env(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                                                  std::getenv("LISTEN_FDNAMES"), ::getpid()));
  } catch (...) {
    rc = -ENOMEM;
  }
  // sd_listen_fds(3)'s unset_environment=1, whatever the outcome: the
  // variables describe this process only, and a child must not see them.
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return rc < 0 ? rc : static_cast<int>(pool.size());
}

int notify(const char *state) noexcept { return detail::send_notify(std::getenv("NOTIFY_SOCKET"), state); }

int watchdog_usec(uint64_t &usec) noexcept {
  return detail::parse_watchdog_env(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), ::getpid(), usec);
}

#else

bool available() noexcept { return false; }
int collect_listen_fds() noexcept { return -ENOSYS; }
int notify(const char *) noexcept { return -ENOSYS; }
int watchdog_usec(uint64_t &) noexcept { return -ENOSYS; }

#endif

int take_listen_fd(const std::string &name, int &fd) noexcept {
  std::lock_guard<std::mutex> lock(pool_mutex);
  for (auto it = pool.begin(); it != pool.end(); ++it) {
    if (it->name == name) {
      fd = it->fd;
      pool.erase(it);
      return 0;
    }
  }
  return -ENOENT;
}

std::vector<ListenFd> take_all_listen_fds() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  std::vector<ListenFd> all;
  all.swap(pool);
  return all;
}

}  // namespace gw::sd
