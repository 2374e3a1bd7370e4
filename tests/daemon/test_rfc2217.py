#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# daemon_rfc2217: gatewayd's protocol = "rfc2217" route, driven by pyserial's
# RFC 2217 client (Debian python3-serial) over a pseudo-terminal this script
# makes. Usage: test_rfc2217.py /path/to/gatewayd
#
# Checks: pyserial opens the port (its option negotiation and its SET
# requests, DTR and RTS included, are answered as it expects); baud rates and
# stop bits reach the pty (tcgetattr on our own fd to the slave: a pty shares
# one termios); parity and data bits are answered (a pty's driver keeps
# neither); all 256 byte values pass both ways; reset_input_buffer and
# send_break are answered; rfc2217_allow_settings = false keeps the baud;
# a raw client's DO for an unknown option gets WONT.
#
# GWD_WRAPPER (valgrind, or the cross build's qemu) is put in front of
# gatewayd, and GWD_TIME_SCALE stretches the waits, as in the C harness.
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time
import tty

try:
    import serial
except ImportError:
    print("daemon_rfc2217: python3-serial is missing: apt-get install python3-serial "
          "(scripts/lib/common.sh installs it with the build packages)")
    sys.exit(1)

SCALE = max(1, int(os.environ.get("GWD_TIME_SCALE", "1") or "1"))
WRAPPER = os.environ.get("GWD_WRAPPER", "").split()
FAILURES = []

