// SPDX-License-Identifier: MIT
// The termios2 ioctls (TCGETS2/TCSETS2), behind an interface that needs no
// kernel header: <asm/termbits.h> defines struct termios and the flag macros
// again and cannot share a translation unit with glibc's <termios.h>, so it
// is included by termios2.cpp alone. Internal to lib/.
#pragma once
#include <string>

#include "gw/serial.hpp"

namespace gw::tty {

/// A copy of the kernel's struct termios2, opaque outside termios2.cpp
/// (which checks at compile time that it fits).
struct LineState {
  alignas(8) unsigned char bytes[96];
};

/// TCGETS2 into `out`. 0 or a negated errno.
int save_line(int fd, LineState &out) noexcept;
/// TCSETS2 of a saved state, at once (TCSANOW). 0 or a negated errno.
int restore_line(int fd, const LineState &saved) noexcept;
/// Raw mode and the line settings of `settings` (baud, data bits, parity,
/// stop bits, flow control) on top of the current state, then reads them back
/// and checks that the driver took them. 0, or a negated errno and `why`
/// naming `device` and the setting the driver refused.
///
/// A pseudo-terminal carries bytes, not bits: its driver forces CS8 and
/// clears PARENB whatever is asked (drivers/tty/pty.c, pty_set_termios), and
/// nothing is garbled by it, since no line exists. With `pseudo_terminal`
/// those two are not checked, so that a configuration tested on a pty (the
/// test suites, socat setups) opens as it will on the UART.
int apply_line(int fd, const SerialSettings &settings, bool pseudo_terminal, const std::string &device,
               std::string &why);
/// What apply_line() asks for: raw mode and `settings` on top of `state`.
void compose_line(LineState &state, const SerialSettings &settings) noexcept;
/// apply_line()'s check of what the driver kept (`got`) against what was
/// asked (`asked`); exposed for tests, which cannot make a pty refuse.
int check_line(const LineState &asked, const LineState &got, const SerialSettings &settings, bool pseudo_terminal,
               const std::string &device, std::string &why);
/// The line settings the kernel holds now, into the matching fields of `out`
/// (the others are left as they are). 0 or a negated errno.
int read_line(int fd, SerialSettings &out) noexcept;

}  // namespace gw::tty
