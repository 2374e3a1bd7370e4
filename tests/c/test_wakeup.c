/* SPDX-License-Identifier: MIT */
/* gw_server_wakeup(): from another thread it makes gw_server_fd() readable
 * once and gw_server_dispatch() then returns 0 with nothing else done; from
 * a signal handler (async-signal-safe) it wakes the firmware's own poll loop
 * and a gw_server_run() loop, which then notices the handler's flag.
 *
 * The signal (SIGUSR1) is blocked in the loop thread and raised with
 * pthread_kill() on a helper thread, so that the loop can only wake through
 * gw_server_wakeup(), never through EINTR. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

/* ---- shared with the signal handler (lock-free atomics only) ---- */

static gw_server_t *g_srv;
static int g_flag;       /* set by the handler before it wakes the loop */
static int g_handler_rc; /* what gw_server_wakeup returned inside the handler */
static int g_handled;    /* handler runs */

static void on_sigusr1(int sig) {
  (void)sig;
  int saved = errno;
  __atomic_store_n(&g_flag, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&g_handler_rc, gw_server_wakeup(g_srv), __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&g_handled, 1, __ATOMIC_SEQ_CST);
  errno = saved;
}

typedef struct sig_setup {
  sigset_t old_mask;
  struct sigaction old_action;
} sig_setup;

/* Installs the handler and blocks SIGUSR1 in the calling thread (and so in
 * every thread it creates from now on). */
static void signal_begin(sig_setup *s, gw_server_t *srv) {
  g_srv = srv;
  __atomic_store_n(&g_flag, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&g_handler_rc, -1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&g_handled, 0, __ATOMIC_SEQ_CST);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigusr1;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &s->old_action), 0);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &s->old_mask), 0);
}

static void signal_end(sig_setup *s) {
  assert_int_equal(pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL), 0);
  assert_int_equal(sigaction(SIGUSR1, &s->old_action, NULL), 0);
  g_srv = NULL;
}

/* A thread that unblocks SIGUSR1 and sends it to itself: the handler has run
 * on that thread when pthread_kill() returns. */
static void *raise_main(void *arg) {
  (void)arg;
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
  pthread_kill(pthread_self(), SIGUSR1);
  return NULL;
}

static void raise_on_helper_thread(void) {
  int before = __atomic_load_n(&g_handled, __ATOMIC_SEQ_CST);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, raise_main, NULL), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(__atomic_load_n(&g_handled, __ATOMIC_SEQ_CST), before + 1);
  assert_int_equal(__atomic_load_n(&g_handler_rc, __ATOMIC_SEQ_CST), 0);
}

/* ---- helpers ---- */

/* 1 if gw_server_fd() is readable within timeout_ms. */
static int fd_readable(gw_server_t *srv, int timeout_ms) {
  struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
  int n;
  do n = poll(&p, 1, timeout_ms);
  while (n < 0 && errno == EINTR);
  return n == 1 && (p.revents & POLLIN) != 0;
}

/* Single-threaded: dispatch until the fd has nothing pending. */
static void settle(gw_server_t *srv) {
  for (int i = 0; i < 100 && fd_readable(srv, 0); ++i) assert_int_equal(gw_server_dispatch(srv), 0);
  assert_false(fd_readable(srv, 0));
}

/* Waits (bounded) until gw_server_fd() is no longer readable: a loop running
 * on another thread has consumed the wake-up. 1 if so. */
static int wait_consumed(gw_server_t *srv) {
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (fd_readable(srv, 0)) {
    if (gwt_now_ms() > end) return 0;
    usleep(1000);
  }
  return 1;
}

/* ---- tests ---- */

static void test_null(void **state) {
  (void)state;
  assert_int_equal(gw_server_wakeup(NULL), GW_EINVAL);
}

static void *wakeup_main(void *arg) {
  gw_server_t *srv = arg;
  static int rc;
  rc = gw_server_wakeup(srv);
  return &rc;
}

