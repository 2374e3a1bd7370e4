// SPDX-License-Identifier: MIT
// The termios2 ioctls (TCGETS2/TCSETS2), behind an interface that needs no
// kernel header: <asm/termbits.h> defines struct termios and the flag macros
// again and cannot share a translation unit with glibc's <termios.h>, so it
// is included by termios2.cpp alone. Internal to lib/.
//
// Fallback: every kernel since 2.6.20 has TCGETS2/TCSETS2, but qemu-user
// (7.2 at least) does not translate them and answers ENOSYS, so a foreign
// binary run under it (our arm64/armhf test stage) could open no port. When
// TCGETS2 itself is unknown (ENOSYS; or ENOTTY/EINVAL while the classic
// TCGETS works on the same fd, i.e. the fd is a tty and only the ioctl is
// missing), the line is read and set with TCGETS/TCSETS and the kernel's
// struct termios instead, with the Bnnn codes: the standard rates work,
// any other is refused with -ENOTSUP and a reason naming it. A driver's
// refusal of a setting (TCSETS2 failing with EINVAL) is never a reason to
// fall back. The choice is made once per process, at the first TCGETS2 that
// answers one way or the other (the ioctl is the tty core's, not a
// driver's: the same for every fd of the process); errors that say nothing
// about the ioctl (EBADF, EIO on a hung-up tty) decide nothing.
// Known limit of the fallback: a line that another program left at a rate
// qemu-user's TCGETS cannot express (no B constant, or above 460800) reads
// as B0, and is put back as B0 at close (a hang-up on a UART).
#pragma once
#include <string>

#include "gw/serial.hpp"

namespace gw::tty {

/// A copy of the kernel's struct termios2, opaque outside termios2.cpp
/// (which checks at compile time that it fits).
/// `classic`: read with TCGETS (fallback); then restored with TCSETS, and
/// c_ispeed/c_ospeed were filled in from the Bnnn code.
struct LineState {
  alignas(8) unsigned char bytes[96];
  bool classic = false;
};

/// TCGETS2 (or the fallback's TCGETS) into `out`. 0 or a negated errno.
int save_line(int fd, LineState &out) noexcept;
/// TCSETS2 of a saved state, at once (TCSANOW), or TCSETS if it was read
/// with TCGETS. 0 or a negated errno.
int restore_line(int fd, const LineState &saved) noexcept;
/// Raw mode and the line settings of `settings` (baud, data bits, parity,
/// stop bits, flow control) on top of the current state, then reads them back
/// and checks that the driver took them. 0, or a negated errno and `why`
/// naming `device` and the setting the driver refused. Through the
/// fallback, a rate with no Bnnn code is -ENOTSUP (nothing is changed).
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
/// asked (`asked`); exposed for tests, which cannot make a pty refuse. A
/// refusal of a `got` read through the fallback says so (qemu-user's TCSETS
/// loses rates above 460800 and mark/space parity).
int check_line(const LineState &asked, const LineState &got, const SerialSettings &settings, bool pseudo_terminal,
               const std::string &device, std::string &why);
/// The line settings the kernel holds now, into the matching fields of `out`
/// (the others are left as they are). 0 or a negated errno.
int read_line(int fd, SerialSettings &out) noexcept;

/// Whether this process sets lines with termios2: true or false once
/// decided, and true (the assumption) until a first TCGETS2 has answered.
bool termios2_in_use() noexcept;
/// For tests only: `on` makes every call take the fallback (TCGETS/TCSETS)
/// as under qemu-user, so that it is tested on a real kernel too; `off`
/// forgets both the forcing and the decision made so far.
void force_classic_for_tests(bool on) noexcept;

}  // namespace gw::tty
