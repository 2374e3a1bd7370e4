// SPDX-License-Identifier: MIT
// UucpLock: the lock file that minicom, picocom, ser2net and the other
// programs that open serial ports agree on. Internal to lib/.
#pragma once
#include <sys/types.h>

#include <memory>
#include <string>

namespace gw {

/// Holds "LCK..<device name>" in a lock directory, in the HDB UUCP format:
/// the holder's PID as 10 characters, right-aligned, and a newline. Taking it
/// is atomic (the file is written under a temporary name and link()ed into
/// place, so nobody ever reads a half-written lock); a lock whose PID is no
/// longer alive (or that holds no PID) is stale and taken over. Destroying
/// the object removes the file if it still holds our PID (never another
/// program's lock). Not thread-safe; owned by one SerialPort.
///
/// Known limit, shared with every UUCP lock implementation: two programs
/// taking over the same stale lock at the same moment can both succeed.
class UucpLock {
 public:
  /// 0 and `out` set; -EBUSY with `why` naming the holder's PID; or another
  /// negated errno with `why` naming the lock file and the fix.
  static int acquire(std::unique_ptr<UucpLock> &out, const std::string &lock_dir, const std::string &device,
                     std::string &why);
  ~UucpLock();
  UucpLock(const UucpLock &) = delete;
  UucpLock &operator=(const UucpLock &) = delete;

  const std::string &file() const noexcept { return file_; }
  /// The lock file's name for a device: LCK.. and the basename of the path.
  static std::string file_name(const std::string &device);

 private:
  UucpLock(std::string file, pid_t pid) : file_(std::move(file)), pid_(pid) {}
  std::string file_;
  pid_t pid_;
};

}  // namespace gw
