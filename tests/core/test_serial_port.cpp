// SPDX-License-Identifier: MIT
// The serial device layer against pseudo-terminals standing in for UARTs:
// line settings read back with TCGETS2 on the fd (not through the code under
// test), settings restored at close, the UUCP lock (taken, released, a live
// holder refused with its PID, a stale one taken over), RS-485 and modem
// lines refused cleanly on a pty, missing paths, validate() reasons and
// character timing, DeviceWatch (a by-id style symlink recreated to a new
// pty, directories that appear later, no CPU while waiting) and what the
// kernel reports on an unplug (the pty's master closing).
//
// Under qemu-user (the arm64/armhf test stage) TCGETS2/TCSETS2 answer ENOSYS
// and the library falls back to TCGETS/TCSETS: the cases that need termios2
// (250000, 31250: BOTHER) then check the refusal instead, and so do those
// qemu's TCSETS loses (rates above 460800, mark/space parity), each saying
// so on a "# " line; classic_fallback_forced runs the fallback on any kernel.
//
// This file includes <asm/termbits.h> for TCGETS2, so never <termios.h>.
#include <asm/termbits.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "serial_helpers.hpp"

#include "gw/device_watch.hpp"
#include "gw/event_loop.hpp"
#include "gw/serial.hpp"
#include "../../lib/src/termios2.hpp"  // compose_line/check_line: what a pty cannot show

