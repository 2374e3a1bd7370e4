// SPDX-License-Identifier: MIT
// DeviceWatch: waits, with inotify and without polling, for a device path to
// resolve to a usable device again (see the overview in serial.hpp).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gw/event_loop.hpp"
#include "gw/fd.hpp"
#include "gw/serial.hpp"

namespace gw {

/// The node `path` names now, symlinks followed; false when it names none.
/// For an owner whose open failed on a node that exists (no permission, a
/// setting its driver lacks): DeviceWatch::start_after() that node, so that
/// the watch waits for a change instead of calling back for it again.
bool device_node_at(const std::string &path, DeviceNode &out);

/// Calls back once when `path` resolves, through any chain of symlinks, to a
/// character device this process may open for reading and writing.
///
/// How: an inotify watch on the directory of each link in the chain (the
/// by-id directory of /dev/serial/by-id/x, and /dev for its target), or, for
/// a directory that does not exist yet, on its nearest existing parent. Any
/// event about a name in the chain (created, removed, renamed, attributes
/// changed: udev granting the dialout group) walks the chain again and
/// rewatches it, so a symlink recreated to point at a new device, and
/// directories that appear one after the other, are followed. The watch is
/// added before the directory is read, so nothing that happens in between is
/// missed. Between events the process spends no CPU: no timer, no polling.
///
/// "Usable" is checked without opening the device: opening a UART raises DTR
/// and RTS, which resets some devices. The owner opens it in the callback; if
/// that fails it calls start_after() with the node it found, so that the same
/// dead node does not call back again (a USB adapter's node outlives its
/// hang-up briefly).
///
/// Ownership and threading: owned by whoever created it (the serial backend);
/// loop thread only. The inotify fd is owned here and registered with the
/// loop for the watch's whole life. The callback runs on the loop thread, the
/// watch already stopped; it may call start()/start_after() again, but must
/// not destroy the watch itself (hand that to EventLoop::defer).
class DeviceWatch final : public IoHandler {
 public:
  using Callback = std::function<void()>;

  /// `path` must be absolute. 0 or a negated errno and `why`.
  static int create(std::unique_ptr<DeviceWatch> &out, EventLoop &loop, const std::string &path, Callback on_ready,
                    std::string &why);
  ~DeviceWatch();
  DeviceWatch(const DeviceWatch &) = delete;
  DeviceWatch &operator=(const DeviceWatch &) = delete;

  /// Arms the watch. If the device is usable already, the callback runs from
  /// the loop's next dispatch (never from inside start()). 0, or a negated
  /// errno and `why` (no inotify watch could be added: fs.inotify limits).
  int start(std::string &why);
  /// Like start(), but a device whose node is `gone` does not count: the
  /// callback waits for the path to name another node.
  int start_after(const DeviceNode &gone, std::string &why);
  /// Disarms: no callback until the next start. Idempotent.
  void stop() noexcept;
  bool armed() const noexcept { return armed_; }
  const std::string &path() const noexcept { return path_; }
  /// The directories watched now, for tests and logs.
  std::vector<std::string> watched_directories() const;

  void on_io(uint32_t events) override;

 private:
  struct Watched {
    std::string directory;
    std::set<std::string> names;  // the children that matter in it
  };
  using WatchMap = std::map<int, Watched>;

  DeviceWatch(EventLoop &loop, std::string path, Callback on_ready);
  int arm(std::string &why);
  int walk(WatchMap &next, DeviceNode &node, bool &ready, std::string &why);
  int watch(WatchMap &next, const std::string &directory, const std::string &name, std::string &why);
  int rewatch(bool &ready, DeviceNode &node, std::string &why);
  bool relevant(int wd, uint32_t mask, const char *name) const;
  void evaluate();

  EventLoop &loop_;
  std::string path_;
  Callback on_ready_;
  Fd inotify_;
  Timer ready_timer_;  // delivers a device usable at start() from the loop
  WatchMap watches_;
  bool armed_ = false;
  bool has_gone_ = false;
  DeviceNode gone_;
};

}  // namespace gw
