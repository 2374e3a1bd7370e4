// SPDX-License-Identifier: MIT
// termios2 line settings, with the classic TCGETS/TCSETS as a fallback where
// the termios2 ioctls are unknown (qemu-user; see termios2.hpp). This file
// alone includes <asm/termbits.h> (see termios2.hpp); it must never include
// <termios.h>: its struct termios here is the kernel's, not glibc's.
#include "termios2.hpp"

#include <asm/termbits.h>
#include <sys/ioctl.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

namespace gw::tty {
namespace {

static_assert(sizeof(struct termios2) <= sizeof(LineState::bytes), "LineState too small for struct termios2");

struct RateCode {
  uint32_t rate;
  tcflag_t code;
};
// The rates with a B constant. They are set with that constant, so that tools
// reading the old termios (stty, tcgetattr, cfgetospeed) see the right rate;
// any other rate goes through BOTHER and c_ospeed.
constexpr RateCode rate_codes[] = {
    {50, B50},           {75, B75},           {110, B110},         {134, B134},         {150, B150},
    {200, B200},         {300, B300},         {600, B600},         {1200, B1200},       {1800, B1800},
    {2400, B2400},       {4800, B4800},       {9600, B9600},       {19200, B19200},     {38400, B38400},
    {57600, B57600},     {115200, B115200},   {230400, B230400},   {460800, B460800},   {500000, B500000},
    {576000, B576000},   {921600, B921600},   {1000000, B1000000}, {1152000, B1152000}, {1500000, B1500000},
    {2000000, B2000000}, {2500000, B2500000}, {3000000, B3000000}, {3500000, B3500000}, {4000000, B4000000},
};

tcflag_t rate_code(uint32_t rate) {
  for (const auto &row : rate_codes) {
    if (row.rate == rate) return row.code;
  }
  return BOTHER;
}

uint32_t rate_of(const struct termios2 &t) {
  const tcflag_t code = t.c_cflag & CBAUD;
  if (code != BOTHER) {
    for (const auto &row : rate_codes) {
      if (row.code == code) return row.rate;
    }
  }
  return t.c_ospeed;  // the kernel fills it in for B constants too
}

tcflag_t size_flag(int data_bits) {
  switch (data_bits) {
    case 5: return CS5;
    case 6: return CS6;
    case 7: return CS7;
    default: return CS8;
  }
}

tcflag_t parity_flags(Parity parity) {
  switch (parity) {
    case Parity::even: return PARENB;
    case Parity::odd: return PARENB | PARODD;
    case Parity::mark: return PARENB | PARODD | CMSPAR;  // CMSPAR: PARODD picks mark
    case Parity::space: return PARENB | CMSPAR;
    default: return 0;
  }
}

// cfmakeraw()'s flags on a termios2. Input parity checking (INPCK) stays off:
// bytes are passed on as received and the protocol above checks them (Modbus
// CRC); with it on, a byte with a parity error would read as 0.
void make_raw(struct termios2 &t) {
  t.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF | IXANY |
                                      INPCK | IUCLC | IMAXBEL);
  t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
  t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
}

// HUPCL is kept as the device had it: whether closing drops DTR is the
// system's choice (and the saved settings are put back at close anyway).
void set_line(struct termios2 &t, const SerialSettings &s) {
  t.c_cflag &= ~static_cast<tcflag_t>(CBAUD | CIBAUD | CSIZE | PARENB | PARODD | CMSPAR | CSTOPB | CRTSCTS);
  t.c_cflag |= CREAD | CLOCAL | rate_code(s.baud) | size_flag(s.data_bits) | parity_flags(s.parity);
  if (s.stop_bits == 2) t.c_cflag |= CSTOPB;
  if (s.flow_control == FlowControl::rtscts) t.c_cflag |= CRTSCTS;
  if (s.flow_control == FlowControl::xonxoff) {
    t.c_iflag |= IXON | IXOFF;
    t.c_cc[VSTART] = 0x11;
    t.c_cc[VSTOP] = 0x13;
  }
  t.c_ospeed = s.baud;  // CIBAUD 0: input at the output rate
  t.c_ispeed = s.baud;
}

bool rate_close_enough(uint32_t asked, uint32_t got) {
  // A UART tolerates about 2% between the two ends; a driver that rounds
  // within that (a clock divider) is fine, one that picks another rate is not.
  const uint64_t difference = asked > got ? asked - got : got - asked;
  return difference * 50 <= asked;
}

int refused(std::string &why, const std::string &device, const std::string &what) {
  why = "the driver of " + device + " did not take " + what;
  return -EINVAL;
}

int check_termios(const struct termios2 &asked, const struct termios2 &got, const SerialSettings &s,
                  bool pseudo_terminal, const std::string &device, std::string &why) {
  const uint32_t rate = rate_of(got);
  if (!rate_close_enough(s.baud, rate))
    return refused(why, device, "baud " + std::to_string(s.baud) + ": it set " + std::to_string(rate));
  if (!pseudo_terminal && (asked.c_cflag & CSIZE) != (got.c_cflag & CSIZE))
    return refused(why, device, "data_bits " + std::to_string(s.data_bits));
  const tcflag_t parity_mask = pseudo_terminal ? PARODD | CMSPAR : PARENB | PARODD | CMSPAR;
  if ((asked.c_cflag & parity_mask) != (got.c_cflag & parity_mask))
    return refused(why, device, std::string("parity ") + parity_name(s.parity));
  if ((asked.c_cflag & CSTOPB) != (got.c_cflag & CSTOPB))
    return refused(why, device, "stop_bits " + std::to_string(s.stop_bits));
  if ((asked.c_cflag & CRTSCTS) != (got.c_cflag & CRTSCTS) ||
      (asked.c_iflag & (IXON | IXOFF)) != (got.c_iflag & (IXON | IXOFF)))
    return refused(why, device, std::string("flow_control ") + flow_control_name(s.flow_control));
  return 0;
}

int ioctl_errno(int rc) { return rc < 0 ? -errno : 0; }

// ---- Which ioctls: termios2, or the classic fallback (see termios2.hpp).

enum Mode : int { undecided, modern, classic };
std::atomic<int> mode{undecided};
std::atomic<bool> forced_classic{false};

bool use_classic() { return forced_classic.load() || mode.load() == Mode::classic; }

// `rc`, a TCGETS2 failure: does it mean the ioctl itself is unknown? ENOSYS
// always does (qemu-user's answer to an ioctl it does not translate);
// ENOTTY and EINVAL only if the fd answers the classic TCGETS, i.e. it is a
// tty and the termios2 ioctl alone is missing. Any other errno (EBADF, EIO
// on a hung-up tty) is about the fd, not the ioctl.
bool ioctl_unknown(int fd, int rc) {
  if (rc == -ENOSYS) return true;
  if (rc != -ENOTTY && rc != -EINVAL) return false;
  struct termios probe;
  return ::ioctl(fd, TCGETS, &probe) == 0;
}

uint32_t code_rate(tcflag_t code) {
  for (const auto &row : rate_codes) {
    if (row.code == code) return row.rate;
  }
  return 0;  // B0 (hang up), or BOTHER: TCGETS does not carry the rate
}

void from_classic(const struct termios &old, struct termios2 &t) {
  std::memset(&t, 0, sizeof t);
  t.c_iflag = old.c_iflag;
  t.c_oflag = old.c_oflag;
  t.c_cflag = old.c_cflag;
  t.c_lflag = old.c_lflag;
  t.c_line = old.c_line;
  static_assert(sizeof t.c_cc >= sizeof old.c_cc, "termios2 has fewer control characters than termios");
  std::memcpy(t.c_cc, old.c_cc, sizeof old.c_cc);
  t.c_ospeed = code_rate(old.c_cflag & CBAUD);
  const tcflag_t input = (old.c_cflag & CIBAUD) >> IBSHIFT;
  t.c_ispeed = input ? code_rate(input) : t.c_ospeed;
}

void to_classic(const struct termios2 &t, struct termios &old) {
  std::memset(&old, 0, sizeof old);
  old.c_iflag = t.c_iflag;
  old.c_oflag = t.c_oflag;
  old.c_cflag = t.c_cflag;
  old.c_lflag = t.c_lflag;
  old.c_line = t.c_line;
  std::memcpy(old.c_cc, t.c_cc, sizeof old.c_cc);
}

// Reads the line with TCGETS2, or TCGETS once the fallback is chosen (or
// chosen now); `classic` says which.
int get_line(int fd, struct termios2 &t, bool &classic) {
  if (!use_classic()) {
    if (::ioctl(fd, TCGETS2, &t) == 0) {
      int expected = Mode::undecided;
      mode.compare_exchange_strong(expected, Mode::modern);
      classic = false;
      return 0;
    }
    const int rc = -errno;
    if (!ioctl_unknown(fd, rc)) return rc;
    mode.store(Mode::classic);
  }
  struct termios old;
  if (::ioctl(fd, TCGETS, &old) < 0) return -errno;
  from_classic(old, t);
  classic = true;
  return 0;
}

int put_line(int fd, const struct termios2 &t, bool classic) {
  if (!classic) return ioctl_errno(::ioctl(fd, TCSETS2, &t));
  struct termios old;
  to_classic(t, old);
  return ioctl_errno(::ioctl(fd, TCSETS, &old));
}

// Appended to a refusal found on reading back what TCSETS set: the loss may
// be the emulator's, not the driver's. qemu-user 7.2 carries B0 to B460800
// only (a higher B constant arrives as B0, which a UART takes as a hang-up,
// dropping DTR until the line is set again) and drops CMSPAR.
const char classic_hint[] =
    " (set with the classic TCSETS, this system lacking termios2: qemu-user's TCSETS carries no rate above 460800"
    " and no mark or space parity)";

const char *get_name(bool classic) { return classic ? "TCGETS" : "TCGETS2"; }
const char *set_name(bool classic) { return classic ? "TCSETS" : "TCSETS2"; }

}  // namespace

