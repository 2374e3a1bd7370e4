// SPDX-License-Identifier: MIT
// The serial device layer: line settings, one open serial port, and (in
// device_watch.hpp) the watch that finds a device again after an unplug.
//
// What this layer is for. Issue 9's serial backend puts a board's UARTs and
// USB adapters on the network. It needs three things from the system, kept
// here so that the backend only deals with clients and bytes:
//
//  * SerialSettings: the line settings as the configuration states them
//    (any baud rate from 50 to 4000000, 5 to 8 data bits, parity
//    none/even/odd/mark/space, 1 or 2 stop bits, flow control, initial DTR and
//    RTS levels, RS-485). validate() gives the reason a person can act on;
//    char_time_us() and chars_time_us() turn a baud rate into the timing of
//    characters (the "3.5char" idle gap of packing and, in issue 10, Modbus).
//
//  * SerialPort: the single owner of an open device. open() follows a
//    symlink such as /dev/serial/by-id/... anew on every open, takes the UUCP
//    lock file that minicom, picocom and ser2net respect, sets TIOCEXCL,
//    saves the device's previous settings, then applies raw mode and the line
//    settings through termios2 (BOTHER for rates without a B constant) and
//    reads them back: a setting the driver dropped is an error naming it (a
//    rate is accepted within 2%). One exception: a pseudo-terminal's driver
//    always forces CS8 and clears PARENB (it has no line to put bits on), so
//    on a pty data bits and parity are not checked, and read_settings()
//    shows 8N1 there. Destroying the port restores what it changed and
//    releases the lock. It does not read or write for you: the backend
//    registers fd() with its EventLoop and reads and writes it non-blocking.
//
//  * DeviceWatch (device_watch.hpp): inotify on the directories along the
//    path, calling back once when the path resolves to a usable device again.
//
// Unplug, as the kernel reports it (checked by tests/core/test_serial_port.cpp
// with a pseudo-terminal, whose master closing is what a USB adapter's
// disconnect does to its tty: both end in tty_vhangup()): the fd is hung up.
// epoll reports EPOLLIN | EPOLLERR | EPOLLHUP at once and for good; read()
// returns 0 (end of file), even if bytes were still unread (they are lost);
// write() and every ioctl fail with EIO. A tty in raw mode with O_NONBLOCK
// never returns 0 from read() otherwise (no data is EAGAIN), so the backend
// treats read() == 0, EIO, ENXIO, ENODEV, EPOLLHUP and EPOLLERR alike as
// "the device is gone": close the SerialPort and start a DeviceWatch.
// SerialPort::check_alive() confirms it (-EIO once hung up). The device node
// of a pty disappears when its master closes; a USB adapter's node goes
// shortly after the hang-up (devtmpfs removes it asynchronously), which is why
// DeviceWatch::start_after() ignores the node that was just lost.
//
// Threading: none of these classes is thread-safe. A SerialPort belongs to
// one thread at a time and blocks only in send_break(); a DeviceWatch belongs
// to its EventLoop's thread.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gw/fd.hpp"

namespace gw {

enum class Parity { none, even, odd, mark, space };
enum class FlowControl { none, rtscts, xonxoff };

/// One row of a name table: the configuration's word for an enum value.
template <typename Enum>
struct EnumName {
  Enum value;
  const char *name;
};

/// The one table of parity names, in the order a "did you mean" list shows
/// them. The config parser, RFC 2217 and logs all use these words.
inline constexpr EnumName<Parity> parity_names[] = {
    {Parity::none, "none"}, {Parity::even, "even"},   {Parity::odd, "odd"},
    {Parity::mark, "mark"}, {Parity::space, "space"},
};
/// The one table of flow control names.
inline constexpr EnumName<FlowControl> flow_control_names[] = {
    {FlowControl::none, "none"},
    {FlowControl::rtscts, "rtscts"},
    {FlowControl::xonxoff, "xonxoff"},
};

/// Finds `text` (exact, case-sensitive) in a name table; false if absent.
template <typename Enum, size_t N>
bool enum_from_name(const EnumName<Enum> (&table)[N], std::string_view text, Enum &out) noexcept {
  for (const auto &row : table) {
    if (text == row.name) {
      out = row.value;
      return true;
    }
  }
  return false;
}
/// The table's word for `value` ("?" for a value outside the table).
template <typename Enum, size_t N>
const char *enum_name(const EnumName<Enum> (&table)[N], Enum value) noexcept {
  for (const auto &row : table) {
    if (row.value == value) return row.name;
  }
  return "?";
}
inline const char *parity_name(Parity value) noexcept { return enum_name(parity_names, value); }
inline const char *flow_control_name(FlowControl value) noexcept { return enum_name(flow_control_names, value); }

/// RS-485 direction control done by the kernel driver (TIOCSRS485): the driver
/// raises RTS to rts_on_send around each transmission and returns it to
/// rts_after_send afterwards, waiting the delays (milliseconds) on either side.
struct Rs485Settings {
  bool enabled = false;
  bool rts_on_send = true;      // RTS level (true: asserted) while sending
  bool rts_after_send = false;  // RTS level once the last bit has left
  uint32_t delay_before_send_ms = 0;
  uint32_t delay_after_send_ms = 0;
};

/// A serial line's settings as configured. A caller that converts from a
/// wider integer (the config parser's int64) must check that the value fits
/// (or saturate it) before assigning, so that validate() sees what was meant.
struct SerialSettings {
  static constexpr uint32_t min_baud = 50;
  static constexpr uint32_t max_baud = 4000000;
  /// The kernel's limit for RS-485 delays (serial_core clamps larger ones).
  static constexpr uint32_t max_rs485_delay_ms = 100;

