/* SPDX-License-Identifier: MIT */
/* gw_listener_broadcast: every open connection of that listener (and no
 * other) gets the message in the listener's framing; a connection whose queue
 * cannot take it is closed with GW_CLOSE_LIMIT. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void test_broadcast_reaches_listener_clients(void **state) {
  (void)state;
  const gw_framing modes[] = {GW_FRAMING_LINE, GW_FRAMING_U16BE, GW_FRAMING_U32BE};
  for (size_t k = 0; k < 3; k++) {
    gwt_rec rec, rec2;
    gwt_rec_init(&rec);
    gwt_rec_init(&rec2);
    gw_server_t *srv = gwt_server();
    gw_listener_options o = GW_LISTENER_OPTIONS_INIT, o2 = GW_LISTENER_OPTIONS_INIT;
    o.framing = modes[k];
    gwt_rec_attach(&rec, &o);
    gwt_rec_attach(&rec2, &o2);
    gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
    gw_listener_t *l2 = gwt_listen(srv, "127.0.0.1:0", &o2);
    /* nobody connected yet */
    assert_int_equal(gw_listener_broadcast(l, "none", 4), 0);
    int fds[3];
    for (int i = 0; i < 3; i++) fds[i] = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
    int other = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l2));
    assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 3, GWT_TIMEOUT_MS));
    assert_int_equal(gw_listener_broadcast(l, "reading 1", 9), 3);
    assert_int_equal(gw_listener_broadcast(l, "reading 2", 9), 3);
    for (int i = 0; i < 3; i++) {
      char buf[32];
      assert_int_equal(gwt_read_frame(srv, fds[i], modes[k], buf, sizeof buf, GWT_TIMEOUT_MS), 9);
      assert_memory_equal(buf, "reading 1", 9);
      assert_int_equal(gwt_read_frame(srv, fds[i], modes[k], buf, sizeof buf, GWT_TIMEOUT_MS), 9);
      assert_memory_equal(buf, "reading 2", 9);
    }
    assert_true(gwt_quiet(srv, other, 30));
    /* a closed client is not counted */
    close(fds[0]);
    assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 3, GWT_TIMEOUT_MS));
    assert_int_equal(gw_listener_broadcast(l, "reading 3", 9), 2);
    /* beyond max_frame */
    static char big[70000];
    assert_int_equal(gw_listener_broadcast(l, big, 65537), GW_ETOOBIG);
    assert_int_equal(gw_listener_broadcast(NULL, "x", 1), GW_EINVAL);
    close(fds[1]);
    close(fds[2]);
    close(other);
    gw_server_destroy(srv);
    gwt_rec_free(&rec);
    gwt_rec_free(&rec2);
  }
}

static void test_broadcast_closes_full_client(void **state) {
  (void)state;
  enum { MSG = 16 * 1024, MAXOUT = 64 * 1024 };
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.framing = GW_FRAMING_U32BE;
  o.max_output = MAXOUT;
  o.high_water = MAXOUT / 2;
  o.low_water = MAXOUT / 8;
  gwt_rec_attach(&rec, &o);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int port = gw_listener_port(l);
  int reader = gwt_connect_pump(srv, "127.0.0.1", port);
  int stuck = gwt_connect_small("127.0.0.1", port, 4096);
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 2, GWT_TIMEOUT_MS));
  uint64_t stuck_id = gw_conn_id(gwt_rec_conn(&rec, 1));

  unsigned char *msg = malloc(MSG), *buf = malloc(MSG);
  int twos = 0, n = 2;
  /* broadcast until the stuck client's queue cannot take one more: from then
   * on the message reaches only the reader; the reader keeps reading */
  for (int i = 0; i < 4000 && n == 2; i++) {
    memset(msg, 'a' + i % 26, MSG);
    n = gw_listener_broadcast(l, msg, MSG);
    assert_true(n == 1 || n == 2);
    twos += n == 2;
    assert_int_equal(gwt_read_frame(srv, reader, GW_FRAMING_U32BE, buf, MSG, GWT_TIMEOUT_MS), MSG);
    assert_memory_equal(buf, msg, MSG);
  }
  assert_int_equal(n, 1);
  assert_true(twos >= 1);
  /* the stuck client gets every message it was counted for, whole and in
   * order (no gap), then the end */
  int got = 0;
  for (;;) {
    long k = gwt_read_frame(srv, stuck, GW_FRAMING_U32BE, buf, MSG, GWT_TIMEOUT_MS);
    if (k < 0) break;
    assert_int_equal(k, MSG);
    assert_int_equal(buf[0], 'a' + got % 26);
    got++;
  }
  assert_int_equal(got, twos);
  assert_int_equal(gwt_wait_eof(srv, stuck, 100, NULL), 0);
  close(stuck);
  assert_true(gwt_rec_wait(srv, &rec, &rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason_of(&rec, stuck_id), GW_CLOSE_LIMIT);
  /* the reader is still served */
  assert_int_equal(gw_listener_broadcast(l, "after", 5), 1);
  assert_int_equal(gwt_read_frame(srv, reader, GW_FRAMING_U32BE, buf, MSG, GWT_TIMEOUT_MS), 5);
  close(reader);
  free(msg);
  free(buf);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_broadcast_reaches_listener_clients),
      cmocka_unit_test(test_broadcast_closes_full_client),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
