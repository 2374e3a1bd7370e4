/* SPDX-License-Identifier: MIT */
/* gw_listener_create_serial(): a listener whose clients reach a serial
 * device. A pseudo-terminal stands in for the UART: the test holds the
 * master (the far end of the cable), the backend opens the slave by its
 * path. Line settings are read back with tcgetattr() on the master, which
 * reports the slave's termios. A pty's driver forces CS8 and clears PARENB
 * whatever was asked (it has no wire), so data bits and parity cannot be
 * read back from the kernel here: for those the test reads the settings
 * the backend logs when it opens the device ("115200 8E2 rtscts"); speed,
 * CSTOPB and CRTSCTS are read from the kernel. Every test's lock files go to
 * a directory of its own (mkdtemp), so that suites running in parallel
 * never see each other's locks; the teardown's rmdir() also checks that the
 * backend removed its lock file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "helpers.h"

typedef struct serial_fixture {
  gwt_log log;
  gw_server_t *srv;
  int master;      /* the pty's master: the device's far end */
  char slave[128]; /* the pty's slave: the "UART" the backend opens */
  char lock_dir[32];
} serial_fixture;

static int serial_setup(void **state) {
  serial_fixture *f = calloc(1, sizeof *f);
  if (!f) return -1;
  pthread_mutex_init(&f->log.mu, NULL);
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  so.log = gwt_log_fn;
  so.log_user_data = &f->log;
  so.log_level = GW_LOG_DEBUG;
  f->srv = gwt_server_opts(&so);
  f->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  strcpy(f->lock_dir, "/tmp/gwt-serial-XXXXXX");
  *state = f;
  if (!f->srv || f->master < 0 || grantpt(f->master) != 0 || unlockpt(f->master) != 0 ||
      ptsname_r(f->master, f->slave, sizeof f->slave) != 0 || !mkdtemp(f->lock_dir))
    return -1;
  return 0;
}

static int serial_teardown(void **state) {
  serial_fixture *f = *state;
  gw_server_destroy(f->srv);
  if (f->master >= 0) close(f->master);
  /* Empty once the backend is gone: it removed its lock file. */
  int removed = rmdir(f->lock_dir);
  if (removed != 0) fprintf(stderr, "rmdir %s: %s\n", f->lock_dir, strerror(errno));
  pthread_mutex_destroy(&f->log.mu);
  free(f);
  return removed == 0 ? 0 : -1;
}

#define SERIAL_TEST(t) cmocka_unit_test_setup_teardown(t, serial_setup, serial_teardown)

static void watch_log(serial_fixture *f, const char *needle) {
  pthread_mutex_lock(&f->log.mu);
  f->log.needle = needle;
  f->log.matches = 0;
  f->log.match_level = 0;
  pthread_mutex_unlock(&f->log.mu);
}

static int log_matches(serial_fixture *f, int *level) {
  pthread_mutex_lock(&f->log.mu);
  int n = f->log.matches;
  if (level) *level = f->log.match_level;
  pthread_mutex_unlock(&f->log.mu);
  return n;
}

/* The device's options: this fixture's pty and lock directory. */
static gw_serial_options device_options(serial_fixture *f) {
  gw_serial_options so = GW_SERIAL_OPTIONS_INIT;
  so.device = f->slave;
  so.lock_dir = f->lock_dir;
  return so;
}

static int create(serial_fixture *f, gw_framing framing, const gw_serial_options *so, gw_listener_t **out) {
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  o.framing = framing;
  *out = NULL;
  return gw_listener_create_serial(out, f->srv, &o, so);
}

static gw_listener_t *serial_listener(serial_fixture *f, gw_framing framing, const gw_serial_options *so) {
  gw_listener_t *l = NULL;
  int rc = create(f, framing, so, &l);
  if (rc != 0) fprintf(stderr, "gw_listener_create_serial: %s\n", gw_err_name(rc));
  assert_int_equal(rc, 0);
  assert_non_null(l);
  return l;
}

static void device_writes(serial_fixture *f, const char *text) {
  size_t len = strlen(text);
  assert_int_equal(write(f->master, text, len), (ssize_t)len);
}

