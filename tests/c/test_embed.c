/* SPDX-License-Identifier: MIT */
/* Embedding: the firmware's own poll() loop on gw_server_fd() plus
 * gw_server_dispatch(), no thread. The fd is readable exactly when there is
 * work (I/O, a due timer, a cross-thread post or stop), and not otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static int readable_now(gw_server_t *srv) {
  struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

/* dispatch until the fd is quiet; returns the number of dispatches */
static int settle(gw_server_t *srv) {
  int n = 0;
  while (readable_now(srv) && n < 1000) {
    assert_true(gw_server_dispatch(srv) >= 0);
    n++;
  }
  return n;
}

static void test_poll_loop_echo(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  int sfd = gw_server_fd(srv);
  assert_true(sfd >= 0);
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_LINE);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_true(settle(srv) < 1000);
  assert_false(readable_now(srv)); /* nothing to do: not readable */

  int c = gwt_connect("127.0.0.1", gw_listener_port(l));
  /* our own loop: the client socket and the server fd */
  const char *msg = "embedded\n";
  assert_int_equal(write(c, msg, 9), 9);
  char buf[32];
  size_t got = 0;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (got < 9 && gwt_now_ms() < end) {
    struct pollfd p[2] = {{sfd, POLLIN, 0}, {c, POLLIN, 0}};
    assert_true(poll(p, 2, 1000) >= 0);
    if (p[0].revents & POLLIN) assert_int_equal(gw_server_dispatch(srv), 0);
    if (p[1].revents & POLLIN) {
      ssize_t n = read(c, buf + got, sizeof buf - got);
      assert_true(n > 0);
      got += (size_t)n;
    }
  }
  assert_int_equal(got, 9);
  assert_memory_equal(buf, msg, 9);
  assert_int_equal(gw_server_fd(srv), sfd); /* stable */
  assert_true(settle(srv) < 1000);
  assert_false(readable_now(srv));
  close(c);
}

static int fired;
static void on_timer(gw_timer_t *t, void *ud) {
  (void)t;
  (void)ud;
  fired++;
}

static void test_fd_readable_for_timer(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_timer_t *t = NULL;
  assert_int_equal(gw_timer_create(&t, srv, on_timer, NULL), 0);
  assert_int_equal(gw_timer_start(t, 50, 0), 0);
  settle(srv);
  assert_int_equal(fired, 0);
  struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
  assert_int_equal(poll(&p, 1, GWT_TIMEOUT_MS), 1); /* woken for the timer */
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (fired == 0 && gwt_now_ms() < end) gwt_dispatch(srv, 100);
  assert_int_equal(fired, 1);
  settle(srv);
  assert_false(readable_now(srv));
  gw_timer_destroy(t);
  gw_server_destroy(srv);
}

static int post_ran;
static pthread_t main_thread;
static int post_on_main;
static void on_post(void *ud) {
  (void)ud;
  post_ran++;
  post_on_main = pthread_equal(pthread_self(), main_thread);
}

static void *poster(void *arg) {
  usleep(20 * 1000); /* let the main thread block in poll() first */
  gw_server_post(arg, on_post, NULL);
  return NULL;
}

static void *stopper(void *arg) {
  usleep(20 * 1000);
  gw_server_stop(arg);
  return NULL;
}

static void test_fd_readable_for_post_and_stop(void **state) {
  (void)state;
  main_thread = pthread_self();
  gw_server_t *srv = gwt_server();
  settle(srv);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, poster, srv), 0);
  struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
  assert_int_equal(poll(&p, 1, GWT_TIMEOUT_MS), 1); /* woken by the post */
  pthread_join(th, NULL);
  assert_int_equal(gw_server_dispatch(srv), 0);
  assert_int_equal(post_ran, 1);
  assert_int_equal(post_on_main, 1);
  settle(srv);
  assert_false(readable_now(srv));

  assert_int_equal(pthread_create(&th, NULL, stopper, srv), 0);
  assert_int_equal(poll(&p, 1, GWT_TIMEOUT_MS), 1); /* woken by the stop */
  pthread_join(th, NULL);
  assert_true(gwt_pump_until_stopped(srv, GWT_TIMEOUT_MS));
  assert_int_equal(gw_server_dispatch(srv), 1);
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      GWT_TEST(test_poll_loop_echo),
      cmocka_unit_test(test_fd_readable_for_timer),
      cmocka_unit_test(test_fd_readable_for_post_and_stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