namespace {

namespace fs = std::filesystem;
using gwc::Clock;
using gwc::ms_since;

using gwc::open_pty;
using gwc::Pty;
using gwc::TempDir;

// Whether this process has the termios2 ioctls: not under qemu-user, which
// answers TCGETS2 with ENOSYS (the library then falls back to TCGETS/TCSETS
// and refuses rates without a B constant). Probed here with the ioctl
// itself, not through the code under test.
bool have_termios2() {
  static const bool have = [] {
    gwc::Pty pty = gwc::open_pty();
    struct termios2 t;
    if (ioctl(pty.master.get(), TCGETS2, &t) == 0) return true;
    assert_int_equal(errno, ENOSYS);  // anything else is not "ioctl unknown"
    std::printf("# TCGETS2: %s (qemu-user?): rates without a B constant are checked to be refused\n",
                std::strerror(errno));
    return false;
  }();
  return have;
}

// The rates of the B constants, for reading back with the classic TCGETS.
uint32_t rate_of_code(tcflag_t code) {
  static const struct {
    tcflag_t code;
    uint32_t rate;
  } rows[] = {{B50, 50},           {B75, 75},           {B110, 110},         {B134, 134},         {B150, 150},
              {B200, 200},         {B300, 300},         {B600, 600},         {B1200, 1200},       {B1800, 1800},
              {B2400, 2400},       {B4800, 4800},       {B9600, 9600},       {B19200, 19200},     {B38400, 38400},
              {B57600, 57600},     {B115200, 115200},   {B230400, 230400},   {B460800, 460800},   {B500000, 500000},
              {B576000, 576000},   {B921600, 921600},   {B1000000, 1000000}, {B1152000, 1152000}, {B1500000, 1500000},
              {B2000000, 2000000}, {B2500000, 2500000}, {B3000000, 3000000}, {B3500000, 3500000}, {B4000000, 4000000}};
  for (const auto &row : rows) {
    if (row.code == code) return row.rate;
  }
  return 0;
}

// The line as the kernel holds it: TCGETS2, or where it is missing (qemu)
// the kernel's struct termios by TCGETS with the speeds filled in from the
// B constant (the kernel does the same for TCGETS2 on a B constant).
struct termios2 tcgets2(int fd) {
  struct termios2 t;
  if (have_termios2()) {
    assert_int_equal(ioctl(fd, TCGETS2, &t), 0);
    return t;
  }
  struct termios old;
  assert_int_equal(ioctl(fd, TCGETS, &old), 0);
  std::memset(&t, 0, sizeof t);
  t.c_iflag = old.c_iflag;
  t.c_oflag = old.c_oflag;
  t.c_cflag = old.c_cflag;
  t.c_lflag = old.c_lflag;
  t.c_line = old.c_line;
  std::memcpy(t.c_cc, old.c_cc, sizeof old.c_cc);
  t.c_ospeed = t.c_ispeed = rate_of_code(old.c_cflag & CBAUD);
  return t;
}

// Without termios2 (qemu-user), whether the classic TCSETS carries the
// `mask` bits `bits` to the kernel: qemu-user 7.2 translates B0 to B460800
// only (a higher B constant arrives as B0) and drops CMSPAR. Probed on a
// scratch pty with the ioctls themselves, not through the code under test.
bool classic_keeps(tcflag_t bits, tcflag_t mask) {
  gwc::Pty pty = gwc::open_pty();
  struct termios t;
  assert_int_equal(ioctl(pty.master.get(), TCGETS, &t), 0);
  t.c_cflag = (t.c_cflag & ~mask) | bits;
  assert_int_equal(ioctl(pty.master.get(), TCSETS, &t), 0);
  assert_int_equal(ioctl(pty.master.get(), TCGETS, &t), 0);
  return (t.c_cflag & mask) == bits;
}

// The settings of `fd` are what they were (`before`, from tcgets2()).
void assert_line_unchanged(int fd, const struct termios2 &before) {
  const struct termios2 now = tcgets2(fd);
  assert_int_equal(now.c_cflag, before.c_cflag);
  assert_int_equal(now.c_iflag, before.c_iflag);
  assert_int_equal(now.c_oflag, before.c_oflag);
  assert_int_equal(now.c_lflag, before.c_lflag);
  assert_int_equal(now.c_ospeed, before.c_ospeed);
  assert_int_equal(now.c_ispeed, before.c_ispeed);
  assert_memory_equal(now.c_cc, before.c_cc, sizeof before.c_cc);
}

std::string read_file(const std::string &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string lock_text(pid_t pid) {
  char text[32];
  std::snprintf(text, sizeof text, "%10d\n", static_cast<int>(pid));
  return text;
}

std::string lock_file(const TempDir &locks, const std::string &device) {
  return locks / ("LCK.." + device.substr(device.rfind('/') + 1));
}

gw::SerialOpenOptions locks_in(const TempDir &dir) {
  gw::SerialOpenOptions options;
  options.lock_dir = dir.path;
  return options;
}

gw::SerialSettings line(uint32_t baud, int data_bits, gw::Parity parity, int stop_bits,
                        gw::FlowControl flow = gw::FlowControl::none) {
  gw::SerialSettings s;
  s.baud = baud;
  s.data_bits = data_bits;
  s.parity = parity;
  s.stop_bits = stop_bits;
  s.flow_control = flow;
  return s;
}

void assert_contains(const std::string &text, const std::string &part) {
  if (text.find(part) == std::string::npos) fail_msg("\"%s\" does not contain \"%s\"", text.c_str(), part.c_str());
}

// ---------------------------------------------------------------------------
// Line settings

struct LineCase {
  gw::SerialSettings settings;
  tcflag_t cbaud;  // the B constant expected, or BOTHER
  tcflag_t csize;
  tcflag_t parity;  // PARENB | PARODD | CMSPAR as expected
};

using P = gw::Parity;
using F = gw::FlowControl;
const LineCase line_cases[] = {
    {line(9600, 8, P::none, 1), B9600, CS8, 0},
    {line(115200, 8, P::none, 1), B115200, CS8, 0},
    {line(250000, 8, P::none, 1), BOTHER, CS8, 0},  // no B constant: BOTHER and c_ospeed
    {line(31250, 8, P::none, 1), BOTHER, CS8, 0},   // MIDI
    {line(50, 8, P::none, 1), B50, CS8, 0},
    {line(4000000, 8, P::none, 1), B4000000, CS8, 0},
    {line(9600, 7, P::even, 1), B9600, CS7, PARENB},
    {line(19200, 8, P::odd, 1), B19200, CS8, PARENB | PARODD},
    {line(9600, 8, P::none, 2), B9600, CS8, 0},
    {line(9600, 8, P::mark, 1), B9600, CS8, PARENB | PARODD | CMSPAR},
    {line(9600, 8, P::space, 1), B9600, CS8, PARENB | CMSPAR},
    {line(1200, 5, P::none, 2), B1200, CS5, 0},
    {line(2400, 6, P::even, 1), B2400, CS6, PARENB},
    {line(115200, 8, P::none, 1, F::rtscts), B115200, CS8, 0},
    {line(57600, 8, P::none, 1, F::xonxoff), B57600, CS8, 0},
};

void check_flags(const struct termios2 &t, const LineCase &c, tcflag_t csize, tcflag_t parity) {
  assert_int_equal(t.c_cflag & CBAUD, c.cbaud);
  assert_int_equal(t.c_ospeed, c.settings.baud);
  assert_int_equal(t.c_ispeed, c.settings.baud);
  assert_int_equal(t.c_cflag & CIBAUD, 0);  // input at the output rate
  assert_int_equal(t.c_cflag & CSIZE, csize);
  assert_int_equal(t.c_cflag & (PARENB | PARODD | CMSPAR), parity);
  assert_int_equal(!!(t.c_cflag & CSTOPB), c.settings.stop_bits == 2);
  assert_int_equal(!!(t.c_cflag & CRTSCTS), c.settings.flow_control == gw::FlowControl::rtscts);
  const bool xonxoff = c.settings.flow_control == gw::FlowControl::xonxoff;
  assert_int_equal(t.c_iflag & (IXON | IXOFF), xonxoff ? (IXON | IXOFF) : 0);
  // Raw mode: no line editing, echo, signals or output processing.
  assert_int_equal(t.c_lflag & (ICANON | ECHO | ISIG | IEXTEN), 0);
  assert_int_equal(t.c_oflag & OPOST, 0);
  assert_int_equal(t.c_iflag & (ICRNL | INLCR | IGNCR | ISTRIP | INPCK), 0);
  assert_int_equal(t.c_cflag & (CREAD | CLOCAL), CREAD | CLOCAL);
  assert_int_equal(t.c_cc[VMIN], 1);
  assert_int_equal(t.c_cc[VTIME], 0);
}

// What the kernel holds after open, read with TCGETS2 on the port's fd. The
// pty driver forces CS8 and clears PARENB (pty_set_termios); it keeps
// everything else, PARODD and CMSPAR included, so even/odd/mark/space still
// show. compose_requests_every_flag checks what is asked of a UART.
//
// `classic`: the library sets lines with TCGETS/TCSETS (qemu-user, or
// forced by a test): a rate without a B constant must then be refused with
// -ENOTSUP, a reason naming it, and the line left as it was.
void check_refused_without_termios2(const LineCase &c) {
  TempDir locks;
  Pty pty = open_pty();
  const struct termios2 before = tcgets2(pty.master.get());
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, c.settings, locks_in(locks), why), -ENOTSUP);
  assert_null(port.get());
  const std::string baud = std::to_string(c.settings.baud);
  assert_string_equal(why.c_str(), ("cannot set " + c.settings.summary() + " on " + pty.slave + ": baud " + baud +
                                    " needs termios2 (TCSETS2), which this system does not provide (qemu-user?): "
                                    "use a standard rate (50 to 4000000 with a B constant, such as 115200 or "
                                    "230400)")
                                       .c_str());
  assert_line_unchanged(pty.master.get(), before);
  assert_false(fs::exists(lock_file(locks, pty.slave)));
  std::printf("# %s: refused without termios2, as it must be: %s\n", c.settings.summary().c_str(), why.c_str());
}

// Without termios2 under qemu-user: a setting its TCSETS loses (a rate
// above 460800, mark or space parity) is refused on reading back, saying
// where it may have been lost, and the line is put back.
void check_lost_by_classic_tcsets(const LineCase &c) {
  TempDir locks;
  Pty pty = open_pty();
  const struct termios2 before = tcgets2(pty.master.get());
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, c.settings, locks_in(locks), why), -EINVAL);
  assert_contains(why, "the driver of " + pty.slave + " did not take ");
  assert_contains(why,
                  "(set with the classic TCSETS, this system lacking termios2: qemu-user's TCSETS carries no "
                  "rate above 460800 and no mark or space parity)");
  assert_line_unchanged(pty.master.get(), before);
  std::printf("# %s: lost by this system's TCSETS (checked on a scratch pty), refused as it must be: %s\n",
              c.settings.summary().c_str(), why.c_str());
}