/* Bytes both ways between the client `fd` and the device. */
static void assert_exchange(serial_fixture *f, int fd, const char *to_device, const char *from_device) {
  char buf[256];
  size_t n = strlen(to_device);
  assert_int_equal(gwt_write_all(f->srv, fd, to_device, n), 0);
  assert_int_equal(gwt_read_fd_exact(f->srv, f->master, buf, n, GWT_TIMEOUT_MS), n);
  assert_memory_equal(buf, to_device, n);
  n = strlen(from_device);
  device_writes(f, from_device);
  assert_int_equal(gwt_read_exact(f->srv, fd, buf, n, GWT_TIMEOUT_MS), n);
  assert_memory_equal(buf, from_device, n);
}

/* Entries in the fixture's lock directory, "." and ".." aside. */
static int lock_files(serial_fixture *f) {
  DIR *d = opendir(f->lock_dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static void line_settings(serial_fixture *f, struct termios *t) { assert_int_equal(tcgetattr(f->master, t), 0); }

static void test_serial_bytes_and_settings(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so = device_options(f);
  so.baud = 115200;
  so.parity = GW_PARITY_EVEN;
  so.stop_bits = 2;
  so.flow_control = GW_FLOW_CONTROL_RTSCTS;
  watch_log(f, "115200 8E2 rtscts");
  gw_listener_t *l = serial_listener(f, GW_FRAMING_RAW, &so);
  struct termios before;
  line_settings(f, &before);
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  assert_exchange(f, fd, "to the device", "from the device");
  struct termios t;
  line_settings(f, &t);
  assert_int_equal(cfgetospeed(&t), B115200);
  assert_int_equal(cfgetispeed(&t), B115200);
  assert_true(t.c_cflag & CSTOPB);
  assert_true(t.c_cflag & CRTSCTS);
  assert_int_equal(t.c_lflag & (ICANON | ECHO | ISIG), 0); /* raw mode */
  assert_true(log_matches(f, NULL) >= 1);                  /* 8 data bits, parity even */
  assert_int_equal(lock_files(f), 1);                      /* the UUCP lock, in lock_dir */
  /* The default open policy, on-connect: the last client's close closes
   * the device and restores its previous settings. */
  close(fd);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  do {
    gwt_pump(f->srv, 10);
    line_settings(f, &t);
  } while (cfgetospeed(&t) == B115200 && gwt_now_ms() < end);
  assert_int_equal(cfgetospeed(&t), cfgetospeed(&before));
}

/* A struct of zeros but its version: 9600 8N1, no flow control. */
static void test_serial_zero_fields_are_defaults(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so;
  memset(&so, 0, sizeof so);
  so.version = GW_SERIAL_OPTIONS_VERSION;
  so.device = f->slave;
  so.lock_dir = f->lock_dir;
  watch_log(f, "9600 8N1)");
  gw_listener_t *l = serial_listener(f, GW_FRAMING_RAW, &so);
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  assert_exchange(f, fd, "x", "y");
  struct termios t;
  line_settings(f, &t);
  assert_int_equal(cfgetospeed(&t), B9600);
  assert_int_equal(t.c_cflag & CSTOPB, 0);
  assert_int_equal(t.c_cflag & CRTSCTS, 0);
  assert_int_equal(t.c_cflag & CSIZE, CS8);
  assert_int_equal(t.c_iflag & (IXON | IXOFF), 0);
  assert_true(log_matches(f, NULL) >= 1);
  close(fd);
}

/* Exclusive, the default: a second client gets one line, then EOF, and the
 * first keeps the port. */
static void test_serial_exclusive(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so = device_options(f);
  gw_listener_t *l = serial_listener(f, GW_FRAMING_RAW, &so);
  int a = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(a >= 0);
  assert_exchange(f, a, "first", "to first");
  int b = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(b >= 0);
  char line[256];
  assert_true(gwt_read_line(f->srv, b, line, sizeof line, GWT_TIMEOUT_MS) > 0);
  assert_non_null(strstr(line, f->slave));
  assert_non_null(strstr(line, "in use"));
  assert_int_equal(gwt_wait_eof(f->srv, b, GWT_TIMEOUT_MS, NULL), 0);
  close(b);
  assert_exchange(f, a, "still first", "still to first");
  close(a);
}

/* Shared with a read-only client: it sees the device's output, its input
 * is discarded. */
static void test_serial_shared_readonly(void **state) {
  serial_fixture *f = *state;
  static const char *const readonly[] = {"127.0.0.0/8"};
  gw_serial_options so = device_options(f);
  so.clients = GW_SERIAL_CLIENTS_SHARED;
  so.readonly_clients = readonly;
  so.readonly_client_count = 1;
  gw_listener_t *l = serial_listener(f, GW_FRAMING_RAW, &so);
  int a = gwt_connect("127.0.0.1", gw_listener_port(l));
  int b = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(a >= 0 && b >= 0);
  assert_true(gwt_wait_stat_eq(f->srv, 1, GWT_STAT(clients), 2, GWT_TIMEOUT_MS));
  /* Both were admitted (shared), neither was refused. */
  gw_stats st;
  assert_int_equal(gw_listener_stats(&st, l), 0);
  assert_int_equal(st.clients, 2);
  assert_int_equal(gwt_write_all(f->srv, a, "ignored", 7), 0);
  char buf[16];
  assert_int_equal(gwt_read_fd_exact(f->srv, f->master, buf, sizeof buf, 300), 0);
  /* The device opens with the first client; its output reaches both. */
  device_writes(f, "to all");
  assert_int_equal(gwt_read_exact(f->srv, a, buf, 6, GWT_TIMEOUT_MS), 6);
  assert_memory_equal(buf, "to all", 6);
  assert_int_equal(gwt_read_exact(f->srv, b, buf, 6, GWT_TIMEOUT_MS), 6);
  assert_memory_equal(buf, "to all", 6);
  close(a);
  close(b);
}

/* Packing by delimiter, stripped, on a length-framed listener: each packet
 * is one message. */
static void test_serial_delimiter_packets(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so = device_options(f);
  so.delimiter = "\r\n";
  so.delimiter_length = 2;
  so.strip_delimiter = 1;
  gw_listener_t *l = serial_listener(f, GW_FRAMING_U16BE, &so);
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  /* A client's message reaches the device without its length prefix. */
  assert_int_equal(gwt_send_frame(f->srv, fd, GW_FRAMING_U16BE, "hi", 2), 0);
  char buf[16];
  assert_int_equal(gwt_read_fd_exact(f->srv, f->master, buf, 2, GWT_TIMEOUT_MS), 2);
  assert_memory_equal(buf, "hi", 2);
  device_writes(f, "ab\r\ncde\r\n");
  assert_int_equal(gwt_read_frame(f->srv, fd, GW_FRAMING_U16BE, buf, sizeof buf, GWT_TIMEOUT_MS), 2);
  assert_memory_equal(buf, "ab", 2);
  assert_int_equal(gwt_read_frame(f->srv, fd, GW_FRAMING_U16BE, buf, sizeof buf, GWT_TIMEOUT_MS), 3);
  assert_memory_equal(buf, "cde", 3);
  close(fd);
}

/* A device that is missing at create is not an error: the listener listens,
 * and a client gets a one-line reason and EOF. */
static void test_serial_missing_device(void **state) {
  serial_fixture *f = *state;
  char path[64];
  snprintf(path, sizeof path, "%s/ttyNOPE", f->lock_dir);
  gw_serial_options so = device_options(f);
  so.device = path;
  gw_listener_t *l = serial_listener(f, GW_FRAMING_RAW, &so);
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  char line[512];
  assert_true(gwt_read_line(f->srv, fd, line, sizeof line, GWT_TIMEOUT_MS) > 0);
  assert_non_null(strstr(line, path));
  assert_non_null(strstr(line, "not available"));
  assert_int_equal(gwt_wait_eof(f->srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
}

static void test_serial_versions(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so = device_options(f);
  gw_listener_t *l = NULL;
  int level = 0;
  watch_log(f, "version");
  so.version = 0;
  assert_int_equal(create(f, GW_FRAMING_RAW, &so, &l), GW_EINVAL);
  so.version = GW_SERIAL_OPTIONS_VERSION + 1;
  assert_int_equal(create(f, GW_FRAMING_RAW, &so, &l), GW_EINVAL);
  assert_int_equal(log_matches(f, &level), 2);
  assert_int_equal(level, GW_LOG_ERROR);
  assert_null(l);
  /* The listener's options are checked as for gw_listener_create(). */
  so.version = GW_SERIAL_OPTIONS_VERSION;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  o.version = 0;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EINVAL);
  o.version = GW_LISTENER_OPTIONS_VERSION + 1;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EINVAL);
  o.version = 1; /* 0.1.0's listener options still serve */
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), 0);
  assert_non_null(l);
}

