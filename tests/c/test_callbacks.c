/* SPDX-License-Identifier: MIT */
/* API calls made from inside callbacks: send, close this or another
 * connection, stop the server, destroy the server after a stop (ASan must be
 * clean); per-connection user data, ids, listener, peer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "helpers.h"

typedef struct cb_state {
  gw_server_t *srv;
  gw_listener_t *l;
  gw_conn_t *conns[8];
  uint64_t ids[8];
  int nconns;
  int opens, closes, messages;
  int reasons[8];
  int close_rc[4], send_after_close_rc, user_data_ok;
  int destroy_in; /* 1: on_message, 2: on_close, 3: timer, 4: post */
  int stop_in_message;
  int calls_after_destroy;
  int destroyed;
} cb_state;

static cb_state S;

static void cb_open(gw_conn_t *c, void *ud) {
  cb_state *s = ud;
  if (s->destroyed) s->calls_after_destroy++;
  gw_conn_set_user_data(c, &s->ids[s->nconns]);
  s->ids[s->nconns] = gw_conn_id(c);
  s->conns[s->nconns++] = c;
  s->opens++;
  gw_conn_send_message(c, "welcome", 7);
}

static int index_of(cb_state *s, gw_conn_t *c) {
  for (int i = 0; i < s->nconns; i++)
    if (s->conns[i] == c) return i;
  return -1;
}

static void cb_close(gw_conn_t *c, gw_close_reason why, void *ud) {
  cb_state *s = ud;
  int i = index_of(s, c);
  if (i >= 0 && gw_conn_user_data(c) == &s->ids[i]) s->user_data_ok++;
  if (i >= 0) s->conns[i] = NULL;
  s->closes++;
  s->reasons[why]++;
  if (s->destroy_in == 2 && why == GW_CLOSE_STOPPING && !s->destroyed) {
    gw_server_destroy(s->srv);
    s->destroyed = 1;
  }
}

static void cb_message(gw_conn_t *c, const void *data, size_t len, void *ud) {
  cb_state *s = ud;
  if (s->destroyed) s->calls_after_destroy++;
  s->messages++;
  if (len == 4 && memcmp(data, "quit", 4) == 0) {
    gw_conn_send_message(c, "bye", 3);
    s->close_rc[0] = gw_conn_close(c);
    s->close_rc[1] = gw_conn_close(c); /* idempotent */
    s->send_after_close_rc = gw_conn_send_message(c, "late", 4);
    return;
  }
  if (len == 4 && memcmp(data, "kill", 4) == 0) {
    /* close the *other* connection */
    for (int i = 0; i < s->nconns; i++)
      if (s->conns[i] && s->conns[i] != c) s->close_rc[2] = gw_conn_close(s->conns[i]);
    gw_conn_send_message(c, "killed", 6);
    return;
  }
  if (len == 4 && memcmp(data, "stop", 4) == 0) {
    gw_conn_send_message(c, "stopping", 8);
    s->close_rc[3] = gw_server_stop(s->srv);
    if (s->destroy_in == 1) {
      gw_server_destroy(s->srv);
      s->destroyed = 1;
    }
    return;
  }
  gw_conn_send_message(c, data, len);
}

static int port_of_new_server(int destroy_in) {
  memset(&S, 0, sizeof S);
  S.destroy_in = destroy_in;
  S.srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.framing = GW_FRAMING_LINE;
  o.on_open = cb_open;
  o.on_message = cb_message;
  o.on_close = cb_close;
  o.user_data = &S;
  S.l = gwt_listen(S.srv, "127.0.0.1:0", &o);
  assert_non_null(S.l);
  return gw_listener_port(S.l);
}

static int client(int port) {
  char buf[32];
  int fd = gwt_connect_pump(S.srv, "127.0.0.1", port);
  assert_true(fd >= 0);
  assert_int_equal(gwt_read_line(S.srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 7);
  assert_string_equal(buf, "welcome");
  return fd;
}

static void expect_line(gw_server_t *srv, int fd, const char *want) {
  char buf[64];
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), (int)strlen(want));
  assert_string_equal(buf, want);
}