void check_case(const LineCase &c, bool classic) {
  if (classic && c.cbaud == BOTHER) return check_refused_without_termios2(c);
  if (!have_termios2() && !classic_keeps(c.cbaud | (c.parity & CMSPAR), CBAUD | CMSPAR))
    return check_lost_by_classic_tcsets(c);
  TempDir locks;
  Pty pty = open_pty();
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  int rc = gw::SerialPort::open(port, pty.slave, c.settings, locks_in(locks), why);
  if (rc != 0) fail_msg("open %s: %d %s", c.settings.summary().c_str(), rc, why.c_str());
  assert_true(port->is_pseudo_terminal());
  check_flags(tcgets2(port->fd()), c, CS8, c.parity & (PARODD | CMSPAR));
  // read_settings() reports what the kernel holds.
  gw::SerialSettings back;
  assert_int_equal(port->read_settings(back, why), 0);
  assert_int_equal(back.baud, c.settings.baud);
  assert_int_equal(back.data_bits, 8);
  assert_int_equal(static_cast<int>(back.parity), static_cast<int>(gw::Parity::none));
  assert_int_equal(back.stop_bits, c.settings.stop_bits);
  assert_int_equal(static_cast<int>(back.flow_control), static_cast<int>(c.settings.flow_control));
  assert_false(back.dtr.has_value());  // a pty has no modem lines
  assert_false(back.rs485.enabled);
}

void line_settings_read_back_with_tcgets2(void **) {
  for (const auto &c : line_cases) check_case(c, !have_termios2());
}

