/* SPDX-License-Identifier: MIT */
/* Nested dispatch: a callback may call gw_server_dispatch() (or
 * gw_server_run()), and a callback inside that nested call may call
 * gw_server_destroy(). The server is then freed exactly once, by the
 * outermost run/dispatch; the nested call returns 1 (run: 0) and so does the
 * outermost gw_server_dispatch(). Objects that a nested call closes are freed
 * only once the outermost call is done with its batch.
 *
 * Before the fix, the innermost frame freed the server while the outer frames
 * still used it: ASan reported a heap-use-after-free, a release build aborted
 * with a double free. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

typedef struct nest {
  gwt_rec rec;
  gw_server_t *srv;
  int destroy_in_nested; /* the nested dispatch's post destroys the server */
  int nested_run;        /* nest with gw_server_run instead of gw_server_dispatch */
  int nested;            /* nesting calls made */
  int inner_rc;          /* what the nested call returned */
  int destroyed;
  int calls_after_destroy; /* callbacks other than on_close after destroy */
  int wait_closes;         /* without destroy: nest until this many closes */
  int more_fd;             /* > 0: before nesting, this client sends "more\n" */
  int nested_rounds;       /* > 0: nest for this many dispatches */
} nest;

static nest N;

static void destroy_cb(void *arg) {
  nest *n = arg;
  gw_server_destroy(n->srv);
  n->destroyed = 1;
}

/* Polls and dispatches (nested) until the server stops or `done` holds. */
static int nested_dispatch(nest *n, int (*done)(nest *)) {
  int rc = 0;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (gwt_now_ms() < end) {
    struct pollfd p = {gw_server_fd(n->srv), POLLIN, 0};
    (void)poll(&p, 1, 10);
    rc = gw_server_dispatch(n->srv);
    if (rc != 0 || (done && done(n))) break;
  }
  return rc;
}

static int enough_closes(nest *n) { return n->rec.closes >= n->wait_closes; }

static int rounds_done(nest *n) { return --n->nested_rounds <= 0; }

static void do_nest(nest *n) {
  n->nested++;
  if (n->more_fd > 0) {
    assert_int_equal(write(n->more_fd, "more\n", 5), 5);
    usleep(20 * 1000);
  }
  if (n->nested_rounds > 0) {
    n->inner_rc = nested_dispatch(n, rounds_done);
    return;
  }
  if (n->destroy_in_nested) assert_int_equal(gw_server_post(n->srv, destroy_cb, n), 0);
  if (n->nested_run)
    n->inner_rc = gw_server_run(n->srv);
  else
    n->inner_rc = nested_dispatch(n, n->destroy_in_nested ? NULL : enough_closes);
}

static void on_message(gw_conn_t *c, const void *d, size_t len, void *ud) {
  nest *n = ud;
  if (n->destroyed) n->calls_after_destroy++;
  gwt_rec_on_message(c, d, len, &n->rec);
  if (len == 4 && memcmp(d, "nest", 4) == 0 && n->nested == 0) do_nest(n);
}

static void on_open(gw_conn_t *c, void *ud) { gwt_rec_on_open(c, &((nest *)ud)->rec); }

static void on_close(gw_conn_t *c, gw_close_reason why, void *ud) { gwt_rec_on_close(c, why, &((nest *)ud)->rec); }

static int nest_setup(void **state) {
  (void)state;
  memset(&N, 0, sizeof N);
  gwt_rec_init(&N.rec);
  N.rec.echo = 1;
  N.srv = gwt_server();
  return N.srv ? 0 : -1;
}

static int nest_teardown(void **state) {
  (void)state;
  if (!N.destroyed) gw_server_destroy(N.srv);
  gwt_rec_free(&N.rec);
  return 0;
}

static int listen_port(void) {
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.framing = GW_FRAMING_LINE;
  o.on_open = on_open;
  o.on_message = on_message;
  o.on_close = on_close;
  o.user_data = &N;
  gw_listener_t *l = gwt_listen(N.srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  return gw_listener_port(l);
}

/* Dispatches (outermost) until the server is destroyed; returns the last rc. */
static int outer_until_destroyed(void) {
  int rc = 0;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!N.destroyed && gwt_now_ms() < end) rc = gwt_dispatch(N.srv, 10);
  return rc;
}

static void test_destroy_inside_nested_dispatch(void **state) {
  (void)state;
  N.destroy_in_nested = 1;
  int port = listen_port();
  int a = gwt_connect_pump(N.srv, "127.0.0.1", port);
  int b = gwt_connect_pump(N.srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.opens, 2, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_write_all(NULL, a, "nest\n", 5), 0);
  /* the outermost dispatch that handles "nest" returns 1: destroyed */
  assert_int_equal(outer_until_destroyed(), 1);
  assert_int_equal(N.destroyed, 1);
  assert_int_equal(N.nested, 1);
  assert_int_equal(N.inner_rc, 1);
  /* both connections closed exactly once, as the server stopped */
  assert_int_equal(N.rec.closes, 2);
  assert_int_equal(N.rec.reasons[GW_CLOSE_STOPPING], 2);
  assert_int_equal(N.rec.order_error, 0);
  assert_int_equal(N.calls_after_destroy, 0);
  assert_int_equal(gwt_wait_eof(NULL, a, GWT_TIMEOUT_MS, NULL) >= 0, 1);
  assert_int_equal(gwt_wait_eof(NULL, b, GWT_TIMEOUT_MS, NULL) >= 0, 1);
  close(a);
  close(b);
}

