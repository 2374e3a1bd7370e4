/* SPDX-License-Identifier: MIT */
/* Timers: one-shot, periodic, stop, restart, start and destroy from the own
 * callback, ordering, zero delay, timers left alive at destroy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "helpers.h"

typedef struct tstate {
  int fired;
  int64_t at[16];
  int stop_after;    /* gw_timer_stop from the callback at this count */
  int destroy_after; /* gw_timer_destroy from the callback at this count */
  int restart_until; /* one-shot restarted from the callback until this count */
  int rc;
  int *order; /* shared order log */
  int *norder;
  int tag;
} tstate;

static void tick(gw_timer_t *t, void *ud) {
  tstate *s = ud;
  if (s->fired < 16) s->at[s->fired] = gwt_now_ms();
  /* An atomic increment: the threaded test reads it from another thread
   * while the loop thread's timer runs (a data race for TSan otherwise). */
  __atomic_add_fetch(&s->fired, 1, __ATOMIC_SEQ_CST);
  if (s->order) s->order[(*s->norder)++] = s->tag;
  if (s->stop_after && s->fired == s->stop_after) s->rc = gw_timer_stop(t);
  if (s->destroy_after && s->fired == s->destroy_after) gw_timer_destroy(t);
  if (s->restart_until && s->fired < s->restart_until) s->rc = gw_timer_start(t, 5, 0);
}

static gw_timer_t *mk(gw_server_t *srv, tstate *s) {
  gw_timer_t *t = NULL;
  assert_int_equal(gw_timer_create(&t, srv, tick, s), 0);
  assert_non_null(t);
  return t;
}

static int fired_at_least(void *a) {
  tstate *s = a;
  return s->fired >= s->tag;
}

static void wait_fired(gw_server_t *srv, tstate *s, int n) {
  int saved = s->tag;
  s->tag = n;
  assert_true(gwt_pump_until(srv, fired_at_least, s, GWT_TIMEOUT_MS));
  s->tag = saved;
}

static void test_one_shot(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  tstate s;
  memset(&s, 0, sizeof s);
  gw_timer_t *t = mk(srv, &s);
  gwt_pump(srv, 30);
  assert_int_equal(s.fired, 0); /* created stopped */
  int64_t t0 = gwt_now_ms();
  assert_int_equal(gw_timer_start(t, 50, 0), 0);
  wait_fired(srv, &s, 1);
  assert_true(s.at[0] - t0 >= 45);
  gwt_pump(srv, 120);
  assert_int_equal(s.fired, 1);
  /* restart a fired one-shot */
  assert_int_equal(gw_timer_start(t, 10, 0), 0);
  wait_fired(srv, &s, 2);
  gwt_pump(srv, 40);
  assert_int_equal(s.fired, 2);
  gw_timer_destroy(t);
  gw_server_destroy(srv);
}

static void test_periodic_and_stop(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  tstate s;
  memset(&s, 0, sizeof s);
  s.stop_after = 5;
  gw_timer_t *t = mk(srv, &s);
  int64_t t0 = gwt_now_ms();
  assert_int_equal(gw_timer_start(t, 10, 20), 0);
  wait_fired(srv, &s, 5);
  assert_int_equal(s.rc, 0);
  gwt_pump(srv, 100);
  assert_int_equal(s.fired, 5); /* stopped from its callback */
  /* the n-th firing is not early: 10 + 20 * (n - 1) ms */
  assert_true(s.at[4] - t0 >= 10 + 4 * 20 - 5);
  /* can be started again, and stopped from outside */
  s.stop_after = 0;
  assert_int_equal(gw_timer_start(t, 0, 10), 0);
  wait_fired(srv, &s, 7);
  assert_int_equal(gw_timer_stop(t), 0);
  int n = s.fired;
  gwt_pump(srv, 60);
  assert_int_equal(s.fired, n);
  assert_int_equal(gw_timer_stop(t), 0); /* stopping a stopped timer */
  gw_timer_destroy(t);
  gw_server_destroy(srv);
}

static void test_destroy_from_own_callback(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  tstate s;
  memset(&s, 0, sizeof s);
  s.destroy_after = 3;
  gw_timer_t *t = mk(srv, &s);
  assert_int_equal(gw_timer_start(t, 5, 5), 0);
  wait_fired(srv, &s, 3);
  gwt_pump(srv, 60);
  assert_int_equal(s.fired, 3);
  gw_server_destroy(srv);
}

static void test_restart_from_own_callback(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  tstate s;
  memset(&s, 0, sizeof s);
  s.restart_until = 4;
  gw_timer_t *t = mk(srv, &s);
  assert_int_equal(gw_timer_start(t, 5, 0), 0);
  wait_fired(srv, &s, 4);
  assert_int_equal(s.rc, 0);
  gwt_pump(srv, 50);
  assert_int_equal(s.fired, 4);
  gw_timer_destroy(t);
  gw_server_destroy(srv);
}

static void test_order_and_zero_delay(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  int order[8], n = 0;
  tstate a, b, c;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  a.order = b.order = c.order = order;
  a.norder = b.norder = c.norder = &n;
  a.tag = 1;
  b.tag = 2;
  c.tag = 3;
  gw_timer_t *ta = mk(srv, &a), *tb = mk(srv, &b), *tc = mk(srv, &c);
  assert_int_equal(gw_timer_start(ta, 60, 0), 0);
  assert_int_equal(gw_timer_start(tb, 20, 0), 0);
  assert_int_equal(gw_timer_start(tc, 0, 0), 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (n < 3 && gwt_now_ms() < end) gwt_dispatch(srv, 5);
  assert_int_equal(n, 3);
  assert_int_equal(order[0], 3);
  assert_int_equal(order[1], 2);
  assert_int_equal(order[2], 1);
  gw_timer_destroy(ta);
  gw_timer_destroy(tb);
  /* tc left alive: the server frees it (LSan checks) */
  (void)tc;
  gw_server_destroy(srv);
}

static void test_timers_keep_running_server_alive(void **state) {
  (void)state;
  /* a periodic timer under gw_server_run, stopped via a cross-thread stop */
  gw_server_t *srv = gwt_server();
  tstate s;
  memset(&s, 0, sizeof s);
  gw_timer_t *t = mk(srv, &s);
  assert_int_equal(gw_timer_start(t, 1, 5), 0);
  gwt_loop loop;
  gwt_loop_start(&loop, srv);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (__atomic_load_n(&s.fired, __ATOMIC_SEQ_CST) < 3 && gwt_now_ms() < end) usleep(1000);
  assert_true(__atomic_load_n(&s.fired, __ATOMIC_SEQ_CST) >= 3);
  assert_int_equal(gw_server_stop(srv), 0);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_shot),
      cmocka_unit_test(test_periodic_and_stop),
      cmocka_unit_test(test_destroy_from_own_callback),
      cmocka_unit_test(test_restart_from_own_callback),
      cmocka_unit_test(test_order_and_zero_delay),
      cmocka_unit_test(test_timers_keep_running_server_alive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