// The fallback itself, on any kernel: forced as if TCGETS2 were unknown, the
// standard rates are set (and read back here with TCGETS2 where it exists:
// what TCSETS set is what the kernel holds), the others refused with the
// reason, and a port's settings are restored at close through TCSETS.
void classic_fallback_forced(void **) {
  gw::tty::force_classic_for_tests(true);
  assert_false(gw::tty::termios2_in_use());
  for (const auto &c : line_cases) check_case(c, true);
  // Restored at close through the path they were read with.
  TempDir locks;
  Pty pty = open_pty();
  gw::Fd observer(open(pty.slave.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  assert_true(observer.get() >= 0);
  const struct termios2 before = tcgets2(observer.get());
  std::string why;
  {
    std::unique_ptr<gw::SerialPort> port;
    gw::SerialSettings s = line(230400, 7, gw::Parity::odd, 2, gw::FlowControl::rtscts);
    assert_int_equal(gw::SerialPort::open(port, pty.slave, s, locks_in(locks), why), 0);
    const struct termios2 during = tcgets2(observer.get());
    assert_int_equal(during.c_cflag & CBAUD, B230400);
    assert_int_equal(during.c_ospeed, 230400);
    assert_int_equal(during.c_lflag & ICANON, 0);
    // A run-time change to a rate the fallback cannot set: refused, nothing changed.
    s.baud = 250000;
    assert_int_equal(port->set_settings(s, why), -ENOTSUP);
    assert_contains(why, "baud 250000 needs termios2 (TCSETS2)");
    assert_line_unchanged(observer.get(), during);
    assert_int_equal(port->settings().baud, 230400);
    gw::SerialSettings back;
    assert_int_equal(port->read_settings(back, why), 0);
    assert_int_equal(back.baud, 230400);
    assert_int_equal(back.stop_bits, 2);
  }
  assert_line_unchanged(observer.get(), before);
  // A state read with TCGETS says so, and is put back with TCSETS.
  gw::tty::LineState state;
  assert_int_equal(gw::tty::save_line(pty.master.get(), state), 0);
  assert_true(state.classic);
  gw::tty::force_classic_for_tests(false);
  if (have_termios2()) {
    assert_int_equal(gw::tty::save_line(pty.master.get(), state), 0);
    assert_false(state.classic);
    assert_true(gw::tty::termios2_in_use());
  }
}

struct termios2 composed(const LineCase &c, int fd) {
  gw::tty::LineState state;
  assert_int_equal(gw::tty::save_line(fd, state), 0);
  gw::tty::compose_line(state, c.settings);
  struct termios2 t;
  std::memcpy(&t, state.bytes, sizeof t);
  return t;
}

void compose_requests_every_flag(void **) {
  Pty pty = open_pty();
  for (const auto &c : line_cases) check_flags(composed(c, pty.master.get()), c, c.csize, c.parity);
}

// The driver's answer is checked: a rate off by more than 2% and any other
// dropped setting is refused by name. Only a pty may drop CSIZE and PARENB.
void driver_refusals_are_named(void **) {
  Pty pty = open_pty();
  const LineCase c = {line(250000, 7, P::mark, 2, F::rtscts), BOTHER, CS7, PARENB | PARODD | CMSPAR};
  const struct termios2 asked = composed(c, pty.master.get());
  struct Refusal {
    void (*change)(struct termios2 &);
    const char *reason;  // nullptr: accepted on a UART too
    bool pty_accepts;
  };
  const Refusal refusals[] = {
      {[](struct termios2 &t) { t.c_ospeed = 230400; }, "did not take baud 250000: it set 230400", false},
      {[](struct termios2 &t) { t.c_ospeed = 246000; }, nullptr, true},  // 1.6%: a clock divider's rounding
      {[](struct termios2 &t) { t.c_cflag = (t.c_cflag & ~CSIZE) | CS8; }, "did not take data_bits 7", true},
      {[](struct termios2 &t) { t.c_cflag &= ~PARENB; }, "did not take parity mark", true},
      {[](struct termios2 &t) { t.c_cflag &= ~CMSPAR; }, "did not take parity mark", false},
      {[](struct termios2 &t) { t.c_cflag &= ~CSTOPB; }, "did not take stop_bits 2", false},
      {[](struct termios2 &t) { t.c_cflag &= ~CRTSCTS; }, "did not take flow_control rtscts", false},
  };
  gw::tty::LineState asked_state, got_state;
  std::memcpy(asked_state.bytes, &asked, sizeof asked);
  for (const auto &r : refusals) {
    struct termios2 got = asked;
    r.change(got);
    std::memcpy(got_state.bytes, &got, sizeof got);
    std::string why;
    const int uart = gw::tty::check_line(asked_state, got_state, c.settings, false, "/dev/ttyS9", why);
    if (r.reason) {
      assert_int_equal(uart, -EINVAL);
      assert_string_equal(why.c_str(), (std::string("the driver of /dev/ttyS9 ") + r.reason).c_str());
    } else {
      assert_int_equal(uart, 0);
    }
    assert_int_equal(gw::tty::check_line(asked_state, got_state, c.settings, true, "/dev/pts/9", why),
                     r.pty_accepts ? 0 : -EINVAL);
  }
}

void settings_restored_after_close(void **) {
  TempDir locks;
  Pty pty = open_pty();
  // A second fd on the slave watches the tty's settings across the port's life.
  gw::Fd observer(open(pty.slave.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  assert_true(observer.get() >= 0);
  const struct termios2 before = tcgets2(observer.get());
  assert_true(before.c_lflag & ICANON);  // a fresh pty is in canonical mode
  std::string why;
  {
    std::unique_ptr<gw::SerialPort> port;
    // 250000 takes BOTHER, which needs termios2; without it (qemu) the
    // refusal is checked by line_settings_read_back_with_tcgets2, and the
    // restore is checked here from a standard rate.
    const uint32_t rate = have_termios2() ? 250000 : 230400;
    if (!have_termios2()) std::printf("# no termios2: settings restored from 230400 rather than 250000\n");
    gw::SerialSettings s = line(rate, 7, gw::Parity::odd, 2, gw::FlowControl::rtscts);
    assert_int_equal(gw::SerialPort::open(port, pty.slave, s, locks_in(locks), why), 0);
    const struct termios2 during = tcgets2(observer.get());
    assert_int_equal(during.c_ospeed, rate);
    assert_int_equal(during.c_lflag & ICANON, 0);
    assert_int_equal(during.c_cflag & (CSTOPB | CRTSCTS | PARODD | CMSPAR), CSTOPB | CRTSCTS | PARODD);
    // set_settings() at run time, read back from the kernel. Mark parity
    // (CMSPAR) does not pass qemu-user's TCSETS: there the refusal is
    // checked, and the change made with odd parity.
    s = line(9600, 8, gw::Parity::mark, 1, gw::FlowControl::xonxoff);
    const bool cmspar = have_termios2() || classic_keeps(CMSPAR, CMSPAR);
    if (!cmspar) {
      assert_int_equal(port->set_settings(s, why), -EINVAL);
      assert_contains(why, "did not take parity mark (set with the classic TCSETS");
      assert_line_unchanged(observer.get(), during);
      std::printf("# this system's TCSETS drops CMSPAR: mark refused, the change made with odd parity\n");
      s.parity = gw::Parity::odd;
    }
    assert_int_equal(port->set_settings(s, why), 0);
    const struct termios2 changed = tcgets2(observer.get());
    assert_int_equal(changed.c_cflag & CBAUD, B9600);
    assert_int_equal(changed.c_cflag & (PARODD | CMSPAR | CRTSCTS),
                     cmspar ? PARODD | CMSPAR : PARODD);  // PARENB: the pty drops it
    assert_int_equal(changed.c_iflag & (IXON | IXOFF), IXON | IXOFF);
    // An invalid change is refused and changes nothing.
    s.baud = 3;
    assert_int_equal(port->set_settings(s, why), -EINVAL);
    assert_int_equal(tcgets2(observer.get()).c_cflag, changed.c_cflag);
    assert_int_equal(port->settings().baud, 9600);
  }
  const struct termios2 after = tcgets2(observer.get());
  assert_int_equal(after.c_cflag, before.c_cflag);
  assert_int_equal(after.c_iflag, before.c_iflag);
  assert_int_equal(after.c_oflag, before.c_oflag);
  assert_int_equal(after.c_lflag, before.c_lflag);
  assert_int_equal(after.c_ospeed, before.c_ospeed);
  assert_int_equal(after.c_ispeed, before.c_ispeed);
  assert_memory_equal(after.c_cc, before.c_cc, sizeof before.c_cc);
}

void raw_bytes_pass_unchanged(void **) {
  TempDir locks;
  Pty pty = open_pty();
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  const gw::SerialSettings settings = line(115200, 8, gw::Parity::none, 1);
  assert_int_equal(gw::SerialPort::open(port, pty.slave, settings, locks_in(locks), why), 0);
  // CR, LF, ^C, ^D, ^S and 0xff: a cooked tty would translate, signal or eat them.
  const unsigned char bytes[] = {'a', '\r', '\n', 0x03, 0x04, 0x13, 0xff, 0x00};
  assert_int_equal(write(pty.master.get(), bytes, sizeof bytes), sizeof bytes);
  unsigned char got[16];
  ssize_t size = -1;
  const auto start = Clock::now();
  while ((size = read(port->fd(), got, sizeof got)) < 0 && errno == EAGAIN && ms_since(start) < 2000) usleep(1000);
  assert_int_equal(size, sizeof bytes);
  assert_memory_equal(got, bytes, sizeof bytes);
  assert_int_equal(write(port->fd(), bytes, sizeof bytes), sizeof bytes);
  size = read(pty.master.get(), got, sizeof got);
  assert_int_equal(size, sizeof bytes);  // no echo, no CR/LF rewriting on the way out
  assert_memory_equal(got, bytes, sizeof bytes);
  size_t pending = 99;
  assert_int_equal(port->output_pending(pending), 0);
  assert_int_equal(pending, 0);
  assert_int_equal(port->flush(gw::FlushQueue::both), 0);
  assert_int_equal(port->check_alive(), 0);
}

// ---------------------------------------------------------------------------
// The lock file

void lock_file_taken_and_released(void **) {
  TempDir locks;
  Pty pty = open_pty();
  const std::string file = lock_file(locks, pty.slave);
  std::string why;
  {
    std::unique_ptr<gw::SerialPort> port;
    // gateway.service runs with UMask=0077; the lock must still be readable
    // by the other programs that honour it.
    const mode_t saved_umask = ::umask(077);
    assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
    ::umask(saved_umask);
    struct stat st;
    assert_int_equal(::stat(file.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_string_equal(read_file(file).c_str(), lock_text(getpid()).c_str());  // "%10d\n": 11 bytes
    assert_int_equal(read_file(file).size(), 11);
    std::unique_ptr<gw::SerialPort> second;
    assert_int_equal(gw::SerialPort::open(second, pty.slave, gw::SerialSettings{}, locks_in(locks), why), -EBUSY);
    assert_null(second.get());
    assert_contains(why, "PID " + std::to_string(getpid()) + " (this process)");
    assert_contains(why, file);
    // No temporary files are left behind in the lock directory.
    int entries = 0;
    for (const auto &entry : fs::directory_iterator(locks.path)) entries += entry.is_regular_file();
    assert_int_equal(entries, 1);
  }
  assert_false(fs::exists(file));
  std::unique_ptr<gw::SerialPort> again;
  assert_int_equal(gw::SerialPort::open(again, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
}

void write_lock(const std::string &file, const std::string &text) {
  std::ofstream out(file);
  out << text;
}

void live_holder_refused_then_stale_taken_over(void **) {
  TempDir locks;
  Pty pty = open_pty();
  const std::string file = lock_file(locks, pty.slave);
  const pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  write_lock(file, lock_text(child));
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  const int busy = gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why);
  kill(child, SIGKILL);
  int status = 0;
  assert_int_equal(waitpid(child, &status, 0), child);  // reaped: its PID is dead now
  assert_int_equal(busy, -EBUSY);
  assert_contains(why, "in use by PID " + std::to_string(child) + " ");
  assert_string_equal(read_file(file).c_str(), lock_text(child).c_str());  // the holder's lock is untouched
  // The holder died without removing its lock: stale, taken over.
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
  assert_string_equal(read_file(file).c_str(), lock_text(getpid()).c_str());
  port.reset();
  // A lock that names no PID at all (empty, garbage) is stale too.
  write_lock(file, "garbage\n");
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
  assert_string_equal(read_file(file).c_str(), lock_text(getpid()).c_str());
}

void lock_directory_missing_is_named(void **) {
  Pty pty = open_pty();
  gw::SerialOpenOptions options;
  options.lock_dir = "/nonexistent-gw-lock-dir";
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, options, why), -ENOENT);
  assert_contains(why, "/nonexistent-gw-lock-dir");
  options.lock_dir.clear();  // no lock file at all
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, options, why), 0);
}

// ---------------------------------------------------------------------------
// What a pty cannot do, and paths that are not serial devices

void rs485_and_modem_lines_rejected_on_a_pty(void **) {
  TempDir locks;
  Pty pty = open_pty();
  gw::Fd observer(open(pty.slave.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  const struct termios2 before = tcgets2(observer.get());
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  gw::SerialSettings s;
  s.rs485.enabled = true;
  s.rs485.delay_before_send_ms = 2;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, s, locks_in(locks), why), -ENOTSUP);
  assert_null(port.get());
  // qemu-user 7.2 does not translate TIOCSRS485 (ENOSYS where a kernel says
  // ENOTTY): the system, not the driver, is named then.
  unsigned char rs485_probe[64] = {};  // a struct serial_rs485 and then some
  const bool rs485_ioctl_known = ioctl(observer.get(), TIOCSRS485, rs485_probe) < 0 && errno != ENOSYS;
  if (rs485_ioctl_known) {
    assert_contains(why, "the driver of " + pty.slave + " has no RS-485 support (TIOCSRS485: ");
  } else {
    assert_string_equal(why.c_str(), ("RS-485 cannot be set on " + pty.slave +
                                      ": this system does not implement TIOCSRS485 (Function not implemented; "
                                      "qemu-user?): run natively, or set rs485 = false")
                                         .c_str());
    std::printf("# TIOCSRS485: Function not implemented here (qemu-user?): the refusal names the system\n");
  }
  // The failed open left nothing behind: settings back, lock gone.
  assert_int_equal(tcgets2(observer.get()).c_lflag, before.c_lflag);
  assert_int_equal(tcgets2(observer.get()).c_cflag, before.c_cflag);
  assert_false(fs::exists(lock_file(locks, pty.slave)));

  s = gw::SerialSettings{};
  s.dtr = true;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, s, locks_in(locks), why), -ENOTSUP);
  assert_contains(why, "the driver of " + pty.slave + " has no modem control lines");
  // Without them the port opens; the setters say what the pty lacks.
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
  gw::ModemLines lines;
  assert_int_equal(port->modem_lines(lines), -ENOTSUP);
  assert_int_equal(port->set_modem_lines(std::nullopt, false), -ENOTSUP);
  // A pty accepts and ignores a break; qemu-user 7.2 translates neither
  // TIOCSBRK nor TIOCCBRK, and the ENOSYS is passed on as it is.
  const int break_rc = ioctl(pty.master.get(), TIOCCBRK) < 0 ? -errno : 0;
  if (break_rc == -ENOSYS)
    std::printf("# TIOCSBRK/TIOCCBRK: Function not implemented here (qemu-user?)\n");
  else
    assert_int_equal(break_rc, 0);
  assert_int_equal(port->set_break(true), break_rc);
  assert_int_equal(port->set_break(false), break_rc);
  assert_int_equal(port->send_break(10), break_rc);
  assert_int_equal(port->send_break(0), -EINVAL);
  s.dtr.reset();
  s.rs485.enabled = true;
  assert_int_equal(port->set_settings(s, why), -ENOTSUP);
  assert_false(port->settings().rs485.enabled);
}

void paths_that_are_not_serial_devices(void **) {
  TempDir locks, dir;
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  const std::string missing = dir / "ttyUSB9";
  assert_int_equal(gw::SerialPort::open(port, missing, gw::SerialSettings{}, locks_in(locks), why), -ENOENT);
  assert_contains(why, "serial device " + missing + ": No such file or directory (is it plugged in?");
  // A dangling by-id style symlink is as missing as its target.
  assert_int_equal(symlink((dir / "gone").c_str(), (dir / "usb-link").c_str()), 0);
  assert_int_equal(gw::SerialPort::open(port, dir / "usb-link", gw::SerialSettings{}, locks_in(locks), why), -ENOENT);
  assert_contains(why, dir / "usb-link");
  write_lock(dir / "file", "x");
  assert_int_equal(gw::SerialPort::open(port, dir / "file", gw::SerialSettings{}, locks_in(locks), why), -ENOTTY);
  assert_contains(why, "is not a character device");
  // A character device that is not a tty; its lock is given back.
  assert_int_equal(gw::SerialPort::open(port, "/dev/null", gw::SerialSettings{}, locks_in(locks), why), -ENOTTY);
  assert_contains(why, "/dev/null is not a terminal device");
  assert_false(fs::exists(locks / "LCK..null"));
  assert_null(port.get());
}

void symlink_followed_on_every_open(void **) {
  TempDir locks, dir;
  Pty first = open_pty(), second = open_pty();
  const std::string link = dir / "usb-FTDI_FT232R-if00-port0";
  assert_int_equal(symlink(first.slave.c_str(), link.c_str()), 0);
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, link, gw::SerialSettings{}, locks_in(locks), why), 0);
  assert_string_equal(port->path().c_str(), link.c_str());
  assert_string_equal(port->device().c_str(), first.slave.c_str());
  assert_true(fs::exists(lock_file(locks, first.slave)));  // the lock names the device, not the link
  port.reset();
  assert_int_equal(unlink(link.c_str()), 0);
  assert_int_equal(symlink(second.slave.c_str(), link.c_str()), 0);
  assert_int_equal(gw::SerialPort::open(port, link, gw::SerialSettings{}, locks_in(locks), why), 0);
  assert_string_equal(port->device().c_str(), second.slave.c_str());
}

