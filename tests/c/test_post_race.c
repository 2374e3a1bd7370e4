/* SPDX-License-Identifier: MIT */
/* gw_server_post racing gw_server_stop: a post that returned 0 runs exactly
 * once, on the loop thread, before gw_server_run() returns; one that returned
 * GW_ESTATE never runs. There is no third outcome.
 *
 * Each round: a loop thread runs the server, a poster thread posts in a
 * tight loop until a post is refused, and the main thread stops the server
 * at a moment that varies from round to round. When gw_server_run() has
 * returned and the poster has finished, the number of 0-returns must equal
 * the number of runs, and destroying the server must run nothing more. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

enum { ROUNDS = 400 };

typedef struct race {
  gw_server_t *srv;
  pthread_t loop_thread, poster;
  int started;       /* the loop thread is inside gw_server_run */
  long ran;          /* posted functions that ran */
  long wrong_thread; /* ... on a thread other than the loop thread */
  long accepted;     /* gw_server_post returned 0 (poster only, read after join) */
  long refused;      /* returned GW_ESTATE */
  long other;        /* returned anything else */
  long ran_at_return, ran_after_destroy;
  int run_rc;
  int poster_timed_out;
} race;

static void counted(void *arg) {
  race *r = arg;
  if (!pthread_equal(pthread_self(), r->loop_thread)) __atomic_add_fetch(&r->wrong_thread, 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&r->ran, 1, __ATOMIC_SEQ_CST);
}

static void mark_started(void *arg) {
  race *r = arg;
  __atomic_store_n(&r->started, 1, __ATOMIC_SEQ_CST);
}

static void *poster_main(void *arg) {
  race *r = arg;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  for (;;) {
    int rc = gw_server_post(r->srv, counted, r);
    if (rc == 0) {
      r->accepted++;
    } else if (rc == GW_ESTATE) {
      r->refused++;
      break; /* stopped: every later post is refused too */
    } else {
      r->other++;
      break;
    }
    if (gwt_now_ms() > end) {
      r->poster_timed_out = 1;
      break;
    }
  }
  return NULL;
}

/* The loop thread: runs the server, then, once the poster is done (so that
 * the counts are final and nobody uses the handle any more), destroys it. */
static void *loop_main(void *arg) {
  race *r = arg;
  r->run_rc = gw_server_run(r->srv);
  r->ran_at_return = __atomic_load_n(&r->ran, __ATOMIC_SEQ_CST);
  pthread_join(r->poster, NULL);
  gw_server_destroy(r->srv);
  r->ran_after_destroy = __atomic_load_n(&r->ran, __ATOMIC_SEQ_CST);
  return NULL;
}

static int started(void *arg) { return __atomic_load_n(&((race *)arg)->started, __ATOMIC_SEQ_CST); }

static void test_post_vs_stop(void **state) {
  (void)state;
  long total_accepted = 0, total_refused = 0;
  int lost_rounds = 0, extra_rounds = 0;
  for (int round = 0; round < ROUNDS; round++) {
    static race r;
    memset(&r, 0, sizeof r);
    r.srv = gwt_server();
    assert_non_null(r.srv);
    /* Runs first once the loop thread is in gw_server_run: from then on
     * the main thread may stop from "another thread". */
    assert_int_equal(gw_server_post(r.srv, mark_started, &r), 0);
    assert_int_equal(pthread_create(&r.poster, NULL, poster_main, &r), 0);
    assert_int_equal(pthread_create(&r.loop_thread, NULL, loop_main, &r), 0);
    assert_true(gwt_pump_until(NULL, started, &r, GWT_TIMEOUT_MS));
    /* Stop at a different moment each round: right away, or after a
     * few microseconds of posting. */
    if (round % 4) usleep((useconds_t)((round * 37) % 200));
    assert_int_equal(gw_server_stop(r.srv), 0);
    assert_int_equal(pthread_join(r.loop_thread, NULL), 0);

    assert_int_equal(r.run_rc, 0);
    assert_int_equal(r.poster_timed_out, 0);
    assert_int_equal(r.other, 0);
    assert_int_equal(r.refused, 1);
    assert_int_equal(r.wrong_thread, 0);
    if (r.ran != r.accepted) {
      if (r.ran < r.accepted)
        lost_rounds++;
      else
        extra_rounds++;
      fprintf(stderr, "round %d: %ld posts returned 0, %ld ran (%ld before gw_server_run returned)\n", round,
              r.accepted, r.ran, r.ran_at_return);
    }
    /* every accepted post ran before gw_server_run returned */
    assert_int_equal(r.ran_at_return, r.accepted);
    assert_int_equal(r.ran_after_destroy, r.accepted);
    total_accepted += r.accepted;
    total_refused += r.refused;
  }
  fprintf(stderr,
          "%d rounds: %ld posts returned 0 and ran, %ld returned GW_ESTATE; %d rounds lost posts, %d ran extra\n",
          ROUNDS, total_accepted, total_refused, lost_rounds, extra_rounds);
}

/* A post accepted while the server is stopped but before anyone dispatches
 * again still runs: here the loop thread never dispatches again, and the
 * function runs inside gw_server_destroy(). */
static void test_post_runs_at_destroy(void **state) {
  (void)state;
  static race r;
  memset(&r, 0, sizeof r);
  r.loop_thread = pthread_self();
  r.srv = gwt_server();
  assert_non_null(r.srv);
  assert_int_equal(gw_server_post(r.srv, counted, &r), 0);
  assert_int_equal(gw_server_post(r.srv, counted, &r), 0);
  gw_server_destroy(r.srv);
  assert_int_equal(r.ran, 2);
}

/* Posted before a stop, the functions run before the dispatch that reports
 * the stop returns 1; once stopped, posts are refused. */
static void test_post_runs_before_stopped_dispatch(void **state) {
  (void)state;
  static race r;
  memset(&r, 0, sizeof r);
  r.loop_thread = pthread_self();
  r.srv = gwt_server();
  assert_non_null(r.srv);
  assert_int_equal(gw_server_post(r.srv, counted, &r), 0);
  assert_int_equal(gw_server_stop(r.srv), 0);
  assert_true(gwt_pump_until_stopped(r.srv, GWT_TIMEOUT_MS));
  assert_int_equal(r.ran, 1);
  assert_int_equal(gw_server_post(r.srv, counted, &r), GW_ESTATE);
  assert_int_equal(gw_server_dispatch(r.srv), 1);
  gw_server_destroy(r.srv);
  assert_int_equal(r.ran, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_post_vs_stop),
      cmocka_unit_test(test_post_runs_at_destroy),
      cmocka_unit_test(test_post_runs_before_stopped_dispatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
