// SPDX-License-Identifier: MIT
#include "gw/systemd.hpp"

#include <cerrno>
#include <cstdlib>
#include <mutex>

#if GW_WITH_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace gw::sd {
namespace {
std::mutex pool_mutex;
std::vector<ListenFd> pool;
}  // namespace

#if GW_WITH_SYSTEMD

bool available() noexcept { return true; }

int collect_listen_fds() noexcept {
  std::lock_guard<std::mutex> lock(pool_mutex);
  char **names = nullptr;
  // unset_environment=1: the variables describe this process only.
  int count = sd_listen_fds_with_names(1, &names);
  if (count < 0) return count;
  try {
    for (int i = 0; i < count; ++i) {
      pool.push_back(ListenFd{SD_LISTEN_FDS_START + i, names && names[i] ? names[i] : "unknown"});
    }
  } catch (...) {
    count = -ENOMEM;
  }
  if (names) {
    for (int i = 0; names[i]; ++i) std::free(names[i]);
    std::free(names);
  }
  return count < 0 ? count : static_cast<int>(pool.size());
}

int notify(const char *state) noexcept { return sd_notify(0, state); }

int watchdog_usec(uint64_t &usec) noexcept { return sd_watchdog_enabled(0, &usec); }

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