// ---------------------------------------------------------------------------
// SerialSettings on its own

void validate_gives_reasons(void **) {
  struct Case {
    gw::SerialSettings settings;
    const char *reason;
  };
  std::vector<Case> cases;
  auto add = [&](auto change, const char *reason) {
    gw::SerialSettings s;
    change(s);
    cases.push_back({s, reason});
  };
  add([](auto &s) { s.baud = 3; }, "baud 3 is out of range (50 to 4000000)");
  add([](auto &s) { s.baud = 4000001; }, "baud 4000001 is out of range (50 to 4000000)");
  add([](auto &s) { s.data_bits = 9; }, "data_bits 9 is out of range (5 to 8)");
  add([](auto &s) { s.data_bits = 4; }, "data_bits 4 is out of range (5 to 8)");
  add([](auto &s) { s.stop_bits = 3; }, "stop_bits 3 is out of range (1 or 2)");
  add([](auto &s) { s.stop_bits = 0; }, "stop_bits 0 is out of range (1 or 2)");
  add([](auto &s) { s.parity = static_cast<gw::Parity>(7); }, "parity 7 is not one of none, even, odd, mark, space");
  add([](auto &s) { s.flow_control = static_cast<gw::FlowControl>(9); },
      "flow_control 9 is not one of none, rtscts, xonxoff");
  add([](auto &s) { s.rs485.enabled = true, s.rs485.delay_before_send_ms = 101; },
      "rs485 delay_before_send 101 ms is out of range (0 to 100 ms, the kernel's limit)");
  add([](auto &s) { s.rs485.enabled = true, s.rs485.delay_after_send_ms = 1000; },
      "rs485 delay_after_send 1000 ms is out of range (0 to 100 ms, the kernel's limit)");
  add([](auto &s) { s.rs485.enabled = true, s.rs485.rts_after_send = true; },
      "rs485 rts_on_send and rts_after_send are both high: RTS would never switch the transceiver's direction; "
      "set one of them to the other level");
  add([](auto &s) { s.rs485.enabled = true, s.flow_control = gw::FlowControl::rtscts; },
      "rs485 and flow_control rtscts both need RTS: use flow_control none or xonxoff with rs485");
  add([](auto &s) { s.rs485.enabled = true, s.rts = true; },
      "rts cannot be set while rs485 is enabled: the driver drives RTS; remove the rts setting");
  add([](auto &s) { s.flow_control = gw::FlowControl::rtscts, s.rts = false; },
      "rts cannot be set with flow_control rtscts: the driver drives RTS; remove the rts setting");
  for (const auto &c : cases) {
    std::string why;
    assert_int_equal(c.settings.validate(why), -EINVAL);
    assert_string_equal(why.c_str(), c.reason);
  }
  // The edges of each range are valid; disabled RS-485 settings are not checked.
  const gw::SerialSettings good[] = {line(50, 5, gw::Parity::space, 2), line(4000000, 8, gw::Parity::mark, 1)};
  for (const auto &s : good) {
    std::string why = "untouched";
    assert_int_equal(s.validate(why), 0);
    assert_string_equal(why.c_str(), "untouched");
  }
  gw::SerialSettings off;
  off.rs485.delay_after_send_ms = 5000;
  std::string why;
  assert_int_equal(off.validate(why), 0);
  // open() says which device the bad value was for.
  TempDir locks;
  std::unique_ptr<gw::SerialPort> port;
  assert_int_equal(gw::SerialPort::open(port, "/dev/ttyS0", cases[0].settings, locks_in(locks), why), -EINVAL);
  assert_string_equal(why.c_str(), "serial device /dev/ttyS0: baud 3 is out of range (50 to 4000000)");
}

