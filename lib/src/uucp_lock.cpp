// SPDX-License-Identifier: MIT
// UucpLock: LCK..name files, taken with link() and checked for staleness.
#include "uucp_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gw/fd.hpp"

namespace gw {
namespace {

std::string errno_text(int code) { return std::strerror(code); }

// The PID a lock file names: > 0; 0 when it names none (empty or garbage);
// a negated errno when it cannot be read (-ENOENT: removed meanwhile).
long read_holder(const std::string &file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return -errno;
  char text[64];
  const ssize_t size = ::read(fd.get(), text, sizeof text - 1);
  if (size < 0) return -errno;
  text[size] = '\0';
  char *end = nullptr;
  const long pid = std::strtol(text, &end, 10);
  if (end != text && pid > 0) return pid;
  // The old binary format: the PID as a native int.
  int binary = 0;
  if (size == static_cast<ssize_t>(sizeof binary)) {
    std::memcpy(&binary, text, sizeof binary);
    if (binary > 0) return binary;
  }
  return 0;
}

bool process_alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

// Writes our lock's content under a name of its own, to be link()ed into place.
int write_temporary(const std::string &dir, pid_t pid, std::string &temporary, std::string &why) {
  static std::atomic<unsigned> sequence{0};
  temporary = dir + "/LTMP." + std::to_string(pid) + "." + std::to_string(sequence++);
  Fd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) {
    const int rc = -errno;
    why = "cannot create a lock file in " + dir + " (" + errno_text(-rc) +
          "): give the service write access to it, or set another lock directory";
    return rc;
  }
  // Readable by everyone whatever the umask (gateway.service has UMask=0077):
  // minicom, picocom and ser2net running as other users read the holder's PID
  // from it to tell a live lock from a stale one.
  if (::fchmod(fd.get(), 0644) != 0) {
    const int rc = -errno;
    ::unlink(temporary.c_str());
    why = "cannot make the lock file " + temporary + " readable (" + errno_text(-rc) + ")";
    return rc;
  }
  char text[16];
  const int length = std::snprintf(text, sizeof text, "%10d\n", static_cast<int>(pid));
  if (::write(fd.get(), text, static_cast<size_t>(length)) != length) {
    const int rc = errno ? -errno : -EIO;
    ::unlink(temporary.c_str());
    why = "cannot write the lock file " + temporary + " (" + errno_text(-rc) + ")";
    return rc;
  }
  return 0;
}

// What to do about an existing lock: 0 it was stale and is gone (try again),
// -EBUSY a live process holds it, or another negated errno.
int judge_existing(const std::string &file, const std::string &device, std::string &why) {
  const long holder = read_holder(file);
  if (holder == -ENOENT) return 0;
  if (holder > 0 && process_alive(holder)) {
    why = device + " is in use by PID " + std::to_string(holder) + (holder == ::getpid() ? " (this process)" : "") +
          " (lock file " + file + "): stop that program, or wait until it closes the port";
    return -EBUSY;
  }
  if (::unlink(file.c_str()) < 0 && errno != ENOENT) {
    const int rc = -errno;
    why = "cannot remove the stale lock file " + file + " (" + errno_text(-rc) + ")";
    return rc;
  }
  return 0;
}

}  // namespace

std::string UucpLock::file_name(const std::string &device) {
  const size_t slash = device.rfind('/');
  return "LCK.." + (slash == std::string::npos ? device : device.substr(slash + 1));
}

int UucpLock::acquire(std::unique_ptr<UucpLock> &out, const std::string &lock_dir, const std::string &device,
                      std::string &why) {
  const std::string file = lock_dir + "/" + file_name(device);
  const pid_t pid = ::getpid();
  std::string temporary;
  if (int rc = write_temporary(lock_dir, pid, temporary, why)) return rc;
  int rc = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::link(temporary.c_str(), file.c_str()) == 0) {
      out.reset(new UucpLock(file, pid));
      why.clear();
      rc = 0;
      break;
    }
    if (errno != EEXIST) {
      rc = -errno;
      why = "cannot create the lock file " + file + " (" + errno_text(-rc) + ")";
      break;
    }
    rc = judge_existing(file, device, why);
    if (rc != 0) break;  // a live holder, or an error
    rc = -EBUSY;         // stale and removed: the next attempt links, unless it came back
    why = "the lock file " + file + " of " + device + " came back each time it was removed as stale";
  }
  ::unlink(temporary.c_str());
  return rc;
}

// A forked child that destroys its copy leaves its parent's lock alone.
UucpLock::~UucpLock() {
  if (pid_ == ::getpid() && read_holder(file_) == pid_) ::unlink(file_.c_str());
}

}  // namespace gw