static void test_close_self_in_message(void **state) {
  (void)state;
  int port = port_of_new_server(0);
  int fd = client(port);
  /* "quit" and more in one write: nothing after quit is delivered */
  assert_int_equal(gwt_write_all(S.srv, fd, "echo\nquit\nafter\n", 16), 0);
  expect_line(S.srv, fd, "echo");
  expect_line(S.srv, fd, "bye");
  assert_int_equal(gwt_wait_eof(S.srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  assert_true(gwt_wait_stat_eq(S.srv, 1, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));
  assert_int_equal(S.messages, 2);
  assert_int_equal(S.close_rc[0], 0);
  assert_int_equal(S.close_rc[1], 0);
  assert_int_equal(S.send_after_close_rc, GW_ECLOSED);
  assert_int_equal(S.closes, 1);
  assert_int_equal(S.reasons[GW_CLOSE_LOCAL], 1);
  assert_int_equal(S.user_data_ok, 1);
  gw_server_destroy(S.srv);
}

static void test_close_other_in_message(void **state) {
  (void)state;
  int port = port_of_new_server(0);
  int a = client(port);
  int b = client(port);
  assert_int_equal(gwt_send_frame(S.srv, a, GW_FRAMING_LINE, "kill", 4), 0);
  expect_line(S.srv, a, "killed");
  assert_int_equal(gwt_wait_eof(S.srv, b, GWT_TIMEOUT_MS, NULL), 0);
  close(b);
  assert_true(gwt_wait_stat_eq(S.srv, 1, GWT_STAT(clients), 1, GWT_TIMEOUT_MS));
  assert_int_equal(S.close_rc[2], 0);
  assert_int_equal(S.reasons[GW_CLOSE_LOCAL], 1);
  /* a is unaffected */
  assert_int_equal(gwt_send_frame(S.srv, a, GW_FRAMING_LINE, "again", 5), 0);
  expect_line(S.srv, a, "again");
  assert_int_equal(S.closes, 1);
  close(a);
  assert_true(gwt_wait_stat_eq(S.srv, 1, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));
  assert_int_equal(S.reasons[GW_CLOSE_PEER], 1);
  assert_true(S.ids[0] != S.ids[1]);
  assert_int_equal(S.user_data_ok, 2);
  gw_server_destroy(S.srv);
}

static void test_stop_in_message(void **state) {
  (void)state;
  int port = port_of_new_server(0);
  int a = client(port);
  int b = client(port);
  assert_int_equal(gwt_send_frame(S.srv, a, GW_FRAMING_LINE, "stop", 4), 0);
  expect_line(S.srv, a, "stopping");
  assert_int_equal(gwt_wait_eof(S.srv, a, GWT_TIMEOUT_MS, NULL), 0);
  assert_int_equal(gwt_wait_eof(S.srv, b, GWT_TIMEOUT_MS, NULL), 0);
  close(a);
  close(b);
  assert_true(gwt_pump_until_stopped(S.srv, GWT_TIMEOUT_MS));
  assert_int_equal(S.close_rc[3], 0);
  assert_int_equal(S.closes, 2);
  assert_int_equal(S.reasons[GW_CLOSE_STOPPING], 2);
  gw_server_destroy(S.srv);
}

/* stop + destroy inside on_message: on_close still runs once per connection
 * (GW_CLOSE_STOPPING), no callback after that, the handle is freed when the
 * dispatch returns (ASan/LSan check the rest). */
static void test_destroy_in_message(void **state) {
  (void)state;
  int port = port_of_new_server(1);
  int a = client(port);
  int b = client(port);
  assert_int_equal(gwt_send_frame(S.srv, a, GW_FRAMING_LINE, "stop", 4), 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!S.destroyed && gwt_now_ms() < end) gwt_dispatch(S.srv, 10);
  assert_int_equal(S.destroyed, 1);
  /* the handle is gone: only the sockets are left to look at */
  assert_true(gwt_wait_eof(NULL, a, GWT_TIMEOUT_MS, NULL) >= 0);
  assert_true(gwt_wait_eof(NULL, b, GWT_TIMEOUT_MS, NULL) >= 0);
  assert_int_equal(S.closes, 2);
  assert_int_equal(S.reasons[GW_CLOSE_STOPPING], 2);
  assert_int_equal(S.calls_after_destroy, 0);
  close(a);
  close(b);
}

static void test_destroy_in_close_after_stop(void **state) {
  (void)state;
  int port = port_of_new_server(2);
  int a = client(port);
  int b = client(port);
  assert_int_equal(gw_server_stop(S.srv), 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!S.destroyed && gwt_now_ms() < end) {
    gwt_dispatch(S.srv, 10);
    /* the clients close once they see the end */
    if (a >= 0 && gwt_wait_eof(NULL, a, 0, NULL) == 0) {
      close(a);
      a = -1;
    }
    if (b >= 0 && gwt_wait_eof(NULL, b, 0, NULL) == 0) {
      close(b);
      b = -1;
    }
  }
  assert_int_equal(S.destroyed, 1);
  /* destroy closes the remaining connection at once, still with on_close */
  assert_int_equal(S.closes, 2);
  assert_int_equal(S.reasons[GW_CLOSE_STOPPING], 2);
  if (a >= 0) close(a);
  if (b >= 0) close(b);
}

static void destroy_timer(gw_timer_t *t, void *ud) {
  (void)t;
  gw_server_t *srv = ud;
  gw_server_stop(srv);
  gw_server_destroy(srv);
  S.destroyed = 1;
}

static void test_destroy_in_timer_with_clients(void **state) {
  (void)state;
  int port = port_of_new_server(0);
  int a = client(port);
  gw_timer_t *t = NULL;
  assert_int_equal(gw_timer_create(&t, S.srv, destroy_timer, S.srv), 0);
  assert_int_equal(gw_timer_start(t, 10, 10), 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!S.destroyed && gwt_now_ms() < end) gwt_dispatch(S.srv, 10);
  assert_int_equal(S.destroyed, 1);
  assert_int_equal(S.closes, 1);
  assert_int_equal(S.reasons[GW_CLOSE_STOPPING], 1);
  assert_true(gwt_wait_eof(NULL, a, GWT_TIMEOUT_MS, NULL) >= 0);
  close(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_close_self_in_message),
      cmocka_unit_test(test_close_other_in_message),
      cmocka_unit_test(test_stop_in_message),
      cmocka_unit_test(test_destroy_in_message),
      cmocka_unit_test(test_destroy_in_close_after_stop),
      cmocka_unit_test(test_destroy_in_timer_with_clients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
