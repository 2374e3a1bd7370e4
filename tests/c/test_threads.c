/* SPDX-License-Identifier: MIT */
/* Threads: gw_server_stop and gw_server_post from other threads; loop-thread
 * functions called from another thread return GW_EWRONGTHREAD and do nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void test_cross_thread_stop(void **state) {
  (void)state;
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int port = gw_listener_port(l);
  gwt_loop loop;
  gwt_loop_start(&loop, srv);
  int fd = gwt_connect("127.0.0.1", port);
  char buf[16];
  assert_int_equal(gwt_send_frame(NULL, fd, GW_FRAMING_LINE, "hi", 2), 0);
  assert_int_equal(gwt_read_line(NULL, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 2);

  assert_int_equal(gw_server_stop(srv), 0);
  assert_int_equal(gw_server_stop(srv), 0);
  assert_int_equal(gwt_wait_eof(NULL, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
  assert_int_equal(rec.closes, 1);
  assert_int_equal(rec.reasons[GW_CLOSE_STOPPING], 1);
  gwt_rec_free(&rec);
}

/* ---- posts from several threads ---- */

enum { POSTERS = 4, POSTS = 500 };

typedef struct post_state {
  pthread_t loop_thread;
  int loop_thread_known;
  int ran;
  int wrong_thread;
  int out_of_order;
  int last[POSTERS];
  gw_server_t *srv;
} post_state;

typedef struct post_item {
  post_state *ps;
  int poster, seq;
} post_item;

static post_item items[POSTERS][POSTS];

static void posted(void *arg) {
  post_item *it = arg;
  post_state *ps = it->ps;
  if (!pthread_equal(pthread_self(), ps->loop_thread)) ps->wrong_thread++;
  if (it->seq != ps->last[it->poster] + 1) ps->out_of_order++;
  ps->last[it->poster] = it->seq;
  __atomic_add_fetch(&ps->ran, 1, __ATOMIC_SEQ_CST);
}

typedef struct poster_arg {
  post_state *ps;
  int idx;
  int failures;
} poster_arg;

static void *poster_main(void *a) {
  poster_arg *pa = a;
  for (int i = 0; i < POSTS; i++) {
    items[pa->idx][i].ps = pa->ps;
    items[pa->idx][i].poster = pa->idx;
    items[pa->idx][i].seq = i;
    if (gw_server_post(pa->ps->srv, posted, &items[pa->idx][i]) != 0) pa->failures++;
  }
  return NULL;
}

static void stop_from_loop(void *arg) { gw_server_stop(arg); }

static void test_posts_from_threads(void **state) {
  (void)state;
  static post_state ps;
  memset(&ps, 0, sizeof ps);
  for (int i = 0; i < POSTERS; i++) ps.last[i] = -1;
  gw_server_t *srv = gwt_server();
  ps.srv = srv;
  gwt_loop loop;
  gwt_loop_start(&loop, srv);
  ps.loop_thread = loop.thread;

  pthread_t th[POSTERS];
  poster_arg pa[POSTERS];
  for (int i = 0; i < POSTERS; i++) {
    pa[i].ps = &ps;
    pa[i].idx = i;
    pa[i].failures = 0;
    assert_int_equal(pthread_create(&th[i], NULL, poster_main, &pa[i]), 0);
  }
  for (int i = 0; i < POSTERS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(pa[i].failures, 0);
  }
  /* posted after all the others from this thread: runs after them */
  assert_int_equal(gw_server_post(srv, stop_from_loop, srv), 0);
  assert_int_equal(gwt_loop_join(&loop, GWT_TIMEOUT_MS), 0);
  assert_int_equal(loop.rc, 0);
  assert_int_equal(ps.ran, POSTERS * POSTS);
  assert_int_equal(ps.wrong_thread, 0);
  assert_int_equal(ps.out_of_order, 0);
}

/* ---- wrong thread ---- */

typedef struct wrong_args {
  gw_server_t *srv;
  gw_listener_t *l;
  gw_conn_t *conn;
  gw_timer_t *timer;
  int rc_listener, rc_adopt, rc_timer_create, rc_send, rc_send_msg, rc_close, rc_broadcast;
  int rc_timer_start, rc_timer_stop, rc_stats, rc_lstats, rc_post, fd;
  gw_stats st;
} wrong_args;

static void nop(void *a) { (void)a; }
static void nop_timer(gw_timer_t *t, void *a) {
  (void)t;
  (void)a;
}