  uint32_t baud = 9600;
  int data_bits = 8;
  Parity parity = Parity::none;
  int stop_bits = 1;
  FlowControl flow_control = FlowControl::none;
  /// Initial DTR and RTS levels; nullopt leaves the line as the open left it.
  std::optional<bool> dtr;
  std::optional<bool> rts;
  /// Left alone when not enabled: a board's device tree may have turned
  /// RS-485 on at boot, and a port that was not asked to change it keeps it.
  Rs485Settings rs485;

  /// 0 when every value is in range and the values agree with each other;
  /// -EINVAL with `why` naming the first bad value, its range and the fix.
  int validate(std::string &why) const;

  /// Bit times per character, in halves: start + data + parity + stop. Two
  /// stop bits with five data bits are 1.5 stop bits on a UART (16550 and
  /// most others), so this counts three halves for them.
  uint32_t half_bits_per_char() const noexcept;
  /// Time on the wire of one character, in microseconds, rounded up
  /// (9600 8N1: 10 bits, 1041.7 us -> 1042). Requires a valid baud rate.
  uint32_t char_time_us() const noexcept;
  /// Time of `tenths` tenths of characters, rounded up once (not the sum of
  /// rounded characters): chars_time_us(35) is the "3.5char" gap.
  uint32_t chars_time_us(uint32_t tenths) const noexcept;
  /// The 3.5-character gap at this line's rate, the "3.5char" idle gap of
  /// packing. (Modbus RTU uses a fixed 1750 us above 19200 baud instead; that
  /// rule belongs to the Modbus layer, which can build it on this.)
  uint32_t gap_3_5_chars_us() const noexcept { return chars_time_us(35); }

  /// "115200 8N1", "9600 7E2 rtscts", "250000 8M1 xonxoff rs485": for logs.
  std::string summary() const;
};

/// The identity of a device node, so that a watch can tell the node it lost
/// from a new one under the same name. A pty's number and inode are reused,
/// so the change time (set when the node was created) is part of it.
struct DeviceNode {
  uint64_t dev = 0;   // st_dev: the file system holding the node
  uint64_t ino = 0;   // st_ino
  uint64_t rdev = 0;  // st_rdev: the device's major and minor numbers
  int64_t ctime_ns = 0;
  /// The identity of the node `st` describes (from stat() or fstat()).
  static DeviceNode of(const struct stat &st) noexcept {
    DeviceNode node;
    node.dev = st.st_dev;
    node.ino = st.st_ino;
    node.rdev = st.st_rdev;
    node.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    return node;
  }
  bool operator==(const DeviceNode &other) const noexcept {
    return dev == other.dev && ino == other.ino && rdev == other.rdev && ctime_ns == other.ctime_ns;
  }
  bool operator!=(const DeviceNode &other) const noexcept { return !(*this == other); }
};

/// How SerialPort::open() shares the device with other programs.
struct SerialOpenOptions {
  /// Where UUCP lock files live ("LCK..ttyUSB0"); empty: no lock file (for
  /// systems without a lock directory; TIOCEXCL is still set).
  std::string lock_dir = "/run/lock";
};

/// The modem control lines (TIOCMGET): outputs DTR and RTS, inputs CTS, DSR,
/// DCD (carrier detect) and RI (ring indicator).
struct ModemLines {
  bool dtr = false, rts = false, cts = false, dsr = false, dcd = false, ri = false;
};

enum class FlushQueue { input, output, both };

class UucpLock;

/// One open serial device and everything it changed on it. Owns the device
/// fd (one RAII owner: gw::Fd), the lock file and the saved settings; the
/// destructor restores what open() and the setters changed (line settings,
/// DTR/RTS, RS-485), discards output the driver has not sent yet (so that it
/// is not sent at the restored rate, and close never waits for a stopped
/// flow; wait for output_pending() == 0 first to keep it), clears TIOCEXCL,
/// closes the fd and removes the lock file. Restoring a device that is gone
/// fails quietly: there is nothing left to restore.
///
/// Threading: not thread-safe; one owner thread at a time. The port knows no
/// EventLoop: the owner adds fd() to its loop and removes it before the port
/// is destroyed.
class SerialPort {
 public:
  /// Opens `path` with `settings` (validated first). 0 and `out` set, or a
  /// negated errno and `why`, one line naming the device and the fix:
  /// -ENOENT missing, -EACCES no permission, -ENOTTY not a terminal,
  /// -EBUSY locked by a live process (its PID in `why`), -ENOTSUP a setting
  /// the driver has no support for (RS-485, modem lines), -EINVAL a setting
  /// out of range or refused by the driver.
  static int open(std::unique_ptr<SerialPort> &out, const std::string &path, const SerialSettings &settings,
                  const SerialOpenOptions &options, std::string &why);
  ~SerialPort();
  SerialPort(const SerialPort &) = delete;
  SerialPort &operator=(const SerialPort &) = delete;