static void test_destroy_inside_nested_run(void **state) {
  (void)state;
  N.destroy_in_nested = 1;
  N.nested_run = 1;
  int port = listen_port();
  int a = gwt_connect_pump(N.srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.opens, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_write_all(NULL, a, "nest\n", 5), 0);
  assert_int_equal(outer_until_destroyed(), 1);
  assert_int_equal(N.nested, 1);
  assert_int_equal(N.inner_rc, 0); /* gw_server_run: stopped */
  assert_int_equal(N.rec.closes, 1);
  assert_int_equal(N.rec.reasons[GW_CLOSE_STOPPING], 1);
  assert_int_equal(N.calls_after_destroy, 0);
  close(a);
}

/* A timer's callback nests a dispatch; a post inside destroys. */
static void nest_timer(gw_timer_t *t, void *ud) {
  (void)t;
  do_nest(ud);
}

static void test_destroy_inside_dispatch_nested_in_timer(void **state) {
  (void)state;
  N.destroy_in_nested = 1;
  int port = listen_port();
  int a = gwt_connect_pump(N.srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.opens, 1, GWT_TIMEOUT_MS));
  gw_timer_t *t = NULL;
  assert_int_equal(gw_timer_create(&t, N.srv, nest_timer, &N), 0);
  assert_int_equal(gw_timer_start(t, 1, 0), 0);
  /* the timer is left alive: the server frees it */
  assert_int_equal(outer_until_destroyed(), 1);
  assert_int_equal(N.inner_rc, 1);
  assert_int_equal(N.rec.closes, 1);
  close(a);
}

/* Without destroy: while the outermost dispatch handles A's "nest", a nested
 * dispatch closes B (which sent a line and its FIN), whose event the outer
 * batch still holds. B must be freed only after the outer batch (ASan). */
static void test_nested_close_freed_after_outer_batch(void **state) {
  (void)state;
  N.wait_closes = 1;
  int port = listen_port();
  int a = gwt_connect_pump(N.srv, "127.0.0.1", port);
  int b = gwt_connect_pump(N.srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.opens, 2, GWT_TIMEOUT_MS));
  gwt_pump(N.srv, 20);
  /* A first, then B: both ready in one epoll batch, A's event first */
  assert_int_equal(gwt_write_all(NULL, a, "nest\n", 5), 0);
  usleep(20 * 1000);
  assert_int_equal(gwt_write_all(NULL, b, "x\n", 2), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  usleep(50 * 1000);
  assert_int_equal(gw_server_dispatch(N.srv), 0);
  assert_int_equal(N.nested, 1);
  assert_int_equal(N.inner_rc, 0);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(N.rec.reasons[GW_CLOSE_PEER], 1);
  /* both got their echo; the server still works */
  char buf[16];
  assert_int_equal(gwt_read_line(N.srv, a, buf, sizeof buf, GWT_TIMEOUT_MS), 4);
  assert_string_equal(buf, "nest");
  assert_int_equal(gwt_read_line(N.srv, b, buf, sizeof buf, GWT_TIMEOUT_MS), 1);
  assert_int_equal(gwt_wait_eof(N.srv, b, GWT_TIMEOUT_MS, NULL), 0);
  assert_int_equal(gwt_send_frame(N.srv, a, GW_FRAMING_LINE, "again", 5), 0);
  assert_int_equal(gwt_read_line(N.srv, a, buf, sizeof buf, GWT_TIMEOUT_MS), 5);
  assert_int_equal(N.rec.order_error, 0);
  close(a);
  close(b);
}

/* A nested dispatch reads other clients (and its caller's own client) while
 * the outer deliver() is still parsing: A's "nest\nafter\n" arrived in one
 * read, and on "nest" the callback dispatches again while B's line and A's
 * next line ("more", sent from inside the callback) are ready. The outer
 * frame's unparsed "after" must survive (each frame reads into its own
 * scratch buffer), and A's "more" must come after it (A is not read again
 * until its deliver() returns). Before: "after" came back as B's bytes. */
static void test_nested_dispatch_keeps_outer_input(void **state) {
  (void)state;
  int port = listen_port();
  int a = gwt_connect_pump(N.srv, "127.0.0.1", port);
  int b = gwt_connect_pump(N.srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(N.srv, &N.rec, &N.rec.opens, 2, GWT_TIMEOUT_MS));
  gwt_pump(N.srv, 20);
  N.more_fd = a;
  N.nested_rounds = 5;
  assert_int_equal(gwt_write_all(NULL, a, "nest\nafter\n", 11), 0);
  usleep(20 * 1000);
  assert_int_equal(gwt_write_all(NULL, b, "BBBBBBBBBBBBBBBBBBBBBBBB\n", 25), 0);
  usleep(50 * 1000);
  assert_int_equal(gw_server_dispatch(N.srv), 0);
  assert_int_equal(N.nested, 1);
  char buf[32];
  const char *want[] = {"nest", "after", "more"};
  for (int i = 0; i < 3; ++i) {
    assert_true(gwt_read_line(N.srv, a, buf, sizeof buf, GWT_TIMEOUT_MS) >= 0);
    assert_string_equal(buf, want[i]);
  }
  assert_int_equal(gwt_read_line(N.srv, b, buf, sizeof buf, GWT_TIMEOUT_MS), 24);
  assert_string_equal(buf, "BBBBBBBBBBBBBBBBBBBBBBBB");
  close(a);
  close(b);
}

#define NEST_TEST(t) cmocka_unit_test_setup_teardown(t, nest_setup, nest_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      NEST_TEST(test_destroy_inside_nested_dispatch),          NEST_TEST(test_destroy_inside_nested_run),
      NEST_TEST(test_destroy_inside_dispatch_nested_in_timer), NEST_TEST(test_nested_close_freed_after_outer_batch),
      NEST_TEST(test_nested_dispatch_keeps_outer_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