typedef struct bad_case {
  const char *what; /* in the logged reason */
  int rc;
  gw_serial_options so;
} bad_case;

static void set_raw(void *field, int value) { memcpy(field, &value, sizeof value); }

/* Every refusal returns its code and logs the reason at error level. */
static void test_serial_refusals_are_logged(void **state) {
  serial_fixture *f = *state;
  static const char *const bad_cidr[] = {"10.0.0.1/8"};
  static const char *const null_cidr[] = {NULL};
  bad_case cases[24];
  size_t n = 0;
#define CASE(text, code) (cases[n].what = (text), cases[n].rc = (code), cases[n].so = device_options(f), &cases[n++].so)
  CASE("baud 3 is out of range", GW_EINVAL)->baud = 3;
  CASE("baud 4000001", GW_EINVAL)->baud = 4000001;
  CASE("data_bits 9", GW_EINVAL)->data_bits = 9;
  CASE("data_bits 4", GW_EINVAL)->data_bits = 4;
  CASE("stop_bits 3", GW_EINVAL)->stop_bits = 3;
  set_raw(&CASE("parity is 9", GW_EINVAL)->parity, 9);
  set_raw(&CASE("flow_control is -1", GW_EINVAL)->flow_control, -1);
  set_raw(&CASE("dtr is -7", GW_EINVAL)->dtr, -7);
  set_raw(&CASE("rts is 3", GW_EINVAL)->rts, 3);
  set_raw(&CASE("clients is 3", GW_EINVAL)->clients, 3);
  set_raw(&CASE("open is 2", GW_EINVAL)->open, 2);
  set_raw(&CASE("on_missing is 2", GW_EINVAL)->on_missing, 2);
  set_raw(&CASE("on_loss is 2", GW_EINVAL)->on_loss, 2);
  CASE("device is NULL", GW_EINVAL)->device = NULL;
  CASE("not absolute", GW_EINVAL)->device = "ttyS0";
  {
    gw_serial_options *so = CASE("delimiter_length is 3", GW_EINVAL);
    so->delimiter = "abc";
    so->delimiter_length = 3;
  }
  CASE("delimiter is NULL", GW_EINVAL)->delimiter_length = 1;
  CASE("readonly_clients is NULL", GW_EINVAL)->readonly_client_count = 1;
  {
    gw_serial_options *so = CASE("readonly_clients[0]", GW_EADDRESS);
    so->readonly_clients = bad_cidr;
    so->readonly_client_count = 1;
  }
  {
    gw_serial_options *so = CASE("readonly_clients[0]", GW_EADDRESS);
    so->readonly_clients = null_cidr;
    so->readonly_client_count = 1;
  }
  {
    /* rts_on_send is high by default: deasserting it leaves both low. */
    gw_serial_options *so = CASE("both low", GW_EINVAL);
    so->rs485 = 1;
    so->rs485_rts_on_send_low = 1;
  }
  {
    /* rts_after_send is low by default: asserting it makes both high. */
    gw_serial_options *so = CASE("both high", GW_EINVAL);
    so->rs485 = 1;
    so->rs485_rts_after_send_high = 1;
  }
  {
    gw_serial_options *so = CASE("delay_before_send 101", GW_EINVAL);
    so->rs485 = 1;
    so->rs485_delay_before_send_ms = 101;
  }
  {
    gw_serial_options *so = CASE("rs485 and flow_control rtscts", GW_EINVAL);
    so->rs485 = 1;
    so->flow_control = GW_FLOW_CONTROL_RTSCTS;
  }
#undef CASE
  assert_true(n <= sizeof cases / sizeof *cases);
  for (size_t i = 0; i < n; ++i) {
    watch_log(f, cases[i].what);
    gw_listener_t *l = NULL;
    int rc = create(f, GW_FRAMING_RAW, &cases[i].so, &l);
    int level = 0;
    int seen = log_matches(f, &level);
    if (rc != cases[i].rc || seen != 1 || level != GW_LOG_ERROR)
      fprintf(stderr, "case \"%s\": %s, logged %d times at level %d\n", cases[i].what, gw_err_name(rc), seen, level);
    assert_int_equal(rc, cases[i].rc);
    assert_null(l);
    assert_int_equal(seen, 1);
    assert_int_equal(level, GW_LOG_ERROR);
  }
  /* The same fields, valid: RS-485 with the default levels (the device is
   * opened only for a client, so a pty's lack of RS-485 does not matter
   * here), odd parity, 7 data bits, XON/XOFF, a wait for a missing device. */
  gw_serial_options so = device_options(f);
  so.rs485 = 1;
  so.rs485_delay_after_send_ms = 100;
  so.data_bits = 7;
  so.parity = GW_PARITY_ODD;
  so.flow_control = GW_FLOW_CONTROL_XONXOFF;
  so.on_missing = GW_DEVICE_MISSING_WAIT;
  so.on_loss = GW_DEVICE_LOSS_HOLD;
  so.clients = GW_SERIAL_CLIENTS_KICK_OLD;
  so.dtr = GW_LINE_HIGH;
  so.delimiter = "\0";
  so.delimiter_length = 1;
  gw_listener_t *l = NULL;
  assert_int_equal(create(f, GW_FRAMING_RAW, &so, &l), 0);
  assert_non_null(l);
}

