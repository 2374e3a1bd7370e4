// SPDX-License-Identifier: MIT
// SerialPort: opening, configuring and restoring one serial device.
#include <fcntl.h>
#include <linux/serial.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "gw/serial.hpp"
#include "termios2.hpp"
#include "uucp_lock.hpp"

namespace gw {

// What open() and the setters changed, so that the destructor can put it back.
struct SerialPort::Saved {
  tty::LineState line{};
  bool line_saved = false;
  int modem_bits = 0;  // TIOCMGET before our first change of DTR/RTS
  bool modem_saved = false;
  struct serial_rs485 rs485 {};
  bool rs485_changed = false;
};

namespace {

std::string errno_text(int negated) { return std::strerror(-negated); }

// A driver without an ioctl answers ENOTTY (the tty layer's "not mine": a
// pty has neither modem lines nor RS-485). Any other errno is a refusal.
bool unsupported(int negated) { return negated == -ENOTTY; }

// Unix98 pty slaves have majors 136 to 143, BSD-style ones 3
// (Documentation/admin-guide/devices.txt).
bool pty_major(uint64_t rdev) {
  const unsigned number = major(static_cast<dev_t>(rdev));
  return (number >= 136 && number <= 143) || number == 3;
}

}  // namespace

SerialPort::SerialPort() : saved_(new Saved) {}

SerialPort::~SerialPort() { restore(); }

bool SerialPort::is_pseudo_terminal() const noexcept { return pty_major(node_.rdev); }

int SerialPort::open(std::unique_ptr<SerialPort> &out, const std::string &path, const SerialSettings &settings,
                     const SerialOpenOptions &options, std::string &why) {
  if (int rc = settings.validate(why)) {
    why = "serial device " + path + ": " + why;
    return rc;
  }
  std::unique_ptr<SerialPort> port(new SerialPort());
  port->path_ = path;
  port->settings_ = settings;
  if (int rc = port->resolve_device(path, why)) return rc;
  // The lock is taken before the device is opened: opening a UART raises
  // DTR and RTS, which must not disturb a port another program holds.
  if (!options.lock_dir.empty()) {
    if (int rc = UucpLock::acquire(port->lock_, options.lock_dir, port->device_, why)) return rc;
  }
  if (int rc = port->take_device(settings, why)) return rc;
  out = std::move(port);
  return 0;
}

// Resolves the path (symlinks anew each time) and checks it names a
// character device; the open itself waits for the lock (see open()).
int SerialPort::resolve_device(const std::string &path, std::string &why) {
  char resolved[PATH_MAX];
  struct stat st;
  if (!::realpath(path.c_str(), resolved) || ::stat(resolved, &st) < 0) {
    const int rc = -errno;
    why = "serial device " + path + ": " + errno_text(rc) +
          (rc == -ENOENT ? " (is it plugged in? ls /dev/serial/by-id lists the USB adapters present)" : "");
    return rc;
  }
  device_ = resolved;
  const std::string shown = device_ == path ? path : path + " (" + device_ + ")";
  if (!S_ISCHR(st.st_mode)) {
    why = "serial device " + shown + " is not a character device: name a tty such as /dev/ttyS0 or /dev/ttyUSB0";
    return -ENOTTY;
  }
  return 0;
}

// Opens the device, then saves and changes its settings. On failure the
// destructor puts back whatever was already changed.
int SerialPort::take_device(const SerialSettings &settings, std::string &why) {
  fd_.reset(::open(device_.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  if (!fd_) {
    const int rc = -errno;
    why = "cannot open serial device " + device_ + ": " + errno_text(rc) +
          (rc == -EACCES  ? " (the service user needs the dialout group, and DeviceAllow= under systemd)"
           : rc == -EBUSY ? " (another program has it open exclusively, TIOCEXCL; fuser names it)"
                          : "");
    return rc;
  }
  struct stat st;
  if (!::isatty(fd_.get()) || ::fstat(fd_.get(), &st) < 0) {
    why = device_ + " is not a terminal device: name a tty such as /dev/ttyS0 or /dev/ttyUSB0";
    return -ENOTTY;
  }
  node_ = DeviceNode::of(st);
  // Keeps other (non-root) programs from opening it while we have it; root
  // is not stopped by this, which is what the lock file is for.
  int rc = ::ioctl(fd_.get(), TIOCEXCL) < 0 ? -errno : tty::save_line(fd_.get(), saved_->line);
  if (rc < 0) {
    why = "cannot take serial device " + device_ + ": " + errno_text(rc);
    return rc;
  }
  saved_->line_saved = true;
  if ((rc = tty::apply_line(fd_.get(), settings, is_pseudo_terminal(), device_, why))) return rc;
  if ((rc = apply_modem_lines(settings, why))) return rc;
  return apply_rs485(settings.rs485, why);
}

int SerialPort::apply_modem_lines(const SerialSettings &settings, std::string &why) {
  const int rc = set_modem_lines(settings.dtr, settings.rts);
  if (rc == -ENOTSUP) {
    why = "the driver of " + device_ +
          " has no modem control lines (TIOCMGET: Inappropriate ioctl for device): remove the dtr and rts settings";
  } else if (rc < 0) {
    why = "cannot set DTR/RTS on " + device_ + ": " + errno_text(rc);
  }
  return rc;
}

int SerialPort::apply_rs485(const Rs485Settings &rs485, std::string &why) {
  if (!rs485.enabled) return 0;
  struct serial_rs485 previous {};
  const bool have_previous = saved_->rs485_changed || ::ioctl(fd_.get(), TIOCGRS485, &previous) == 0;
  if (saved_->rs485_changed) previous = saved_->rs485;
  struct serial_rs485 wanted = previous;
  wanted.flags &= ~static_cast<__u32>(SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND | SER_RS485_RTS_AFTER_SEND);
  wanted.flags |= SER_RS485_ENABLED;
  if (rs485.rts_on_send) wanted.flags |= SER_RS485_RTS_ON_SEND;
  if (rs485.rts_after_send) wanted.flags |= SER_RS485_RTS_AFTER_SEND;
  wanted.delay_rts_before_send = rs485.delay_before_send_ms;
  wanted.delay_rts_after_send = rs485.delay_after_send_ms;
  if (::ioctl(fd_.get(), TIOCSRS485, &wanted) < 0) {
    const int rc = -errno;
    if (rc == -ENOSYS) {
      // The system, not the driver, lacks the ioctl: qemu-user 7.2 does not
      // translate TIOCGRS485/TIOCSRS485 (a real kernel answers ENOTTY).
      why = "RS-485 cannot be set on " + device_ + ": this system does not implement TIOCSRS485 (" + errno_text(rc) +
            "; qemu-user?): run natively, or set rs485 = false";
      return -ENOTSUP;
    }
    why = (unsupported(rc) ? "the driver of " + device_ + " has no RS-485 support (TIOCSRS485: "
                           : "the driver of " + device_ + " refused the RS-485 settings (TIOCSRS485: ") +
          errno_text(rc) + "): use a port with an RS-485 transceiver, or set rs485 = false";
    return unsupported(rc) ? -ENOTSUP : rc;
  }
  if (have_previous && !saved_->rs485_changed) {
    saved_->rs485 = previous;
    saved_->rs485_changed = true;
  }
  return 0;
}

void SerialPort::restore() noexcept {
  if (!fd_) return;
  const int fd = fd_.get();
  // Unsent output would go out at the restored rate, and a close with output
  // pending waits for it (up to 30 s on a UART whose flow is stopped).
  ::tcflush(fd, TCIOFLUSH);
  if (saved_->rs485_changed) ::ioctl(fd, TIOCSRS485, &saved_->rs485);
  if (saved_->modem_saved) {
    int set = saved_->modem_bits & (TIOCM_DTR | TIOCM_RTS);
    int clear = ~saved_->modem_bits & (TIOCM_DTR | TIOCM_RTS);
    ::ioctl(fd, TIOCMBIS, &set);
    ::ioctl(fd, TIOCMBIC, &clear);
  }
  if (saved_->line_saved) tty::restore_line(fd, saved_->line);
  ::ioctl(fd, TIOCNXCL);
}

int SerialPort::read_settings(SerialSettings &out, std::string &why) const {
  SerialSettings read;
  if (int rc = tty::read_line(fd_.get(), read)) {
    why = "cannot read the line settings of " + device_ + " (TCGETS2: " + errno_text(rc) + ")";
    return rc;
  }
  ModemLines lines;
  if (modem_lines(lines) == 0) {
    read.dtr = lines.dtr;
    read.rts = lines.rts;
  }
  struct serial_rs485 rs485 {};
  if (::ioctl(fd_.get(), TIOCGRS485, &rs485) == 0 && (rs485.flags & SER_RS485_ENABLED)) {
    read.rs485.enabled = true;
    read.rs485.rts_on_send = (rs485.flags & SER_RS485_RTS_ON_SEND) != 0;
    read.rs485.rts_after_send = (rs485.flags & SER_RS485_RTS_AFTER_SEND) != 0;
    read.rs485.delay_before_send_ms = rs485.delay_rts_before_send;
    read.rs485.delay_after_send_ms = rs485.delay_rts_after_send;
  }
  out = read;
  return 0;
}

int SerialPort::set_settings(const SerialSettings &settings, std::string &why) {
  if (int rc = settings.validate(why)) {
    why = "serial device " + device_ + ": " + why;
    return rc;
  }
  int rc = tty::apply_line(fd_.get(), settings, is_pseudo_terminal(), device_, why);
  if (rc == 0) rc = apply_modem_lines(settings, why);
  if (rc == 0 && settings.rs485.enabled) rc = apply_rs485(settings.rs485, why);
  if (rc == 0 && !settings.rs485.enabled && saved_->rs485_changed) {
    // Turning RS-485 off gives the port back the mode it had before us.
    if (::ioctl(fd_.get(), TIOCSRS485, &saved_->rs485) == 0) saved_->rs485_changed = false;
  }
  if (rc != 0) {
    std::string ignored;
    tty::apply_line(fd_.get(), settings_, is_pseudo_terminal(), device_, ignored);
    return rc;
  }
  settings_ = settings;
  return 0;
}

int SerialPort::modem_lines(ModemLines &out) const {
  int bits = 0;
  if (::ioctl(fd_.get(), TIOCMGET, &bits) < 0) return unsupported(-errno) ? -ENOTSUP : -errno;
  out.dtr = bits & TIOCM_DTR;
  out.rts = bits & TIOCM_RTS;
  out.cts = bits & TIOCM_CTS;
  out.dsr = bits & TIOCM_DSR;
  out.dcd = bits & TIOCM_CAR;
  out.ri = bits & TIOCM_RNG;
  return 0;
}

int SerialPort::set_modem_lines(std::optional<bool> dtr, std::optional<bool> rts) {
  if (!dtr && !rts) return 0;
  if (!saved_->modem_saved) {
    if (::ioctl(fd_.get(), TIOCMGET, &saved_->modem_bits) < 0) return unsupported(-errno) ? -ENOTSUP : -errno;
    saved_->modem_saved = true;
  }
  int set = 0, clear = 0;
  if (dtr) (*dtr ? set : clear) |= TIOCM_DTR;
  if (rts) (*rts ? set : clear) |= TIOCM_RTS;
  if (set && ::ioctl(fd_.get(), TIOCMBIS, &set) < 0) return -errno;
  if (clear && ::ioctl(fd_.get(), TIOCMBIC, &clear) < 0) return -errno;
  return 0;
}

int SerialPort::set_break(bool on) { return ::ioctl(fd_.get(), on ? TIOCSBRK : TIOCCBRK) < 0 ? -errno : 0; }

int SerialPort::send_break(uint32_t ms) {
  if (ms == 0 || ms > 5000) return -EINVAL;
  if (int rc = set_break(true)) return rc;
  struct timespec left = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000};
  while (::nanosleep(&left, &left) < 0 && errno == EINTR) {}
  return set_break(false);
}

int SerialPort::flush(FlushQueue queue) {
  const int which = queue == FlushQueue::input ? TCIFLUSH : queue == FlushQueue::output ? TCOFLUSH : TCIOFLUSH;
  return ::tcflush(fd_.get(), which) < 0 ? -errno : 0;
}

int SerialPort::output_pending(size_t &out) const {
  int bytes = 0;
  if (::ioctl(fd_.get(), TIOCOUTQ, &bytes) < 0) return -errno;
  out = static_cast<size_t>(bytes);
  return 0;
}

int SerialPort::check_alive() const {
  tty::LineState ignored;
  return tty::save_line(fd_.get(), ignored);
}

}  // namespace gw
