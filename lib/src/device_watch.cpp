// SPDX-License-Identifier: MIT
// DeviceWatch: inotify along a device path's chain of symlinks.
#include "gw/device_watch.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gw {
namespace {

constexpr uint32_t watch_mask =
    IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
constexpr int max_symlink_hops = 40;  // the kernel's own limit (ELOOP)

std::string parent_of(const std::string &path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string name_of(const std::string &path) { return path.substr(path.rfind('/') + 1); }

bool is_directory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The next path of a symlink's chain, or "" when it cannot be read.
std::string follow(const std::string &link) {
  char target[PATH_MAX];
  const ssize_t size = ::readlink(link.c_str(), target, sizeof target - 1);
  if (size <= 0) return "";
  target[size] = '\0';
  return target[0] == '/' ? std::string(target) : parent_of(link) + "/" + target;
}

}  // namespace

bool device_node_at(const std::string &path, DeviceNode &out) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  out = DeviceNode::of(st);
  return true;
}

DeviceWatch::DeviceWatch(EventLoop &loop, std::string path, Callback on_ready)
    : loop_(loop), path_(std::move(path)), on_ready_(std::move(on_ready)), ready_timer_(loop, [this] { evaluate(); }) {}

int DeviceWatch::create(std::unique_ptr<DeviceWatch> &out, EventLoop &loop, const std::string &path, Callback on_ready,
                        std::string &why) {
  loop.assert_in_loop_thread("DeviceWatch::create");
  if (path.empty() || path[0] != '/') {
    why = "device path \"" + path + "\" is not absolute: write it from the root, as in /dev/ttyUSB0";
    return -EINVAL;
  }
  std::unique_ptr<DeviceWatch> watch(new DeviceWatch(loop, path, std::move(on_ready)));
  watch->inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  int rc = watch->inotify_ ? loop.add(watch->inotify_.get(), EPOLLIN, watch.get()) : -errno;
  if (rc < 0) {
    why = std::string("cannot watch ") + path + " for its device (inotify: " + std::strerror(-rc) + ")";
    return rc;
  }
  out = std::move(watch);
  return 0;
}

DeviceWatch::~DeviceWatch() {
  loop_.assert_in_loop_thread("DeviceWatch::~DeviceWatch");
  stop();
  loop_.remove(inotify_.get());
}

int DeviceWatch::start(std::string &why) {
  loop_.assert_in_loop_thread("DeviceWatch::start");
  has_gone_ = false;
  return arm(why);
}

int DeviceWatch::start_after(const DeviceNode &gone, std::string &why) {
  loop_.assert_in_loop_thread("DeviceWatch::start_after");
  has_gone_ = true;
  gone_ = gone;
  return arm(why);
}

int DeviceWatch::arm(std::string &why) {
  armed_ = true;
  bool ready = false;
  DeviceNode node;
  if (int rc = rewatch(ready, node, why)) {
    stop();
    return rc;
  }
  if (ready && !(has_gone_ && node == gone_)) ready_timer_.start(0);
  return 0;
}

void DeviceWatch::stop() noexcept {
  armed_ = false;
  ready_timer_.stop();
  // The IN_IGNORED events this causes name watches we no longer have: dropped.
  for (const auto &entry : watches_) ::inotify_rm_watch(inotify_.get(), entry.first);
  watches_.clear();
}

std::vector<std::string> DeviceWatch::watched_directories() const {
  std::vector<std::string> out;
  for (const auto &entry : watches_) out.push_back(entry.second.directory);
  return out;
}

// Watches the chain afresh and drops the watches it no longer needs.
int DeviceWatch::rewatch(bool &ready, DeviceNode &node, std::string &why) {
  WatchMap next;
  const int rc = walk(next, node, ready, why);
  for (const auto &entry : watches_) {
    if (!next.count(entry.first)) ::inotify_rm_watch(inotify_.get(), entry.first);
  }
  watches_ = std::move(next);
  return rc;
}

// Follows the path link by link, watching each link's directory (or its
// nearest existing parent) before looking into it.
int DeviceWatch::walk(WatchMap &next, DeviceNode &node, bool &ready, std::string &why) {
  ready = false;
  std::string current = path_;
  for (int hop = 0; hop < max_symlink_hops && !current.empty(); ++hop) {
    const std::string directory = parent_of(current);
    std::string existing = directory, child = name_of(current);
    while (!is_directory(existing)) {
      child = name_of(existing);
      existing = parent_of(existing);
    }
    if (int rc = watch(next, existing, child, why)) return rc;
    struct stat st;
    if (existing != directory || ::lstat(current.c_str(), &st) < 0) return 0;  // not there yet
    if (S_ISLNK(st.st_mode)) {
      current = follow(current);
      continue;
    }
    ready = S_ISCHR(st.st_mode) && ::faccessat(AT_FDCWD, current.c_str(), R_OK | W_OK, AT_EACCESS) == 0;
    node = DeviceNode::of(st);
    return 0;
  }
  return 0;  // a symlink loop or an unreadable link: wait for it to change
}

int DeviceWatch::watch(WatchMap &next, const std::string &directory, const std::string &name, std::string &why) {
  const int wd = ::inotify_add_watch(inotify_.get(), directory.c_str(), watch_mask);
  if (wd < 0) {
    const int rc = -errno;
    why = "cannot watch " + directory + " for " + path_ + " (inotify_add_watch: " + std::strerror(-rc) +
          (rc == -ENOSPC ? "; raise fs.inotify.max_user_watches)" : ")");
    return rc;
  }
  Watched &entry = next[wd];
  entry.directory = directory;
  entry.names.insert(name);
  return 0;
}

bool DeviceWatch::relevant(int wd, uint32_t mask, const char *name) const {
  if (mask & IN_Q_OVERFLOW) return true;  // events were lost: look again
  const auto found = watches_.find(wd);
  if (found == watches_.end()) return false;  // a watch we dropped
  if (mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) return true;
  return name && found->second.names.count(name) > 0;
}

void DeviceWatch::on_io(uint32_t) {
  alignas(struct inotify_event) char buffer[4096];
  bool changed = false;
  for (;;) {
    const ssize_t size = ::read(inotify_.get(), buffer, sizeof buffer);
    if (size <= 0) break;  // EAGAIN: drained
    for (ssize_t at = 0; at < size;) {
      const auto *event = reinterpret_cast<const struct inotify_event *>(buffer + at);
      changed = changed || relevant(event->wd, event->mask, event->len ? event->name : nullptr);
      at += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
    }
  }
  if (changed && armed_) evaluate();
}

// Walks the chain again; calls back, disarmed first, if the device is usable.
void DeviceWatch::evaluate() {
  if (!armed_) return;
  bool ready = false;
  DeviceNode node;
  std::string why;
  // A failed rewatch (inotify limits) keeps the watches it could add; the
  // next event in them looks again.
  rewatch(ready, node, why);
  if (!ready || (has_gone_ && node == gone_)) return;
  stop();
  on_ready_();  // may start this watch again; must not destroy it
}

}  // namespace gw