int save_line(int fd, LineState &out) noexcept {
  struct termios2 t;
  bool classic = false;
  if (int rc = get_line(fd, t, classic)) return rc;
  std::memcpy(out.bytes, &t, sizeof t);
  out.classic = classic;
  return 0;
}

// Through the path it was read with: a state read with TCGETS may lack the
// rate (BOTHER), one read with TCGETS2 may need it.
int restore_line(int fd, const LineState &saved) noexcept {
  struct termios2 t;
  std::memcpy(&t, saved.bytes, sizeof t);
  return put_line(fd, t, saved.classic);
}

void compose_line(LineState &state, const SerialSettings &settings) noexcept {
  struct termios2 t;
  std::memcpy(&t, state.bytes, sizeof t);
  make_raw(t);
  set_line(t, settings);
  std::memcpy(state.bytes, &t, sizeof t);
}

int check_line(const LineState &asked, const LineState &got, const SerialSettings &settings, bool pseudo_terminal,
               const std::string &device, std::string &why) {
  struct termios2 a, g;
  std::memcpy(&a, asked.bytes, sizeof a);
  std::memcpy(&g, got.bytes, sizeof g);
  const int rc = check_termios(a, g, settings, pseudo_terminal, device, why);
  if (rc && got.classic) why += classic_hint;
  return rc;
}