if SCALE > 1:
    # pyserial waits a fixed 3 s for each answer; a gatewayd under valgrind
    # or qemu may need longer, so its timeouts are stretched like ours.
    import serial.rfc2217

    class _ScaledTimeout(serial.rfc2217.Timeout):
        def __init__(self, duration):
            super().__init__(duration * SCALE if duration and duration > 0 else duration)

    serial.rfc2217.Timeout = _ScaledTimeout


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """gatewayd with one rfc2217 route on the slave of a fresh pty."""

    def __init__(self, gatewayd, workdir, extra=""):
        self.master, self.slave = os.openpty()
        # Both ends raw: the master's line discipline would otherwise echo
        # and translate what the device sends.
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.port = free_port()
        conf = os.path.join(workdir, "gateway-%d.conf" % self.port)
        with open(conf, "w") as f:
            f.write('[service]\nlog_level = "debug"\n\n[[route]]\nname = "com"\n'
                    'listen = "127.0.0.1:%d"\nbackend = "serial:%s"\nprotocol = "rfc2217"\n'
                    'lock_dir = "%s"\n%s' % (self.port, self.path, workdir, extra))
        self.log = open(os.path.join(workdir, "gatewayd-%d.log" % self.port), "w+")
        self.proc = subprocess.Popen(WRAPPER + [gatewayd, "--config", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10 * SCALE
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(0.3)  # that probe's session ends before the test's begins
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gatewayd did not listen on %d" % self.port)

    def termios(self):
        return termios.tcgetattr(self.slave)

    def read_device(self, count, timeout=5.0):
        data = b""
        deadline = time.monotonic() + timeout * SCALE
        while len(data) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                data += os.read(self.master, count - len(data))
        return data

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10 * SCALE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        os.close(self.master)
        os.close(self.slave)
        self.log.seek(0)
        return code, self.log.read()


def read_all(port, count, timeout=5.0):
    data = b""
    deadline = time.monotonic() + timeout * SCALE
    while len(data) < count and time.monotonic() < deadline:
        data += port.read(count - len(data))
    return data


SPEEDS = {9600: termios.B9600, 19200: termios.B19200, 57600: termios.B57600, 115200: termios.B115200}


def settings_follow_the_client(d):
    port = serial.serial_for_url("rfc2217://127.0.0.1:%d" % d.port, baudrate=9600, timeout=0.5)
    check(port.is_open, "pyserial opens the port (negotiation, SET requests, DTR and RTS answered)")
    for baud in (19200, 115200, 57600):
        port.baudrate = baud  # pyserial waits for the answer and refuses another value
        attrs = d.termios()
        check(attrs[4] == SPEEDS[baud] and attrs[5] == SPEEDS[baud], "baud %d reaches the pty" % baud)
    port.stopbits = serial.STOPBITS_TWO
    check(d.termios()[2] & termios.CSTOPB, "two stop bits reach the pty")
    port.stopbits = serial.STOPBITS_ONE
    check(not d.termios()[2] & termios.CSTOPB, "one stop bit again")
    # A pty keeps neither parity nor data bits; the answers carry what was applied.
    port.parity = serial.PARITY_EVEN
    port.bytesize = serial.SEVENBITS
    check(port.parity == serial.PARITY_EVEN and port.bytesize == 7, "parity and data bits answered as set")
    port.parity = serial.PARITY_NONE
    port.bytesize = serial.EIGHTBITS
    port.dtr = False
    port.rts = False
    port.dtr = True
    port.rts = True
    check(True, "DTR and RTS changes answered (a virtual state on a pty)")
    return port


def bytes_both_ways(d, port):
    everything = bytes(range(256)) * 4
    port.write(everything)
    got = d.read_device(len(everything))
    check(got == everything, "all 256 byte values reach the device (%d of %d)" % (len(got), len(everything)))
    os.write(d.master, everything)
    got = read_all(port, len(everything))
    check(got == everything, "all 256 byte values reach the client (%d of %d)" % (len(got), len(everything)))


def purge_and_break(d, port):
    os.write(d.master, b"stale")
    time.sleep(0.2)
    port.reset_input_buffer()  # PURGE-DATA receive, answered
    port.reset_output_buffer()  # PURGE-DATA transmit
    check(True, "reset_input_buffer and reset_output_buffer answered")
    try:
        port.send_break(0.05)
        check(True, "send_break answered")
    except (serial.SerialException, ValueError, OSError) as e:
        # qemu-user has no TIOCSBRK (ENOSYS); the gateway answers a virtual break.
        check(False, "send_break: %s" % e)
    os.write(d.master, b"after")
    check(read_all(port, 5) == b"after", "data flows after purge and break")


def unknown_option_refused(d):
    with socket.create_connection(("127.0.0.1", d.port), timeout=5 * SCALE) as s:
        s.sendall(bytes([255, 253, 99, 255, 251, 98]))  # DO 99, WILL 98
        got = b""
        deadline = time.monotonic() + 5 * SCALE
        while (b"\xff\xfc\x63" not in got or b"\xff\xfe\x62" not in got) and time.monotonic() < deadline:
            try:
                got += s.recv(4096)
            except socket.timeout:
                break
        check(b"\xff\xfc\x63" in got, "DO for an unknown option gets WONT")
        check(b"\xff\xfe\x62" in got, "WILL for an unknown option gets DONT")
        check(b"\xff\xfb\x00" in got and b"\xff\xfd\x2c" in got, "the server offers WILL BINARY and DO COM-PORT")


def settings_refused(gatewayd, workdir):
    d = Daemon(gatewayd, workdir, "baud = 9600\nrfc2217_allow_settings = false\n")
    try:
        port = serial.serial_for_url("rfc2217://127.0.0.1:%d" % d.port, baudrate=9600, timeout=0.5)
        try:
            port.baudrate = 19200
            check(False, "allow_settings = false: a new baud is refused to the client")
        except (serial.SerialException, ValueError):
            check(True, "allow_settings = false: the client is told the baud in effect")
        check(d.termios()[4] == termios.B9600, "allow_settings = false: the pty keeps 9600")
        port.close()
    finally:
        code, log = d.stop()
        check(code == 0, "gatewayd (allow_settings = false) exits 0")
        if FAILURES:
            print(log)


def main():
    if len(sys.argv) < 2 or not os.path.isabs(sys.argv[1]):
        print("usage: test_rfc2217.py /path/to/gatewayd")
        return 2
    gatewayd = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="gwd-rfc2217-") as workdir:
        d = Daemon(gatewayd, workdir)
        try:
            port = settings_follow_the_client(d)
            bytes_both_ways(d, port)
            purge_and_break(d, port)
            port.close()
            unknown_option_refused(d)
        finally:
            code, log = d.stop()
            check(code == 0, "gatewayd exits 0 on SIGTERM")
            if FAILURES:
                print(log)
        settings_refused(gatewayd, workdir)
    print("%d failure(s)" % len(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
