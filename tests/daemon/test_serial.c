/* SPDX-License-Identifier: MIT */
/* gatewayd's serial routes (issue 9) on pseudo-terminals: the test holds a
 * pty's master (the far end of the line: the device) and gatewayd opens its
 * slave as the route's serial device. Closing the master is an unplug (the
 * kernel hangs the slave up, as for a USB adapter pulled out). Lock files go
 * to the test's own directory, never /run/lock. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A pty pair: `master` is the device's side, `slave` the path gatewayd opens. */
typedef struct pty {
  int master;
  char slave[128];
} pty;

static void pty_open(pty *p) {
  p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  assert_true(p->master >= 0);
  assert_int_equal(grantpt(p->master), 0);
  assert_int_equal(unlockpt(p->master), 0);
  assert_int_equal(ptsname_r(p->master, p->slave, sizeof p->slave), 0);
}

static void pty_close(pty *p) {
  if (p->master >= 0) close(p->master);
  p->master = -1;
}

/* Reads exactly `len` bytes from the non-blocking master before the deadline;
 * returns how many came. While no one has the slave open (gatewayd has not
 * opened the device yet, or is between two opens) the master reports a
 * hang-up and read() fails with EIO: that is waited out, not an end. */
static size_t read_fd(int fd, char *buf, size_t len, int timeout_ms) {
  size_t got = 0;
  int64_t deadline = gwt_now_ms() + timeout_ms;
  while (got < len) {
    int64_t left = deadline - gwt_now_ms();
    if (left <= 0) break;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)left) <= 0) continue;
    ssize_t n = read(fd, buf + got, len - got);
    if (n > 0)
      got += (size_t)n;
    else if (n < 0 && errno == EIO)
      gwd_sleep_ms(5);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
      break;
  }
  return got;
}

