/* SPDX-License-Identifier: MIT */
/* The "device" of bench/serial.sh: a pseudo-terminal whose master side echoes
 * every byte back as soon as it is read, with no buffering of its own.
 *
 *   pty_echo            prints the slave's path (/dev/pts/N) on stdout, one
 *                       line, then echoes until SIGTERM/SIGINT.
 *
 * The slave is opened once here too (O_NOCTTY, raw) and held for the whole
 * run: the line never hangs up between two peer opens, and no byte is echoed
 * by the line discipline before a peer sets it raw. The peer (gatewayd,
 * ser2net, the direct client) opens the same path and sets its own line
 * settings; a pty ignores the baud rate for timing, so any character delay
 * seen through a peer is the peer's own. Not a test; built by bench/serial.sh
 * with `cc -O2`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        perror("pty_echo: posix_openpt");
        return 1;
    }
    char path[128];
    if (ptsname_r(master, path, sizeof path)) {
        perror("pty_echo: ptsname_r");
        return 1;
    }
    int slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        perror("pty_echo: open slave");
        return 1;
    }
    struct termios t;
    if (tcgetattr(slave, &t) == 0) {
        cfmakeraw(&t);
        cfsetspeed(&t, B115200);
        tcsetattr(slave, TCSANOW, &t);
    }
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: read() returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("%s\n", path);
    fflush(stdout);

    unsigned char buf[4096];
    unsigned long long echoed = 0;
    while (!stop) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                perror("pty_echo: read");
            break;
        }
        for (ssize_t off = 0; off < n && !stop;) {
            ssize_t w = write(master, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                perror("pty_echo: write");
                return 1;
            }
            off += w;
        }
        echoed += (unsigned long long)n;
    }
    fprintf(stderr, "pty_echo: %s: %llu bytes echoed\n", path, echoed);
    close(slave);
    close(master);
    return 0;
}
