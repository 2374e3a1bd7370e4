/* SPDX-License-Identifier: MIT */
/* The C ABI's promises (gateway.h, "Conventions"): option structs of every
 * version from 1 to the current one are accepted and read only as far as
 * their version goes, 0 and newer versions are refused, zero is every
 * field's default, and the current gw_stats is filled to its end. (A binary
 * linked against 0.1.0 is run against this library by tests/abi/.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

/* gw_listener_options as 0.1.0's header declared it: version 1. */
typedef struct v1_listener_options {
  unsigned version;
  const char *address;
  int backlog;
  gw_framing framing;
  size_t max_frame;
  unsigned max_clients;
  unsigned max_clients_per_ip;
  unsigned idle_timeout_ms;
  int keepalive;
  unsigned keepalive_idle_s, keepalive_interval_s, keepalive_count;
  size_t high_water;
  size_t low_water;
  size_t max_output;
  const char *const *allow;
  size_t allow_count;
  gw_open_fn on_open;
  gw_message_fn on_message;
  gw_close_fn on_close;
  gw_drain_fn on_drain;
  void *user_data;
} v1_listener_options;

/* Version 2 only appended fields: version 1 is its prefix. */
typedef char v1_is_the_prefix[sizeof(v1_listener_options) == offsetof(gw_listener_options, frame_timeout_ms) ? 1 : -1];

/* A v1 struct that ends where a page the process may not read begins: a
 * library that read one byte past version 1's fields would crash the test. */
typedef struct guarded {
  void *map;
  size_t page;
  v1_listener_options *o;
} guarded;

static void guarded_new(guarded *g) {
  g->page = (size_t)sysconf(_SC_PAGESIZE);
  g->map = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(g->map != MAP_FAILED);
  assert_int_equal(mprotect((char *)g->map + g->page, g->page, PROT_NONE), 0);
  g->o = (v1_listener_options *)((char *)g->map + g->page - sizeof(v1_listener_options));
  memset(g->o, 0, sizeof *g->o);
}

static void guarded_free(guarded *g) { munmap(g->map, 2 * g->page); }

static void v1_attach(v1_listener_options *o, gwt_rec *r) {
  o->on_open = gwt_rec_on_open;
  o->on_message = gwt_rec_on_message;
  o->on_close = gwt_rec_on_close;
  o->on_drain = gwt_rec_on_drain;
  o->user_data = r;
  r->echo = 1;
}

/* One line echoed through the listener, then the client closes. */
static void check_line_echo(gw_server_t *srv, gw_listener_t *l) {
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "hello", 5), 0);
  char buf[16];
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 5);
  assert_string_equal(buf, "hello");
  close(fd);
}

/* A version-1 caller of today's library: read only as far as its struct goes. */
static void test_listener_options_v1(void **state) {
  gwt_fixture *f = *state;
  guarded g;
  guarded_new(&g);
  /* 0.1.0's GW_LISTENER_OPTIONS_INIT, spelled out as it was */
  v1_listener_options init = {1, NULL,  128,   GW_FRAMING_RAW, 65536, 0, 0,    0,    0,    0,    0,
                              0, 65536, 16384, 1048576,        NULL,  0, NULL, NULL, NULL, NULL, NULL};
  *g.o = init;
  g.o->address = "127.0.0.1:0";
  g.o->framing = GW_FRAMING_LINE;
  v1_attach(g.o, &f->rec);
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_create(&l, f->srv, (const gw_listener_options *)g.o), 0);
  check_line_echo(f->srv, l);
  /* the same through adopt, and with zeros (the defaults) instead of 0.1.0's values */
  memset(g.o, 0, sizeof *g.o);
  g.o->version = 1;
  g.o->framing = GW_FRAMING_LINE;
  v1_attach(g.o, &f->rec);
  int s = gwt_tcp_socket(1);
  gw_listener_t *adopted = NULL;
  assert_int_equal(gw_listener_adopt(&adopted, f->srv, s, (const gw_listener_options *)g.o), 0);
  check_line_echo(f->srv, adopted);
  assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 2, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_PEER), 2);
  guarded_free(&g);
}

/* Version 2's field: a frame that has begun must complete in time. */
static void test_listener_options_v2_frame_timeout(void **state) {
  gwt_fixture *f = *state;
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_LINE);
  assert_int_equal(o.version, 2);
  o.frame_timeout_ms = 100;
  gw_listener_t *l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int fd = gwt_connect_pump(f->srv, "127.0.0.1", gw_listener_port(l));
  /* complete lines are fine, however long the client takes between them */
  check_line_echo(f->srv, l);
  assert_int_equal(gwt_write_all(f->srv, fd, "par", 3), 0);
  int64_t start = gwt_now_ms();
  /* a graceful close: our FIN, then on_close once the client closes too */
  assert_int_equal(gwt_wait_eof(f->srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  assert_true(gwt_now_ms() - start < 3000);
  close(fd);
  assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 2, GWT_TIMEOUT_MS));
  /* check_line_echo's client closed as a peer; this one was cut off */
  assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_IDLE), 1);
  assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_PEER), 1);

  /* the same struct without the field (0: no deadline) keeps the partial line */
  gwt_rec_free(&f->rec);
  gwt_rec_init(&f->rec);
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_LINE);
  l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  fd = gwt_connect_pump(f->srv, "127.0.0.1", gw_listener_port(l));
  assert_int_equal(gwt_write_all(f->srv, fd, "par", 3), 0);
  gwt_pump(f->srv, 400);
  assert_int_equal(gwt_rec_get(&f->rec, &f->rec.closes), 0);
  close(fd);
}

