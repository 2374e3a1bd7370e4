// SPDX-License-Identifier: MIT
/*
 * pty_peer: the device side of a serial port, for the booted-systemd
 * end-to-end test (scripts/e2e-systemd-inside.sh), whose container has no
 * socat or python.
 *
 *   pty_peer LINK
 *
 * Opens a pseudo-terminal pair, makes its slave root:dialout 0660 (as udev
 * makes a UART) and names it LINK, a symlink to /dev/pts/N such as
 * /dev/serial/by-id/usb-...-if00 (missing directories are made). It then
 * answers every byte it reads with its ASCII uppercase, so that a client of a
 * serial route can tell the device answered, and logs what it read on stdout:
 *   pty_peer: read 13 bytes: "hello serial\n"
 * The line "pty_peer: ready ..." says LINK is in place. SIGTERM or SIGINT
 * removes LINK and exits 0.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static void die(const char *what) {
  fprintf(stderr, "pty_peer: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* mkdir -p of LINK's parent directories. */
static void make_parents(const char *link) {
  char path[PATH_MAX];
  if (strlen(link) >= sizeof path) {
    errno = ENAMETOOLONG;
    die(link);
  }
  strcpy(path, link);
  for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) die(path);
    *slash = '/';
  }
}

static void write_all(int fd, const unsigned char *data, size_t length) {
  while (length > 0) {
    ssize_t n = write(fd, data, length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, 1000);
      continue;
    }
    if (n < 0) die("write to the pty master");
    data += n;
    length -= (size_t)n;
  }
}

static void log_read(const unsigned char *data, size_t length) {
  printf("pty_peer: read %zu bytes: \"", length);
  for (size_t i = 0; i < length; i++) {
    unsigned char c = data[i];
    if (c == '\n')
      fputs("\\n", stdout);
    else if (c == '\r')
      fputs("\\r", stdout);
    else if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (isprint(c))
      putchar(c);
    else
      printf("\\x%02x", c);
  }
  fputs("\"\n", stdout);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 2 || argv[1][0] != '/') {
    fprintf(stderr, "usage: pty_peer /ABSOLUTE/LINK\n");
    return 2;
  }
  const char *link = argv[1];

  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) die("posix_openpt");
  if (grantpt(master) < 0) die("grantpt");
  if (unlockpt(master) < 0) die("unlockpt");
  const char *name = ptsname(master);
  if (!name) die("ptsname");
  char slave[PATH_MAX];
  snprintf(slave, sizeof slave, "%s", name);

  /* Raw line discipline from the start (termios set through the master
   * apply to the slave): with the default ECHO, an answer written while no
   * one holds the slave in raw mode would come straight back to us. */
  struct termios tio;
  if (tcgetattr(master, &tio) < 0) die("tcgetattr");
  cfmakeraw(&tio);
  if (tcsetattr(master, TCSANOW, &tio) < 0) die("tcsetattr");

  /* Keep the slave open ourselves: when the serial route closes it (after
   * its last client), reads on the master would otherwise fail with EIO
   * and poll() report POLLHUP at once, again and again. */
  int keep = open(slave, O_RDWR | O_NOCTTY);
  if (keep < 0) die(slave);

  /* What a UART node looks like on Debian: root:dialout 0660. */
  struct group *dialout = getgrnam("dialout");
  if (!dialout) {
    fprintf(stderr, "pty_peer: no group dialout\n");
    return 1;
  }
  if (chown(slave, 0, dialout->gr_gid) < 0) die("chown the slave");
  if (chmod(slave, 0660) < 0) die("chmod the slave");

  make_parents(link);
  if (unlink(link) < 0 && errno != ENOENT) die(link);
  if (symlink(slave, link) < 0) die(link);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  printf("pty_peer: ready: %s -> %s\n", link, slave);
  fflush(stdout);

  unsigned char buf[4096];
  while (!stopping) {
    struct pollfd p = {.fd = master, .events = POLLIN};
    int rc = poll(&p, 1, 1000);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) die("poll");
    if (rc == 0) continue;
    ssize_t n = read(master, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) die("read from the pty master");
    if (n == 0) continue;
    log_read(buf, (size_t)n);
    for (ssize_t i = 0; i < n; i++) buf[i] = (unsigned char)toupper(buf[i]);
    write_all(master, buf, (size_t)n);
  }
  unlink(link);
  close(keep);
  close(master);
  printf("pty_peer: stopped\n");
  return 0;
}
