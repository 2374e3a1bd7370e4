/* SPDX-License-Identifier: MIT */
/* Many concurrent clients, each echoing, with the loop on its own thread
 * (gw_server_run) and the clients on the test thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define NCLIENTS 200

static void test_many_clients_echo(void **state) {
  (void)state;
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  o.backlog = 512;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int port = gw_listener_port(l);

  gwt_loop loop;
  gwt_loop_start(&loop, srv);

  static int fds[NCLIENTS];
  for (int i = 0; i < NCLIENTS; i++) {
    fds[i] = gwt_connect("127.0.0.1", port);
    assert_true(fds[i] >= 0);
  }
  assert_true(gwt_rec_wait(NULL, &rec, &rec.opens, NCLIENTS, GWT_TIMEOUT_MS));
  /* every client sends before anyone reads: all are open at once */
  for (int i = 0; i < NCLIENTS; i++) {
    char line[64];
    int n = snprintf(line, sizeof line, "client %d says %d", i, i * 7919);
    assert_int_equal(gwt_send_frame(NULL, fds[i], GW_FRAMING_LINE, line, (size_t)n), 0);
  }
  for (int i = NCLIENTS - 1; i >= 0; i--) {
    char line[64], buf[64];
    int n = snprintf(line, sizeof line, "client %d says %d", i, i * 7919);
    assert_int_equal(gwt_read_line(NULL, fds[i], buf, sizeof buf, GWT_TIMEOUT_MS), n);
    assert_string_equal(buf, line);
  }
  gw_stats st;
  assert_int_equal(gw_server_stats(&st, srv), 0);
  assert_int_equal(st.clients, NCLIENTS);
  assert_int_equal(st.accepted, NCLIENTS);
  assert_int_equal(st.refused, 0);
  assert_int_equal(gwt_rec_get(&rec, &rec.send_failures), 0);

  for (int i = 0; i < NCLIENTS; i++) close(fds[i]);
  assert_true(gwt_rec_wait(NULL, &rec, &rec.closes, NCLIENTS, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_PEER), NCLIENTS);
  assert_int_equal(gwt_rec_get(&rec, &rec.order_error), 0);
  assert_true(gwt_wait_stat_eq(srv, 0, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_stat(srv, GWT_STAT(accepted)), NCLIENTS);

  assert_int_equal(gw_server_stop(srv), 0);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
  gwt_rec_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_clients_echo),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