void char_time_values(void **) {
  struct Case {
    gw::SerialSettings settings;
    uint32_t half_bits, char_us, gap_3_5_us;
    const char *summary;
  };
  const Case cases[] = {
      {line(9600, 8, P::none, 1), 20, 1042, 3646, "9600 8N1"},    // 1041.67 and 3645.83 us
      {line(19200, 8, P::even, 1), 22, 573, 2006, "19200 8E1"},   // 572.92 and 2005.21
      {line(115200, 8, P::none, 1), 20, 87, 304, "115200 8N1"},   // 86.81 and 303.82
      {line(4000000, 8, P::none, 1), 20, 3, 9, "4000000 8N1"},    // 2.5 and 8.75
      {line(50, 5, P::none, 2), 15, 150000, 525000, "50 5N2"},    // 1.5 stop bits: 7.5 bits
      {line(9600, 7, P::odd, 2), 22, 1146, 4011, "9600 7O2"},     // 1145.83 and 4010.42
      {line(1200, 8, P::mark, 2), 24, 10000, 35000, "1200 8M2"},  // exact
  };
  for (const auto &c : cases) {
    assert_int_equal(c.settings.half_bits_per_char(), c.half_bits);
    assert_int_equal(c.settings.char_time_us(), c.char_us);
    assert_int_equal(c.settings.gap_3_5_chars_us(), c.gap_3_5_us);
    assert_int_equal(c.settings.chars_time_us(35), c.gap_3_5_us);
    assert_string_equal(c.settings.summary().c_str(), c.summary);
  }
  gw::SerialSettings s = line(250000, 8, P::space, 1, gw::FlowControl::xonxoff);
  s.rs485.enabled = true;
  assert_string_equal(s.summary().c_str(), "250000 8S1 xonxoff rs485");
  assert_int_equal(s.chars_time_us(0), 0);
}

