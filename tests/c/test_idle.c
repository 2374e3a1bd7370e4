/* SPDX-License-Identifier: MIT */
/* idle_timeout_ms: a silent client is closed with GW_CLOSE_IDLE within a
 * bounded time; a client that keeps sending is not; 0 disables it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "helpers.h"

enum { IDLE_MS = 200 };

static void test_idle_client_closed_active_kept(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_options o;
  gwt_echo_opts(&o, rec, GW_FRAMING_RAW);
  o.idle_timeout_ms = IDLE_MS;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int port = gw_listener_port(l);

  int64_t t0 = gwt_now_ms();
  int silent = gwt_connect_pump(srv, "127.0.0.1", port);
  int active = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(srv, rec, &rec->opens, 2, GWT_TIMEOUT_MS));
  uint64_t silent_id = gw_conn_id(gwt_rec_conn(rec, 0));
  uint64_t active_id = gw_conn_id(gwt_rec_conn(rec, 1));

  /* the active client sends a byte every IDLE_MS/4 for 3 * IDLE_MS; the
   * silent one sees the server's EOF after IDLE_MS */
  int64_t end = t0 + 3 * IDLE_MS;
  int64_t silent_eof_at = -1;
  while (gwt_now_ms() < end) {
    char c = 'k', back;
    assert_int_equal(gwt_write_all(srv, active, &c, 1), 0);
    assert_int_equal(gwt_read_exact(srv, active, &back, 1, GWT_TIMEOUT_MS), 1);
    gwt_pump(srv, IDLE_MS / 4);
    if (silent_eof_at < 0 && gwt_wait_eof(srv, silent, 0, NULL) == 0) silent_eof_at = gwt_now_ms();
  }
  assert_true(silent_eof_at > 0);
  /* not before its time (with slack for coarse timers) */
  assert_true(silent_eof_at - t0 >= IDLE_MS - 20);
  /* on_close runs once the lingering close ends (peer closes its side) */
  close(silent);
  assert_true(gwt_rec_wait(srv, rec, &rec->closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason_of(rec, silent_id), GW_CLOSE_IDLE);
  assert_int_equal(gwt_rec_reason_of(rec, active_id), 0);
  assert_true(gwt_quiet(srv, active, 0));

  /* once it goes silent, the active one is closed too, within bounds */
  assert_int_equal(gwt_wait_eof(srv, active, GWT_TIMEOUT_MS, NULL), 0);
  close(active);
  assert_true(gwt_rec_wait(srv, rec, &rec->closes, 2, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason_of(rec, active_id), GW_CLOSE_IDLE);
  assert_int_equal(gwt_rec_reason(rec, GW_CLOSE_IDLE), 2);
  assert_int_equal(gwt_stat(srv, GWT_STAT(clients)), 0);
}

/* Output alone does not count as activity: only received data does. */
static void greet_open(gw_conn_t *c, void *ud) {
  gwt_rec_on_open(c, ud);
  gw_conn_send(c, "hello\n", 6);
}

static void test_server_output_is_not_activity(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.idle_timeout_ms = IDLE_MS;
  gwt_rec_attach(rec, &o);
  o.on_open = greet_open;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  char buf[8];
  assert_int_equal(gwt_read_exact(srv, fd, buf, 6, GWT_TIMEOUT_MS), 6);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  assert_true(gwt_rec_wait(srv, rec, &rec->closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(rec, GW_CLOSE_IDLE), 1);
}

static void test_zero_means_never(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gwt_rec_attach(rec, &o);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  gwt_pump(srv, 3 * IDLE_MS);
  assert_int_equal(gwt_rec_get(rec, &rec->closes), 0);
  assert_true(gwt_quiet(srv, fd, 10));
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      GWT_TEST(test_idle_client_closed_active_kept),
      GWT_TEST(test_server_output_is_not_activity),
      GWT_TEST(test_zero_means_never),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