static void write_fd(int fd, const char *text) {
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* `text` from the device reaches the client, and the client's reaches the device. */
static void both_ways(int client, int master, const char *to_device, const char *to_client) {
  char buf[256];
  write_fd(client, to_device);
  assert_int_equal(read_fd(master, buf, strlen(to_device), GWD_TIMEOUT_MS), strlen(to_device));
  assert_memory_equal(buf, to_device, strlen(to_device));
  write_fd(master, to_client);
  assert_int_equal(gwt_read_exact(NULL, client, buf, strlen(to_client), GWD_TIMEOUT_MS), strlen(to_client));
  assert_memory_equal(buf, to_client, strlen(to_client));
}

/* A config with one serial route "plc" on `port` for `device`, its lock
 * files in the test's directory, then `extra` lines. */
static void serial_conf(const gwd_fixture *f, char *out, size_t cap, int port, const char *device, const char *extra) {
  int n = snprintf(out, cap,
                   "[[route]]\nname = \"plc\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"serial:%s\"\n"
                   "lock_dir = \"%s\"\n%s",
                   port, device, f->dir.path, extra);
  assert_true(n > 0 && (size_t)n < cap);
}

static void start_serial(gwd_fixture *f, int port, const char *device, const char *extra) {
  char conf[1024];
  serial_conf(f, conf, sizeof conf, port, device, extra);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
}

static int client(int port) {
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  return c;
}

/* A pty, gatewayd with a serial route on it (then `extra` lines) on a new
 * *port, and a client served: one round trip done. Returns the client. */
static int serve(gwd_fixture *f, pty *p, int *port, const char *extra) {
  pty_open(p);
  *port = gwd_port();
  start_serial(f, *port, p->slave, extra);
  int c = client(*port);
  both_ways(c, p->master, "hello\n", "device\n");
  return c;
}

/* The end of a test: the client goes, gatewayd stops cleanly, the pty closes. */
static void finish(gwd_fixture *f, pty *p, int c) {
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
  pty_close(p);
}

static void expect_log(const gwd_fixture *f, const char *needle, int count) {
  if (!gwd_log_wait(&f->proc, needle, count, GWD_TIMEOUT_MS)) {
    char *err = gwd_read_err(&f->proc);
    print_error("no \"%s\" (#%d) in stderr:\n%s\n", needle, count, err);
    free(err);
    fail();
  }
}

/* The one line the daemon sends a client before closing it: it starts with
 * "serial:DEVICE" and `what`, and contains `also` (unless NULL). Then EOF; the
 * client is closed here. */
static void expect_told(int c, const char *device, const char *what, const char *also) {
  char prefix[600], line[1024];
  snprintf(prefix, sizeof prefix, "serial:%s%s", device, what);
  int n = gwt_read_line(NULL, c, line, sizeof line, GWD_TIMEOUT_MS);
  assert_true(n > 0);
  if (strncmp(line, prefix, strlen(prefix)) != 0 || (also && !strstr(line, also)))
    fail_msg("line \"%s\" does not start with \"%s\"%s%s", line, prefix, also ? " or lacks " : "", also ? also : "");
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  close(c);
}

/* Writes the config, reloads and waits for "reloaded: N routes". */
static void reload(gwd_fixture *f, const char *conf, int routes) {
  char done[64];
  snprintf(done, sizeof done, "<6>reloaded: %d routes\n", routes);
  gwd_dir_write(&f->dir, "gateway.conf", conf, NULL, 0);
  gwd_signal(&f->proc, SIGHUP);
  expect_log(f, done, 1);
}

/* Waits until the UUCP lock file of the pty (LCK..N for /dev/pts/N, in the
 * test's lock_dir) is gone: nobody in gatewayd holds the device any more. */
static void wait_unlocked(const gwd_fixture *f, const pty *p) {
  char lock[400];
  snprintf(lock, sizeof lock, "%s/LCK..%s", f->dir.path, strrchr(p->slave, '/') + 1);
  int64_t deadline = gwt_now_ms() + GWD_TIMEOUT_MS;
  while (access(lock, F_OK) == 0 && gwt_now_ms() < deadline) gwd_sleep_ms(10);
  if (access(lock, F_OK) == 0) fail_msg("%s is still there", lock);
}

/* Bytes both ways through TCP, several times over one client. */
static void test_bytes_both_ways(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int c = serve(f, &p, &port, "baud = 115200\n");
  both_ways(c, p.master, "AT\r\n", "OK\r\n");
  both_ways(c, p.master, "\x01\x03\x00\x00\x00\x0a", "\x01\x03\x14 twenty bytes here");
  expect_log(f, "device open (", 1);
  expect_log(f, "115200 8N1", 1);
  finish(f, &p, c);
}

/* --check-config accepts a serial route with every key, on a device that is
 * not there (it may be plugged in later), and refuses a bad value exactly. */
static void test_check_config(void **state) {
  gwd_fixture *f = *state;
  char conf[2048], path[512];
  char missing[300];
  snprintf(missing, sizeof missing, "%s/by-id/usb-not-plugged-in", f->dir.path);
  serial_conf(f, conf, sizeof conf, gwd_port(), missing,
              "baud = 19200\ndata_bits = 7\nparity = \"even\"\nstop_bits = 2\nflow_control = \"xonxoff\"\n"
              "dtr = true\nrs485 = true\ndelay_before_send = \"2ms\"\nserial_clients = \"shared\"\n"
              "readonly_clients = [\"127.0.0.0/8\"]\nidle_gap = \"3.5char\"\ndelimiter = \"\\r\\n\"\n"
              "keep_delimiter = false\nmax_packet = 512\nmax_hold = \"50ms\"\nserial_open = \"always\"\n"
              "on_device_missing = \"wait\"\ndevice_wait = \"5s\"\non_device_loss = \"hold\"\n");
  gwd_dir_write(&f->dir, "good.conf", conf, path, sizeof path);
  char *good[] = {"--check-config", "--config", path, NULL};
  assert_int_equal(gwd_run(&f->dir, "good", good, &f->proc), 0);

  serial_conf(f, conf, sizeof conf, gwd_port(), "/dev/ttyS0", "baud = 3\n");
  gwd_dir_write(&f->dir, "bad.conf", conf, path, sizeof path);
  char *bad[] = {"--check-config", "--config", path, NULL};
  gwd_proc p;
  assert_int_equal(gwd_run(&f->dir, "bad", bad, &p), 78);
  char expect[700];
  snprintf(expect, sizeof expect, "%s:6:8: baud 3 is out of range (50 to 4000000) in route \"plc\"\n", path);
  char *out = gwd_read_out(&p), *err = gwd_read_err(&p);
  if (!strstr(out, expect) && !strstr(err, expect))
    fail_msg("no \"%s\" in stdout \"%s\" or stderr \"%s\"", expect, out, err);
  free(out);
  free(err);
}

/* The default policy is exclusive: a second client gets one line and is
 * closed, and the first is still served. */
static void test_exclusive_refusal(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int first = serve(f, &p, &port, "");
  expect_told(client(port), p.slave, " is in use by another client", NULL);
  expect_log(f, "refusing 127.0.0.1:", 1);
  both_ways(first, p.master, "still\n", "here\n");
  finish(f, &p, first);
}

/* A device missing at start: the route listens, a client gets the reason in
 * one line; the device appears (a by-id style symlink to a new pty) and the
 * next client is served. */
static void test_missing_device_then_plugged_in(void **state) {
  gwd_fixture *f = *state;
  char dir[300], link[400];
  snprintf(dir, sizeof dir, "%s/by-id", f->dir.path);
  snprintf(link, sizeof link, "%s/usb-FTDI_adapter-if00", dir);
  int port = gwd_port();
  start_serial(f, port, link, "");
  int c = client(port);
  expect_told(c, link, " is not available: ", NULL);
  expect_log(f, ": device missing (", 1);

  pty p;
  pty_open(&p);
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_int_equal(symlink(p.slave, link), 0);
  c = client(port);
  both_ways(c, p.master, "hello\n", "plugged in\n");
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
  pty_close(&p);
}

/* Unplug (the master closes): the client is closed with the reason, the
 * daemon logs it once and goes on listening. */
static void test_unplug_closes_the_client(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int c = serve(f, &p, &port, "");
  pty_close(&p);
  expect_told(c, p.slave, ": the device was lost (", NULL);
  expect_log(f, "device lost (", 1);
  assert_true(gwd_alive(&f->proc));
  int again = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(again >= 0); /* still listening */
  finish(f, &p, again);
  assert_int_equal(gwd_log_count(&f->proc, "device lost ("), 1);
}

/* SIGHUP with the serial route unchanged (another route added): the client
 * stays connected and served, on a device that was never reopened. */
static void test_reload_keeps_an_unchanged_serial_route(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int c = serve(f, &p, &port, "baud = 57600\n");
  char conf[1024];
  serial_conf(f, conf, sizeof conf, port, p.slave, "baud = 57600\n");

  char more[1200];
  snprintf(more, sizeof more, "%s\n[[route]]\nname = \"echo\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\n", conf,
           gwd_port());
  reload(f, more, 2);
  both_ways(c, p.master, "after\n", "reload\n");
  /* The same handler: the device was opened once, and a second client is
   * still refused by the exclusive policy of the one connected. */
  assert_int_equal(gwd_log_count(&f->proc, "device open ("), 1);
  expect_told(client(port), p.slave, " is in use by another client", NULL);
  finish(f, &p, c);
}

/* SIGHUP with a changed serial setting: the connected client keeps the old
 * handler (and the device); a new client gets the new one, which finds the
 * device held by this process until the old client has gone, then opens it
 * with the new settings. Never two handlers on one device. */
static void test_reload_changed_serial_route_hands_over(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int old_client = serve(f, &p, &port, "baud = 9600\n");
  char conf[1024];
  serial_conf(f, conf, sizeof conf, port, p.slave, "baud = 19200\n");
  reload(f, conf, 1);
  expect_told(client(port), p.slave, " is busy: ", "(this process)");
  both_ways(old_client, p.master, "old client\n", "still served\n");

  /* The old handler lets the device go with its last client: its lock
   * file goes with it. */
  close(old_client);
  wait_unlocked(f, &p);
  int new_client = client(port);
  both_ways(new_client, p.master, "new\n", "settings\n");
  expect_log(f, "19200 8N1", 1);
  finish(f, &p, new_client);
}

/* idle_timeout counts traffic either way: a client that only reads (a
 * dashboard) stays while the device talks, and goes once both are quiet. */
static void test_device_output_keeps_a_reader(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  int c = serve(f, &p, &port, "idle_timeout = \"1s\"\n");
  char buf[16];
  for (int i = 0; i < 8; ++i) {
    gwd_sleep_ms(300);
    write_fd(p.master, "tick\n");
    assert_int_equal(gwt_read_exact(NULL, c, buf, 5, GWD_TIMEOUT_MS), 5);
  }
  /* 2.4 s with nothing sent by the client: served all along. Now quiet. */
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  expect_log(f, "idle for ", 1);
  finish(f, &p, c);
}

/* SIGTERM in the middle of a stream: the device keeps sending into a client
 * that has stopped reading (its socket and the pty both full). gatewayd still
 * stops within its flush deadline and exits 0, the client sees the end, and
 * the device's lock is released: nothing keeps a stopping daemon on the port. */
static void test_sigterm_while_the_device_streams(void **state) {
  gwd_fixture *f = *state;
  pty p;
  int port;
  /* The stop's flush deadline: a client that does not read may hold the
   * stop this long, and no longer. */
  int c = serve(f, &p, &port, "[service]\nstop_timeout = \"1s\"\n");
  char chunk[4096];
  memset(chunk, 'x', sizeof chunk);
  size_t sent = 0;
  int64_t deadline = gwt_now_ms() + GWD_TIMEOUT_MS, blocked_since = 0;
  /* Fill until the pty has pushed back for 300 ms: gatewayd's queue for the
   * client and the client's socket are full by then (an exclusive client that
   * does not read holds the device back instead of losing its bytes). */
  while (gwt_now_ms() < deadline) {
    ssize_t n = write(p.master, chunk, sizeof chunk);
    if (n > 0) {
      sent += (size_t)n;
      blocked_since = 0;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) fail_msg("write to the pty master: %s", strerror(errno));
    if (!blocked_since) blocked_since = gwt_now_ms();
    if (gwt_now_ms() - blocked_since >= 300) break;
    gwd_sleep_ms(5);
  }
  assert_true(blocked_since != 0 && gwt_now_ms() - blocked_since >= 300);
  assert_true(sent >= 256u << 10);
  int64_t stop_began = gwt_now_ms();
  assert_int_equal(gwd_stop(&f->proc), 0);
  /* 1 s of flush, the linger after it and the process's exit; scaled for
   * sanitizers and valgrind like the harness's own bounds. */
  assert_true(gwt_now_ms() - stop_began < gwd_scaled_ms(3000));
  wait_unlocked(f, &p);
  /* The client gets what was queued for it and then the end (or a reset once
   * the stop deadline cut the flush): never a connection left open. */
  for (;;) {
    ssize_t n = read(c, chunk, sizeof chunk);
    if (n > 0) continue;
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    break;
  }
  close(c);
  pty_close(&p);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_bytes_both_ways),
      GWD_TEST(test_check_config),
      GWD_TEST(test_exclusive_refusal),
      GWD_TEST(test_missing_device_then_plugged_in),
      GWD_TEST(test_unplug_closes_the_client),
      GWD_TEST(test_reload_keeps_an_unchanged_serial_route),
      GWD_TEST(test_reload_changed_serial_route_hands_over),
      GWD_TEST(test_device_output_keeps_a_reader),
      GWD_TEST(test_sigterm_while_the_device_streams),
  };
  return cmocka_run_group_tests_name("daemon_serial", tests, NULL, NULL);
}
