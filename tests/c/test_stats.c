/* SPDX-License-Identifier: MIT */
/* Counters: clients, accepted, refused, bytes_in, bytes_out, per server and
 * per listener; gw_conn_id unique and never reused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void greet(gw_conn_t *c, void *ud) {
  gwt_rec_on_open(c, ud);
  gw_conn_send(c, "hi!", 3); /* 3 bytes out per connection, unframed */
}

static void test_counters(void **state) {
  (void)state;
  gwt_rec rec, rec2;
  gwt_rec_init(&rec);
  gwt_rec_init(&rec2);
  gw_server_t *srv = gwt_server();
  gw_listener_options o, o2 = GW_LISTENER_OPTIONS_INIT;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  o.on_open = greet;
  o.max_clients = 2;
  gwt_rec_attach(&rec2, &o2);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  gw_listener_t *l2 = gwt_listen(srv, "127.0.0.1:0", &o2);
  int port = gw_listener_port(l);

  int a = gwt_connect_pump(srv, "127.0.0.1", port);
  int b = gwt_connect_pump(srv, "127.0.0.1", port);
  int refused = gwt_connect_pump(srv, "127.0.0.1", port);
  char buf[64];
  assert_int_equal(gwt_read_exact(srv, a, buf, 3, GWT_TIMEOUT_MS), 3);
  assert_int_equal(gwt_read_exact(srv, b, buf, 3, GWT_TIMEOUT_MS), 3);
  assert_int_equal(gwt_write_all(srv, a, "0123456789\n", 11), 0); /* 11 in, 11 out */
  assert_int_equal(gwt_read_exact(srv, a, buf, 11, GWT_TIMEOUT_MS), 11);
  assert_int_equal(gwt_write_all(srv, b, "ab\ncd\n", 6), 0); /* 6 in, 6 out */
  assert_int_equal(gwt_read_exact(srv, b, buf, 6, GWT_TIMEOUT_MS), 6);
  assert_int_equal(gwt_wait_eof(srv, refused, GWT_TIMEOUT_MS, NULL), 0);
  close(refused);

  gw_stats st;
  assert_int_equal(gw_server_stats(&st, srv), 0);
  assert_int_equal(st.clients, 2);
  assert_int_equal(st.accepted, 2);
  assert_int_equal(st.refused, 1);
  assert_int_equal(st.bytes_in, 17);
  assert_int_equal(st.bytes_out, 3 + 3 + 17);
  gw_stats ls;
  assert_int_equal(gw_listener_stats(&ls, l), 0);
  assert_memory_equal(&ls, &st, sizeof st);
  assert_int_equal(gw_listener_stats(&ls, l2), 0);
  assert_int_equal(ls.clients + ls.accepted + ls.refused + ls.bytes_in + ls.bytes_out, 0);

  /* ids are unique and not reused after a close */
  uint64_t id_a = gw_conn_id(gwt_rec_conn(&rec, 0));
  uint64_t id_b = gw_conn_id(gwt_rec_conn(&rec, 1));
  assert_true(id_a != id_b);
  close(a);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 1, GWT_TIMEOUT_MS));
  int c = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_int_equal(gwt_read_exact(srv, c, buf, 3, GWT_TIMEOUT_MS), 3);
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 3, GWT_TIMEOUT_MS));
  uint64_t id_c = gw_conn_id(gwt_rec_conn(&rec, 2));
  assert_true(id_c != id_a && id_c != id_b);

  assert_int_equal(gw_server_stats(&st, srv), 0);
  assert_int_equal(st.clients, 2);
  assert_int_equal(st.accepted, 3);
  assert_int_equal(st.refused, 1);
  assert_int_equal(st.bytes_out, 3 + 3 + 17 + 3);
  close(b);
  close(c);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));
  assert_int_equal(gw_listener_stats(&ls, l), 0);
  assert_int_equal(ls.clients, 0);
  assert_int_equal(ls.accepted, 3);
  assert_int_equal(gw_server_stats(NULL, srv), GW_EINVAL);
  assert_int_equal(gw_listener_stats(&ls, NULL), GW_EINVAL);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
  gwt_rec_free(&rec2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