static void test_from_thread_makes_fd_readable(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  settle(srv);

  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, wakeup_main, srv), 0);
  assert_true(fd_readable(srv, GWT_TIMEOUT_MS));
  void *ret = NULL;
  assert_int_equal(pthread_join(th, &ret), 0);
  assert_int_equal(*(int *)ret, 0);
  /* Nothing else pending: dispatch does the wake-up and returns 0... */
  assert_int_equal(gw_server_dispatch(srv), 0);
  /* ...and the fd is quiet again: one wake-up, one iteration. */
  assert_false(fd_readable(srv, 0));

  /* Several wake-ups before the loop runs coalesce into one iteration. */
  assert_int_equal(gw_server_wakeup(srv), 0);
  assert_int_equal(gw_server_wakeup(srv), 0);
  assert_int_equal(gw_server_wakeup(srv), 0);
  assert_true(fd_readable(srv, 0));
  assert_int_equal(gw_server_dispatch(srv), 0);
  assert_false(fd_readable(srv, 0));

  /* A wake-up is not a stop, and did nothing else. */
  gw_stats st;
  assert_int_equal(gw_server_stats(&st, srv), 0);
  assert_int_equal(st.accepted, 0);
  assert_int_equal(st.refused, 0);
  assert_int_equal(gw_server_dispatch(srv), 0);
  gw_server_destroy(srv);
}

/* Firmware with its own poll loop: the handler sets a flag and wakes the
 * loop; the loop wakes (not by its deadline) and sees the flag. */
static void test_signal_wakes_own_poll_loop(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  settle(srv);
  sig_setup sig;
  signal_begin(&sig, srv);

  raise_on_helper_thread();
  int woke = 0, seen = 0;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!seen) {
    int64_t left = end - gwt_now_ms();
    if (left <= 0) break;
    if (!fd_readable(srv, (int)left)) break; /* deadline: the wake-up never came */
    ++woke;
    assert_int_equal(gw_server_dispatch(srv), 0);
    seen = __atomic_load_n(&g_flag, __ATOMIC_SEQ_CST);
  }
  assert_int_equal(woke, 1);
  assert_int_equal(seen, 1);
  assert_false(fd_readable(srv, 0));

  signal_end(&sig);
  gw_server_destroy(srv);
}

typedef struct hold {
  int held, release, done, seen_flag;
} hold;

static void hold_loop(void *arg) {
  hold *h = arg;
  __atomic_store_n(&h->held, 1, __ATOMIC_SEQ_CST);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!__atomic_load_n(&h->release, __ATOMIC_SEQ_CST) && gwt_now_ms() < end) usleep(500);
  __atomic_store_n(&h->done, 1, __ATOMIC_SEQ_CST);
}

static void check_flag_and_stop(void *arg) {
  hold *h = arg;
  __atomic_store_n(&h->seen_flag, __atomic_load_n(&g_flag, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
  gw_server_stop(g_srv);
}

static int flag_set(void *arg) { return __atomic_load_n((int *)arg, __ATOMIC_SEQ_CST) != 0; }

/* gw_server_run on a thread: a wake-up from a signal handler while the loop
 * is busy leaves the fd readable until the loop iterates, and the running
 * loop takes it (the fd goes quiet again); a second one while it is blocked
 * in its wait is harmless, and a post then sees the handler's flag. */
static void test_signal_wakes_blocked_run(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  settle(srv);
  sig_setup sig;
  signal_begin(&sig, srv); /* before the loop thread: it inherits the block */
  gwt_loop loop;
  gwt_loop_start(&loop, srv);

  hold h;
  memset(&h, 0, sizeof h);
  assert_int_equal(gw_server_post(srv, hold_loop, &h), 0);
  assert_true(gwt_pump_until(NULL, flag_set, &h.held, GWT_TIMEOUT_MS));
  /* The loop is busy in hold_loop and has read its post's wake-up. */
  assert_false(fd_readable(srv, 0));
  raise_on_helper_thread();
  assert_true(fd_readable(srv, 0));
  __atomic_store_n(&h.release, 1, __ATOMIC_SEQ_CST);
  assert_true(gwt_pump_until(NULL, flag_set, &h.done, GWT_TIMEOUT_MS));
  /* gw_server_run iterated for it: the wake-up is consumed. */
  assert_true(wait_consumed(srv));

  /* Now blocked in its wait: wake it again from the handler. */
  __atomic_store_n(&g_flag, 0, __ATOMIC_SEQ_CST);
  raise_on_helper_thread();
  assert_true(wait_consumed(srv));
  assert_int_equal(gw_server_post(srv, check_flag_and_stop, &h), 0);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
  assert_int_equal(h.seen_flag, 1);
  signal_end(&sig);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null),
      cmocka_unit_test(test_from_thread_makes_fd_readable),
      cmocka_unit_test(test_signal_wakes_own_poll_loop),
      cmocka_unit_test(test_signal_wakes_blocked_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