int apply_line(int fd, const SerialSettings &settings, bool pseudo_terminal, const std::string &device,
               std::string &why) {
  struct termios2 asked;
  bool classic = false;
  if (int rc = get_line(fd, asked, classic)) {
    why =
        "cannot read the line settings of " + device + " (" + get_name(use_classic()) + ": " + std::strerror(-rc) + ")";
    return rc;
  }
  if (classic && rate_code(settings.baud) == BOTHER) {
    why = "cannot set " + settings.summary() + " on " + device + ": baud " + std::to_string(settings.baud) +
          " needs termios2 (TCSETS2), which this system does not provide (qemu-user?): use a standard rate"
          " (50 to 4000000 with a B constant, such as 115200 or 230400)";
    return -ENOTSUP;
  }
  make_raw(asked);
  set_line(asked, settings);
  struct termios2 got;
  bool got_classic = classic;
  int rc = put_line(fd, asked, classic);
  if (rc == -ENOSYS && !classic) {
    // TCGETS2 known but TCSETS2 not: no kernel does that; an emulator
    // might. The ioctl is unknown, so the fallback is taken for good.
    mode.store(Mode::classic);
    return apply_line(fd, settings, pseudo_terminal, device, why);
  }
  if (rc == 0) rc = get_line(fd, got, got_classic);
  if (rc) {
    why = "cannot set " + settings.summary() + " on " + device + " (" + set_name(classic) + ": " + std::strerror(-rc) +
          ")";
    return rc;
  }
  rc = check_termios(asked, got, settings, pseudo_terminal, device, why);
  if (rc && got_classic) why += classic_hint;
  return rc;
}

int read_line(int fd, SerialSettings &out) noexcept {
  struct termios2 t;
  bool classic = false;
  if (int rc = get_line(fd, t, classic)) return rc;
  out.baud = rate_of(t);
  switch (t.c_cflag & CSIZE) {
    case CS5: out.data_bits = 5; break;
    case CS6: out.data_bits = 6; break;
    case CS7: out.data_bits = 7; break;
    default: out.data_bits = 8; break;
  }
  const bool odd = (t.c_cflag & PARODD) != 0;
  if (!(t.c_cflag & PARENB)) {
    out.parity = Parity::none;
  } else if (t.c_cflag & CMSPAR) {
    out.parity = odd ? Parity::mark : Parity::space;
  } else {
    out.parity = odd ? Parity::odd : Parity::even;
  }
  out.stop_bits = (t.c_cflag & CSTOPB) ? 2 : 1;
  out.flow_control = (t.c_cflag & CRTSCTS)               ? FlowControl::rtscts
                     : (t.c_iflag & (IXON | IXOFF)) != 0 ? FlowControl::xonxoff
                                                         : FlowControl::none;
  return 0;
}

bool termios2_in_use() noexcept { return !use_classic(); }

void force_classic_for_tests(bool on) noexcept {
  forced_classic.store(on);
  if (!on) mode.store(Mode::undecided);
}

}  // namespace gw::tty