static void test_listener_options_versions_refused(void **state) {
  gwt_fixture *f = *state;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  static const unsigned bad[] = {0, GW_LISTENER_OPTIONS_VERSION + 1, 3, 100, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.version = bad[i];
    gw_listener_t *l = (gw_listener_t *)&o; /* left alone on failure */
    assert_int_equal(gw_listener_create(&l, f->srv, &o), GW_EINVAL);
    assert_ptr_equal(l, (gw_listener_t *)&o);
    int s = gwt_tcp_socket(1);
    assert_int_equal(gw_listener_adopt(&l, f->srv, s, &o), GW_EINVAL);
    close(s);
    assert_int_equal(gw_listener_create_systemd(&l, NULL, f->srv, "x", &o), GW_EINVAL);
  }
  /* 1 and 2 are both accepted */
  for (unsigned v = 1; v <= GW_LISTENER_OPTIONS_VERSION; v++) {
    o.version = v;
    gw_listener_t *l = NULL;
    assert_int_equal(gw_listener_create(&l, f->srv, &o), 0);
    assert_non_null(l);
  }
}

static void test_server_options_versions(void **state) {
  (void)state;
  gw_server_options o = GW_SERVER_OPTIONS_INIT;
  assert_int_equal(o.version, 1);
  static const unsigned bad[] = {0, GW_SERVER_OPTIONS_VERSION + 1, 100};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.version = bad[i];
    gw_server_t *srv = (gw_server_t *)&o;
    assert_int_equal(gw_server_create(&srv, &o), GW_EINVAL);
    assert_null(srv);
  }
  /* 0 is no level; others outside the enum's range stay refused */
  o.version = GW_SERVER_OPTIONS_VERSION;
  static const int bad_levels[] = {1, 2, 8, -1};
  for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
    o.log_level = (gw_log_level)bad_levels[i];
    gw_server_t *srv = NULL;
    assert_int_equal(gw_server_create(&srv, &o), GW_EINVAL);
  }
}

static void test_init_macros_are_version_and_zeros(void **state) {
  (void)state;
  gw_listener_options lo = GW_LISTENER_OPTIONS_INIT;
  assert_int_equal(lo.version, GW_LISTENER_OPTIONS_VERSION);
  assert_null(lo.address);
  assert_int_equal(lo.backlog, 0);
  assert_int_equal(lo.framing, GW_FRAMING_RAW);
  assert_int_equal(lo.max_frame, 0);
  assert_int_equal(lo.high_water, 0);
  assert_int_equal(lo.low_water, 0);
  assert_int_equal(lo.max_output, 0);
  assert_int_equal(lo.frame_timeout_ms, 0);
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  assert_int_equal(so.version, GW_SERVER_OPTIONS_VERSION);
  assert_int_equal(so.stop_timeout_ms, 0);
  assert_int_equal((int)so.log_level, 0);
}

/* A struct that is all zeros but its version gets the defaults: backlog
 * 128 (0 used to be refused), max_frame 65536 (a frame of 65536 passes,
 * 65537 does not), max_output 1 MiB. */
static gw_conn_t *sent_conn;
static int sent_rc_full, sent_rc_over;
static void send_on_open(gw_conn_t *c, void *ud) {
  (void)ud;
  static unsigned char mib[1024 * 1024 + 1];
  sent_conn = c;
  /* With nothing queued, one byte over max_output is refused before any
   * is written; exactly max_output is taken. */
  sent_rc_over = gw_conn_send(c, mib, sizeof mib);
  sent_rc_full = gw_conn_send(c, mib, sizeof mib - 1);
}