  /// The device fd: non-blocking, close-on-exec, raw mode. Owned by the port.
  int fd() const noexcept { return fd_.get(); }
  /// The path as given (a by-id symlink stays a symlink) and what it
  /// resolved to at this open (/dev/ttyUSB0).
  const std::string &path() const noexcept { return path_; }
  const std::string &device() const noexcept { return device_; }
  /// The node this port opened, for DeviceWatch::start_after().
  const DeviceNode &node() const noexcept { return node_; }
  /// A pseudo-terminal, not a UART: its driver keeps no data bits or parity
  /// (it forces CS8 without PARENB), so those two are not checked on it.
  bool is_pseudo_terminal() const noexcept;
  /// The settings asked for at open or by the last successful set_settings().
  const SerialSettings &settings() const noexcept { return settings_; }

  /// The line settings the kernel holds now (TCGETS2): baud, data bits,
  /// parity, stop bits, flow control; DTR/RTS from TIOCMGET where the driver
  /// has modem lines; RS-485 from TIOCGRS485 where it has it.
  int read_settings(SerialSettings &out, std::string &why) const;
  /// Changes the settings at run time (RFC 2217). Takes effect at once
  /// (TCSETS2, not waiting for output to drain). On failure the previous
  /// settings are put back as far as the driver allows.
  int set_settings(const SerialSettings &settings, std::string &why);
  int modem_lines(ModemLines &out) const;
  /// Sets the outputs given; nullopt leaves a line alone. -ENOTSUP when the
  /// driver has no modem lines (a pty).
  int set_modem_lines(std::optional<bool> dtr, std::optional<bool> rts);
  /// Starts or ends a break condition (TIOCSBRK/TIOCCBRK) without waiting:
  /// the loop-friendly form, timed by the owner's Timer. -ENOSYS where the
  /// system lacks those ioctls (qemu-user 7.2 translates neither).
  int set_break(bool on);
  /// A break of `ms` milliseconds (at most 5000). Blocks the caller for that
  /// long: not for the loop thread; use set_break() and a Timer there.
  int send_break(uint32_t ms);
  int flush(FlushQueue queue);
  /// Bytes the driver still has to send (TIOCOUTQ).
  int output_pending(size_t &out) const;
  /// 0 while the device answers, else the negated errno of its refusal: -EIO
  /// once it has been hung up (unplugged).
  int check_alive() const;

 private:
  struct Saved;
  SerialPort();
  int resolve_device(const std::string &path, std::string &why);
  int take_device(const SerialSettings &settings, std::string &why);
  int apply_modem_lines(const SerialSettings &settings, std::string &why);
  int apply_rs485(const Rs485Settings &rs485, std::string &why);
  void restore() noexcept;

  std::string path_;
  std::string device_;
  DeviceNode node_;
  SerialSettings settings_;
  std::unique_ptr<UucpLock> lock_;  // released after the fd is closed
  Fd fd_;
  std::unique_ptr<Saved> saved_;
};

}  // namespace gw