void name_tables_round_trip(void **) {
  for (const auto &row : gw::parity_names) {
    gw::Parity value = gw::Parity::none;
    assert_true(gw::enum_from_name(gw::parity_names, row.name, value));
    assert_int_equal(static_cast<int>(value), static_cast<int>(row.value));
    assert_string_equal(gw::parity_name(row.value), row.name);
  }
  for (const auto &row : gw::flow_control_names) {
    gw::FlowControl value = gw::FlowControl::none;
    assert_true(gw::enum_from_name(gw::flow_control_names, row.name, value));
    assert_int_equal(static_cast<int>(value), static_cast<int>(row.value));
    assert_string_equal(gw::flow_control_name(row.value), row.name);
  }
  assert_int_equal(sizeof gw::parity_names / sizeof gw::parity_names[0], 5);
  assert_int_equal(sizeof gw::flow_control_names / sizeof gw::flow_control_names[0], 3);
  gw::Parity parity = gw::Parity::odd;
  assert_false(gw::enum_from_name(gw::parity_names, "evne", parity));
  assert_false(gw::enum_from_name(gw::parity_names, "Even", parity));
  assert_int_equal(static_cast<int>(parity), static_cast<int>(gw::Parity::odd));
  assert_string_equal(gw::parity_name(static_cast<gw::Parity>(42)), "?");
}

// ---------------------------------------------------------------------------
// DeviceWatch

struct WatchFixture {
  std::unique_ptr<gw::EventLoop> loop;
  std::unique_ptr<gw::DeviceWatch> watch;
  int calls = 0;
  WatchFixture(const std::string &path) {
    assert_int_equal(gw::EventLoop::create(loop), 0);
    std::string why;
    assert_int_equal(gw::DeviceWatch::create(
                         watch, *loop, path, [this] { ++calls; }, why),
                     0);
  }
  // Dispatches until the callback has run `count` times (or 2 s).
  void run_until(int count) {
    const auto start = Clock::now();
    while (calls < count && ms_since(start) < 2000) loop->dispatch(50);
  }
  void run_for(int ms) {
    const auto start = Clock::now();
    while (ms_since(start) < ms) loop->dispatch(static_cast<int>(ms - ms_since(start)) + 1);
  }
};

void device_watch_follows_a_recreated_symlink(void **) {
  TempDir locks, dir;
  const std::string link = dir / "usb-Gateway_Test-if00-port0";
  Pty first = open_pty();
  assert_int_equal(symlink(first.slave.c_str(), link.c_str()), 0);
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, link, gw::SerialSettings{}, locks_in(locks), why), 0);
  WatchFixture f(link);
  // The node the port has open does not count: still there, no call.
  assert_int_equal(f.watch->start_after(port->node(), why), 0);
  f.run_for(100);
  assert_int_equal(f.calls, 0);
  const std::vector<std::string> watched = f.watch->watched_directories();
  assert_int_equal(watched.size(), 2);  // the link's directory and /dev/pts
  // Unplug: the far end closes, the port goes, udev removes the link.
  first.master.reset();
  port.reset();
  assert_int_equal(unlink(link.c_str()), 0);
  f.run_for(50);
  assert_int_equal(f.calls, 0);
  // Replug under another pty; the link comes back pointing at it, the way
  // udev makes it: a temporary link renamed into place.
  Pty second = open_pty();
  f.run_for(50);
  assert_int_equal(f.calls, 0);  // a new pty without the link is not the device
  assert_int_equal(symlink(second.slave.c_str(), (dir / ".tmp-link").c_str()), 0);
  assert_int_equal(rename((dir / ".tmp-link").c_str(), link.c_str()), 0);
  f.run_until(1);
  assert_int_equal(f.calls, 1);
  assert_false(f.watch->armed());
  assert_int_equal(f.watch->watched_directories().size(), 0);
  assert_int_equal(gw::SerialPort::open(port, link, gw::SerialSettings{}, locks_in(locks), why), 0);
  assert_string_equal(port->device().c_str(), second.slave.c_str());
  // Once: nothing more comes, even as the link changes again.
  assert_int_equal(unlink(link.c_str()), 0);
  assert_int_equal(symlink(second.slave.c_str(), link.c_str()), 0);
  f.run_for(200);
  assert_int_equal(f.calls, 1);
  // start() with the device there calls back from the loop, not from start().
  assert_int_equal(f.watch->start(why), 0);
  assert_int_equal(f.calls, 1);
  f.run_until(2);
  assert_int_equal(f.calls, 2);
}

void device_watch_waits_for_missing_directories(void **) {
  TempDir dir;
  const std::string by_id = dir / "serial/by-id";
  const std::string path = by_id + "/usb-late";
  WatchFixture f(path);
  std::string why;
  assert_int_equal(f.watch->start(why), 0);
  std::vector<std::string> watched = f.watch->watched_directories();
  assert_int_equal(watched.size(), 1);
  assert_string_equal(watched[0].c_str(), dir.path.c_str());  // the nearest existing parent
  f.run_for(50);
  assert_int_equal(f.calls, 0);
  assert_int_equal(mkdir((dir / "serial").c_str(), 0755), 0);
  f.run_for(50);
  watched = f.watch->watched_directories();
  assert_int_equal(watched.size(), 1);
  assert_string_equal(watched[0].c_str(), (dir / "serial").c_str());
  assert_int_equal(mkdir(by_id.c_str(), 0755), 0);
  // Noise in the watched directory does not count.
  write_lock(by_id + "/unrelated", "x");
  f.run_for(50);
  assert_int_equal(f.calls, 0);
  // A link to a device that does not exist yet is not enough either.
  assert_int_equal(symlink("/dev/pts/gw-no-such-pty", path.c_str()), 0);
  f.run_for(50);
  assert_int_equal(f.calls, 0);
  assert_int_equal(unlink(path.c_str()), 0);
  Pty pty = open_pty();
  assert_int_equal(symlink(pty.slave.c_str(), path.c_str()), 0);
  f.run_until(1);
  assert_int_equal(f.calls, 1);
  f.run_for(100);
  assert_int_equal(f.calls, 1);
  // udev removes /dev/serial/by-id with the last adapter: the watch falls
  // back to the nearest parent left and follows the tree as it comes back.
  struct stat st;
  assert_int_equal(stat(pty.slave.c_str(), &st), 0);
  gw::DeviceNode gone;
  gone.dev = st.st_dev, gone.ino = st.st_ino, gone.rdev = st.st_rdev;
  gone.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  assert_int_equal(f.watch->start_after(gone, why), 0);
  f.run_for(50);
  assert_int_equal(f.calls, 1);  // the node it was given does not count
  assert_int_equal(unlink(path.c_str()), 0);
  assert_int_equal(unlink((by_id + "/unrelated").c_str()), 0);
  assert_int_equal(rmdir(by_id.c_str()), 0);
  assert_int_equal(rmdir((dir / "serial").c_str()), 0);
  f.run_for(50);
  watched = f.watch->watched_directories();
  assert_int_equal(watched.size(), 1);
  assert_string_equal(watched[0].c_str(), dir.path.c_str());
  assert_int_equal(f.calls, 1);
  assert_int_equal(mkdir((dir / "serial").c_str(), 0755), 0);
  assert_int_equal(mkdir(by_id.c_str(), 0755), 0);
  Pty replugged = open_pty();
  assert_int_equal(symlink(replugged.slave.c_str(), path.c_str()), 0);
  f.run_until(2);
  assert_int_equal(f.calls, 2);
}