static void test_zero_fields_are_defaults(void **state) {
  gwt_fixture *f = *state;
  gw_listener_options o;
  memset(&o, 0, sizeof o);
  o.version = GW_LISTENER_OPTIONS_VERSION;
  o.framing = GW_FRAMING_U32BE;
  gwt_rec_attach(&f->rec, &o);
  f->rec.echo = 1;
  gw_listener_t *l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int fd = gwt_connect_pump(f->srv, "127.0.0.1", gw_listener_port(l));
  size_t max = 65536;
  unsigned char *big = calloc(1, max + 1);
  unsigned char *back = malloc(max + 8);
  assert_int_equal(gwt_send_frame(f->srv, fd, GW_FRAMING_U32BE, big, max), 0);
  assert_int_equal(gwt_read_frame(f->srv, fd, GW_FRAMING_U32BE, back, max + 8, GWT_TIMEOUT_MS), (long)max);
  assert_int_equal(gwt_send_frame(f->srv, fd, GW_FRAMING_U32BE, big, max + 1), 0);
  /* a graceful close: our FIN, then on_close once the client closes too */
  assert_int_equal(gwt_wait_eof(f->srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_OVERSIZE), 1);
  free(big);
  free(back);

  memset(&o, 0, sizeof o);
  o.version = GW_LISTENER_OPTIONS_VERSION;
  o.on_open = send_on_open;
  l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  sent_conn = NULL;
  fd = gwt_connect_pump(f->srv, "127.0.0.1", gw_listener_port(l));
  assert_non_null(sent_conn);
  assert_int_equal(sent_rc_full, 0);
  assert_int_equal(sent_rc_over, GW_EAGAIN);
  close(fd);

  /* zero high_water with a small low_water, and the reverse: still valid */
  memset(&o, 0, sizeof o);
  o.version = GW_LISTENER_OPTIONS_VERSION;
  o.high_water = 4096; /* below the default low water: the default follows */
  assert_non_null(gwt_listen(f->srv, "127.0.0.1:0", &o));
  o.high_water = 0;
  o.low_water = 70000; /* above the default high water: refused */
  gw_listener_t *bad = NULL;
  o.address = "127.0.0.1:0";
  assert_int_equal(gw_listener_create(&bad, f->srv, &o), GW_EINVAL);
  o.low_water = 0;
  o.backlog = -1;
  assert_int_equal(gw_listener_create(&bad, f->srv, &o), GW_EINVAL);
}

/* Server options of zeros: accepted (log_level 0 used to be refused), the
 * log level is GW_LOG_WARNING (a close, logged at info, is not produced),
 * and the stop timeout is 5000 ms, not "no flushing". */
static void test_server_zero_fields_are_defaults(void **state) {
  (void)state;
  gwt_log log;
  memset(&log, 0, sizeof log);
  pthread_mutex_init(&log.mu, NULL);
  log.needle = "closed (";
  gw_server_options so;
  memset(&so, 0, sizeof so);
  so.version = GW_SERVER_OPTIONS_VERSION;
  so.log = gwt_log_fn;
  so.log_user_data = &log;
  gw_server_t *srv = NULL;
  assert_int_equal(gw_server_create(&srv, &so), 0);
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.on_open = send_on_open;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int fd = gwt_connect_small("127.0.0.1", gw_listener_port(l), 4096);
  sent_conn = NULL;
  assert_true(fd >= 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!sent_conn && gwt_now_ms() < end) gwt_dispatch(srv, 10);
  assert_non_null(sent_conn);
  /* 1 MiB queued for a client that does not read: the stop must wait */
  assert_int_equal(gw_server_stop(srv), 0);
  gwt_pump(srv, 300);
  assert_int_equal(gwt_stat(srv, GWT_STAT(clients)), 1);
  gwt_close_reset(fd);
  assert_true(gwt_pump_until_stopped(srv, GWT_TIMEOUT_MS));
  pthread_mutex_lock(&log.mu);
  int closes_logged = log.matches;
  pthread_mutex_unlock(&log.mu);
  assert_int_equal(closes_logged, 0);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);

  /* the same close at GW_LOG_INFO is logged: the check above can see one */
  memset(&log, 0, sizeof log);
  pthread_mutex_init(&log.mu, NULL);
  log.needle = "closed (";
  so.log_level = GW_LOG_INFO;
  assert_int_equal(gw_server_create(&srv, &so), 0);
  o.on_open = NULL;
  l = gwt_listen(srv, "127.0.0.1:0", &o);
  fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  close(fd);
  assert_true(gwt_pump_until_stat(srv, GWT_STAT(accepted), 1, GWT_TIMEOUT_MS));
  end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (gwt_stat(srv, GWT_STAT(clients)) != 0 && gwt_now_ms() < end) gwt_dispatch(srv, 10);
  pthread_mutex_lock(&log.mu);
  closes_logged = log.matches;
  pthread_mutex_unlock(&log.mu);
  assert_int_equal(closes_logged, 1);
  gw_server_destroy(srv);
}

/* Today's gw_stats is written to its end: bytes_spliced included. */
static void test_stats_fill_every_field(void **state) {
  gwt_fixture *f = *state;
  gw_stats st;
  memset(&st, 0xa5, sizeof st);
  assert_int_equal(gw_server_stats(&st, f->srv), 0);
  assert_int_equal(st.clients, 0);
  assert_int_equal(st.bytes_out, 0);
  assert_int_equal(st.bytes_spliced, 0);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  memset(&st, 0xa5, sizeof st);
  assert_int_equal(gw_listener_stats(&st, l), 0);
  assert_int_equal(st.accepted, 0);
  assert_int_equal(st.bytes_spliced, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      GWT_TEST(test_listener_options_v1),
      GWT_TEST(test_listener_options_v2_frame_timeout),
      GWT_TEST(test_listener_options_versions_refused),
      cmocka_unit_test(test_server_options_versions),
      cmocka_unit_test(test_init_macros_are_version_and_zeros),
      GWT_TEST(test_zero_fields_are_defaults),
      cmocka_unit_test(test_server_zero_fields_are_defaults),
      GWT_TEST(test_stats_fill_every_field),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