static void on_open_cb(gw_conn_t *c, void *ud) {
  (void)c;
  (void)ud;
}
static void on_close_cb(gw_conn_t *c, gw_close_reason r, void *ud) {
  (void)c;
  (void)r;
  (void)ud;
}

typedef struct other_thread_call {
  serial_fixture *f;
  int rc;
} other_thread_call;

static void *create_from_other_thread(void *arg) {
  other_thread_call *c = arg;
  gw_serial_options so = device_options(c->f);
  gw_listener_t *l = NULL;
  c->rc = create(c->f, GW_FRAMING_RAW, &so, &l);
  return NULL;
}

static void test_serial_arguments(void **state) {
  serial_fixture *f = *state;
  gw_serial_options so = device_options(f);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, NULL), GW_EINVAL);
  assert_int_equal(gw_listener_create_serial(&l, f->srv, NULL, &so), GW_EINVAL);
  assert_int_equal(gw_listener_create_serial(&l, NULL, &o, &so), GW_EINVAL);
  assert_int_equal(gw_listener_create_serial(NULL, f->srv, &o, &so), GW_EINVAL);
  o.on_open = on_open_cb;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EINVAL);
  o.on_open = NULL;
  o.on_close = on_close_cb;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EINVAL);
  o.on_close = NULL;
  o.address = NULL;
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EINVAL);
  o.address = "127.0.0.1:99999";
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), GW_EADDRESS);
  assert_null(l);
  other_thread_call c = {f, 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, create_from_other_thread, &c), 0);
  pthread_join(t, NULL);
  assert_int_equal(c.rc, GW_EWRONGTHREAD);
  /* A serial listener is not for broadcasts: its clients get the device's bytes. */
  o.address = "127.0.0.1:0";
  assert_int_equal(gw_listener_create_serial(&l, f->srv, &o, &so), 0);
  assert_int_equal(gw_listener_broadcast(l, "x", 1), GW_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      SERIAL_TEST(test_serial_bytes_and_settings), SERIAL_TEST(test_serial_zero_fields_are_defaults),
      SERIAL_TEST(test_serial_exclusive),          SERIAL_TEST(test_serial_shared_readonly),
      SERIAL_TEST(test_serial_delimiter_packets),  SERIAL_TEST(test_serial_missing_device),
      SERIAL_TEST(test_serial_versions),           SERIAL_TEST(test_serial_refusals_are_logged),
      SERIAL_TEST(test_serial_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