double cpu_seconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

void device_watch_spends_no_cpu_while_waiting(void **) {
  TempDir dir;
  WatchFixture f(dir / "by-id/usb-absent");
  std::string why;
  assert_int_equal(f.watch->start(why), 0);
  const double cpu_before = cpu_seconds();
  const auto start = Clock::now();
  const int handled = f.loop->dispatch(300);  // one wait, nothing to wake it
  const long long waited = ms_since(start);
  const double cpu = cpu_seconds() - cpu_before;
  assert_int_equal(handled, 0);
  assert_true(waited >= 290);
  if (cpu > 0.005) fail_msg("%.1f ms of CPU over %lld ms of waiting", cpu * 1000, waited);
  assert_true(f.watch->armed());
  assert_int_equal(f.calls, 0);
}

void device_watch_rejects_relative_paths(void **) {
  std::unique_ptr<gw::EventLoop> loop;
  assert_int_equal(gw::EventLoop::create(loop), 0);
  std::unique_ptr<gw::DeviceWatch> watch;
  std::string why;
  assert_int_equal(gw::DeviceWatch::create(
                       watch, *loop, "ttyUSB0", [] {}, why),
                   -EINVAL);
  assert_contains(why, "\"ttyUSB0\" is not absolute");
}

// ---------------------------------------------------------------------------
// Unplug

void unplug_is_a_hang_up(void **) {
  TempDir locks;
  Pty pty = open_pty();
  std::unique_ptr<gw::SerialPort> port;
  std::string why;
  assert_int_equal(gw::SerialPort::open(port, pty.slave, gw::SerialSettings{}, locks_in(locks), why), 0);
  gw::Fd epoll(epoll_create1(EPOLL_CLOEXEC));
  struct epoll_event interest = {};
  interest.events = EPOLLIN;
  assert_int_equal(epoll_ctl(epoll.get(), EPOLL_CTL_ADD, port->fd(), &interest), 0);
  // Bytes the far end sent just before the unplug, not yet read.
  assert_int_equal(write(pty.master.get(), "ab", 2), 2);
  struct epoll_event ready = {};
  assert_int_equal(epoll_wait(epoll.get(), &ready, 1, 1000), 1);
  assert_int_equal(ready.events, EPOLLIN);
  pty.master.reset();  // the unplug
  // EPOLLIN | EPOLLERR | EPOLLHUP, even though only EPOLLIN was asked for.
  assert_int_equal(epoll_wait(epoll.get(), &ready, 1, 1000), 1);
  assert_int_equal(ready.events, EPOLLIN | EPOLLERR | EPOLLHUP);
  // read() is end of file at once, and for good: the unread bytes are lost.
  char buffer[16];
  assert_int_equal(read(port->fd(), buffer, sizeof buffer), 0);
  assert_int_equal(read(port->fd(), buffer, sizeof buffer), 0);
  errno = 0;
  assert_int_equal(write(port->fd(), "x", 1), -1);
  assert_int_equal(errno, EIO);
  assert_int_equal(port->check_alive(), -EIO);
  size_t pending = 0;
  assert_int_equal(port->output_pending(pending), -EIO);
  // Still level-triggered: the hang-up is reported again on every wait.
  assert_int_equal(epoll_wait(epoll.get(), &ready, 1, 0), 1);
  // The device node is gone; closing the dead port still releases the lock.
  const std::string device = port->device();
  port.reset();
  assert_false(fs::exists(lock_file(locks, device)));
  assert_true(gw::SerialPort::open(port, device, gw::SerialSettings{}, locks_in(locks), why) < 0);
  assert_null(port.get());
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(line_settings_read_back_with_tcgets2),
      cmocka_unit_test(classic_fallback_forced),
      cmocka_unit_test(compose_requests_every_flag),
      cmocka_unit_test(driver_refusals_are_named),
      cmocka_unit_test(settings_restored_after_close),
      cmocka_unit_test(raw_bytes_pass_unchanged),
      cmocka_unit_test(lock_file_taken_and_released),
      cmocka_unit_test(live_holder_refused_then_stale_taken_over),
      cmocka_unit_test(lock_directory_missing_is_named),
      cmocka_unit_test(rs485_and_modem_lines_rejected_on_a_pty),
      cmocka_unit_test(paths_that_are_not_serial_devices),
      cmocka_unit_test(symlink_followed_on_every_open),
      cmocka_unit_test(validate_gives_reasons),
      cmocka_unit_test(char_time_values),
      cmocka_unit_test(name_tables_round_trip),
      cmocka_unit_test(device_watch_follows_a_recreated_symlink),
      cmocka_unit_test(device_watch_waits_for_missing_directories),
      cmocka_unit_test(device_watch_spends_no_cpu_while_waiting),
      cmocka_unit_test(device_watch_rejects_relative_paths),
      cmocka_unit_test(unplug_is_a_hang_up),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
