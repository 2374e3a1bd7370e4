/* SPDX-License-Identifier: MIT */
/* Graceful stop: stop accepting, stop reading, flush queued output (nothing
 * lost for a client that reads), then GW_CLOSE_STOPPING; bounded by
 * stop_timeout_ms for a client that does not; idempotent; GW_ESTATE after. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

/* larger than what the kernel socket buffers can hold (tcp_wmem max 4 MiB) */
enum { PAYLOAD = 16 * 1024 * 1024 };

static unsigned char pattern(size_t i) { return (unsigned char)((i * 40503u) >> 7); }

static void big_open(gw_conn_t *c, void *ud) {
  gwt_rec *rec = ud;
  gwt_rec_on_open(c, ud);
  unsigned char chunk[8192];
  for (size_t off = 0; off < PAYLOAD; off += sizeof chunk) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pattern(off + i);
    int rc = gw_conn_send(c, chunk, sizeof chunk);
    if (rc != 0) {
      rec->send_failures++;
      return;
    }
  }
}

static gw_server_t *big_server(gwt_rec *rec, unsigned stop_timeout_ms, int *port) {
  gwt_rec_init(rec);
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  so.stop_timeout_ms = stop_timeout_ms;
  gw_server_t *srv = gwt_server_opts(&so);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.framing = GW_FRAMING_LINE;
  o.max_output = 2 * PAYLOAD;
  gwt_rec_attach(rec, &o);
  o.on_open = big_open;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  *port = gw_listener_port(l);
  return srv;
}

static void test_stop_flushes_queued_output(void **state) {
  (void)state;
  gwt_rec rec;
  int port;
  gw_server_t *srv = big_server(&rec, 5000, &port);
  int fd = gwt_connect_small("127.0.0.1", port, 16 * 1024);
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 1, GWT_TIMEOUT_MS));
  assert_int_equal(rec.send_failures, 0);
  gwt_pump(srv, 20);
  assert_true(gwt_stat(srv, GWT_STAT(bytes_out)) < PAYLOAD); /* still queued */

  assert_int_equal(gw_server_stop(srv), 0);
  assert_int_equal(gw_server_stop(srv), 0);     /* idempotent */
  assert_int_equal(gw_server_dispatch(srv), 0); /* still flushing */
  /* not accepting any more */
  int late = gwt_connect("127.0.0.1", port);
  if (late >= 0) {
    assert_int_equal(gwt_wait_eof(srv, late, GWT_TIMEOUT_MS, NULL) >= 0, 1);
    close(late);
  }
  assert_int_equal(gwt_rec_get(&rec, &rec.opens), 1);
  /* not reading any more */
  assert_int_equal(gwt_write_all(srv, fd, "late\n", 5), 0);
  /* new listeners are refused while stopping */
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  o.address = "127.0.0.1:0";
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_ESTATE);

  unsigned char *buf = malloc(PAYLOAD);
  assert_int_equal(gwt_read_exact(srv, fd, buf, PAYLOAD, 4 * GWT_TIMEOUT_MS), PAYLOAD);
  for (size_t i = 0; i < PAYLOAD; i++)
    if (buf[i] != pattern(i)) fail_msg("byte %zu differs", i);
  free(buf);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  assert_true(gwt_pump_until_stopped(srv, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_get(&rec, &rec.closes), 1);
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_STOPPING), 1);
  assert_int_equal(gwt_rec_get(&rec, &rec.messages), 0);
  assert_int_equal(gwt_stat(srv, GWT_STAT(bytes_out)), PAYLOAD);
  /* fully stopped: dispatch keeps saying so, posts are refused */
  assert_int_equal(gw_server_dispatch(srv), 1);
  assert_int_equal(gw_server_post(srv, free, NULL), GW_ESTATE);
  assert_int_equal(gw_server_stop(srv), 0);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_stop_timeout_bounds_flush(void **state) {
  (void)state;
  enum { TIMEOUT = 200 };
  gwt_rec rec;
  int port;
  gw_server_t *srv = big_server(&rec, TIMEOUT, &port);
  int fd = gwt_connect_small("127.0.0.1", port, 16 * 1024);
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 1, GWT_TIMEOUT_MS));
  int64_t t0 = gwt_now_ms();
  assert_int_equal(gw_server_stop(srv), 0);
  /* the client never reads */
  assert_true(gwt_pump_until_stopped(srv, GWT_TIMEOUT_MS));
  int64_t took = gwt_now_ms() - t0;
  assert_true(took >= TIMEOUT - 20);
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_STOPPING), 1);
  assert_true(gwt_stat(srv, GWT_STAT(bytes_out)) < PAYLOAD);
  assert_int_equal(gwt_stat(srv, GWT_STAT(clients)), 0);
  /* the client gets what was sent, then the end */
  size_t got = 0;
  assert_true(gwt_wait_eof(NULL, fd, GWT_TIMEOUT_MS, &got) >= 0);
  assert_true(got < PAYLOAD);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_stop_before_run_returns(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  assert_non_null(gwt_listen(srv, "127.0.0.1:0", &o));
  assert_int_equal(gw_server_stop(srv), 0);
  gwt_loop loop;
  gwt_loop_start(&loop, srv);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
}

static void test_stop_idle_server_dispatch(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int port = gw_listener_port(l);
  assert_int_equal(gw_server_stop(srv), 0);
  assert_true(gwt_pump_until_stopped(srv, GWT_TIMEOUT_MS));
  /* the listening socket is closed */
  int fd = gwt_connect("127.0.0.1", port);
  if (fd >= 0) {
    close(fd);
    fail_msg("listener still accepts connections after the stop");
  }
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stop_flushes_queued_output),
      cmocka_unit_test(test_stop_timeout_bounds_flush),
      cmocka_unit_test(test_stop_before_run_returns),
      cmocka_unit_test(test_stop_idle_server_dispatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