static void *wrong_main(void *a) {
  wrong_args *w = a;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  gw_timer_t *t = NULL;
  o.address = "127.0.0.1:0";
  w->rc_listener = gw_listener_create(&l, w->srv, &o);
  w->rc_adopt = gw_listener_adopt(&l, w->srv, 0, &o);
  w->rc_timer_create = gw_timer_create(&t, w->srv, nop_timer, NULL);
  w->rc_send = gw_conn_send(w->conn, "x", 1);
  w->rc_send_msg = gw_conn_send_message(w->conn, "x", 1);
  w->rc_close = gw_conn_close(w->conn);
  w->rc_broadcast = gw_listener_broadcast(w->l, "x", 1);
  w->rc_timer_start = gw_timer_start(w->timer, 1, 0);
  w->rc_timer_stop = gw_timer_stop(w->timer);
  gw_timer_destroy(w->timer); /* void: must do nothing */
  gw_server_destroy(w->srv);  /* void: must do nothing */
  w->rc_stats = gw_server_stats(&w->st, w->srv);
  w->rc_lstats = gw_listener_stats(&w->st, w->l);
  w->rc_post = gw_server_post(w->srv, nop, NULL);
  w->fd = gw_server_fd(w->srv);
  return NULL;
}

static int timer_fired;
static void count_timer(gw_timer_t *t, void *a) {
  (void)t;
  (void)a;
  timer_fired++;
}

static void test_wrong_thread(void **state) {
  (void)state;
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server(); /* this thread is the loop thread */
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 1, GWT_TIMEOUT_MS));
  gw_timer_t *timer = NULL;
  assert_int_equal(gw_timer_create(&timer, srv, count_timer, NULL), 0);

  wrong_args w;
  memset(&w, 0, sizeof w);
  w.srv = srv;
  w.l = l;
  w.conn = gwt_rec_conn(&rec, 0);
  w.timer = timer;
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, wrong_main, &w), 0);
  pthread_join(th, NULL);

  assert_int_equal(w.rc_listener, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_adopt, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_timer_create, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_send, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_send_msg, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_close, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_broadcast, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_timer_start, GW_EWRONGTHREAD);
  assert_int_equal(w.rc_timer_stop, GW_EWRONGTHREAD);
  /* the thread-safe ones work */
  assert_int_equal(w.rc_stats, 0);
  assert_int_equal(w.st.clients, 1);
  assert_int_equal(w.rc_lstats, 0);
  assert_int_equal(w.rc_post, 0);
  assert_int_equal(w.fd, gw_server_fd(srv));

  /* nothing happened: the connection is open and nothing was sent */
  assert_true(gwt_quiet(srv, fd, 30));
  char buf[16];
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "alive", 5), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 5);
  assert_int_equal(gwt_rec_get(&rec, &rec.closes), 0);
  /* the timer was neither destroyed nor started: it still works here */
  assert_int_equal(gw_timer_start(timer, 1, 0), 0);
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (timer_fired == 0 && gwt_now_ms() < end) gwt_dispatch(srv, 10);
  assert_int_equal(timer_fired, 1);
  gw_timer_destroy(timer);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

/* The header's rule covers every function not marked thread-safe, getters too. */
typedef struct getter_args {
  gw_listener_t *l;
  gw_conn_t *c;
  int rc_port, rc_peer;
  uint64_t id;
  gw_listener_t *listener;
  void *user_data;
} getter_args;

static void *getter_main(void *a) {
  getter_args *g = a;
  char buf[64];
  g->rc_port = gw_listener_port(g->l);
  g->rc_peer = gw_conn_peer(buf, sizeof buf, NULL, g->c);
  g->id = gw_conn_id(g->c);
  g->listener = gw_conn_listener(g->c);
  g->user_data = gw_conn_user_data(g->c);
  return NULL;
}

static void test_wrong_thread_getters(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gwt_rec_attach(rec, &o);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  assert_true(gwt_rec_wait(srv, rec, &rec->opens, 1, GWT_TIMEOUT_MS));
  gw_conn_t *conn = gwt_rec_conn(rec, 0);
  gw_conn_set_user_data(conn, rec);
  getter_args g = {l, conn, 0, 0, 0, NULL, NULL};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, getter_main, &g), 0);
  pthread_join(th, NULL);
  /* The listener's port is fixed at creation and the listener lives as
   * long as the server: documented thread-safe. A connection may be freed
   * by the loop thread at any moment: its getters refuse other threads. */
  assert_int_equal(g.rc_port, gw_listener_port(l));
  assert_true(g.rc_port > 0);
  assert_int_equal(g.rc_peer, GW_EWRONGTHREAD);
  assert_true(g.id == 0);
  assert_null(g.listener);
  assert_null(g.user_data);
  assert_true(gw_conn_id(conn) != 0);
  assert_ptr_equal(gw_conn_listener(conn), l);
  assert_ptr_equal(gw_conn_user_data(conn), rec);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cross_thread_stop),
      cmocka_unit_test(test_posts_from_threads),
      cmocka_unit_test(test_wrong_thread),
      GWT_TEST(test_wrong_thread_getters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
