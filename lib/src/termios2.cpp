// SPDX-License-Identifier: MIT
// termios2 line settings. This file alone includes <asm/termbits.h> (see
// termios2.hpp); it must never include <termios.h>.
#include "termios2.hpp"

#include <asm/termbits.h>
#include <sys/ioctl.h>

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
  t.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF |
                                      IXANY | INPCK | IUCLC | IMAXBEL);
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

}  // namespace

int save_line(int fd, LineState &out) noexcept {
  struct termios2 t;
  if (::ioctl(fd, TCGETS2, &t) < 0) return -errno;
  std::memcpy(out.bytes, &t, sizeof t);
  return 0;
}

int restore_line(int fd, const LineState &saved) noexcept {
  struct termios2 t;
  std::memcpy(&t, saved.bytes, sizeof t);
  return ioctl_errno(::ioctl(fd, TCSETS2, &t));
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
  return check_termios(a, g, settings, pseudo_terminal, device, why);
}

int apply_line(int fd, const SerialSettings &settings, bool pseudo_terminal, const std::string &device,
               std::string &why) {
  struct termios2 asked;
  if (::ioctl(fd, TCGETS2, &asked) < 0) {
    const int rc = -errno;
    why = "cannot read the line settings of " + device + " (TCGETS2: " + std::strerror(-rc) + ")";
    return rc;
  }
  make_raw(asked);
  set_line(asked, settings);
  struct termios2 got;
  if (::ioctl(fd, TCSETS2, &asked) < 0 || ::ioctl(fd, TCGETS2, &got) < 0) {
    const int rc = -errno;
    why = "cannot set " + settings.summary() + " on " + device + " (TCSETS2: " + std::strerror(-rc) + ")";
    return rc;
  }
  return check_termios(asked, got, settings, pseudo_terminal, device, why);
}

int read_line(int fd, SerialSettings &out) noexcept {
  struct termios2 t;
  if (::ioctl(fd, TCGETS2, &t) < 0) return -errno;
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
  out.flow_control = (t.c_cflag & CRTSCTS)                   ? FlowControl::rtscts
                     : (t.c_iflag & (IXON | IXOFF)) != 0     ? FlowControl::xonxoff
                                                             : FlowControl::none;
  return 0;
}

}  // namespace gw::tty
