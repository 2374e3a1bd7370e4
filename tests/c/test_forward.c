/* SPDX-License-Identifier: MIT */
/* gw_listener_create_forward(): a listener whose clients are forwarded to a
 * tcp:// (by IP or by host name) or unix: backend, which the test runs
 * itself on a thread (a blocking echo server that greets each connection
 * first, so that bytes are seen in both directions independently); bad
 * backend strings (GW_EADDRESS), callbacks (GW_EINVAL), the wrong thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

#define GREETING "backend here"

/* ---- the backend: an echo server on its own thread ---- */

typedef struct echo_backend {
  int lfd;
  pthread_t thread;
  int stop;   /* set by the test thread, read by the echo thread: __atomic_* */
  int served; /* connections accepted (read after join) */
} echo_backend;

static void serve_one(int fd) {
  char buf[4096];
  const char greeting[] = GREETING "\n";
  if (write(fd, greeting, sizeof greeting - 1) != (ssize_t)(sizeof greeting - 1)) return;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return;
    if (write(fd, buf, (size_t)n) != n) return;
  }
}

static void *echo_main(void *arg) {
  echo_backend *b = arg;
  while (!__atomic_load_n(&b->stop, __ATOMIC_SEQ_CST)) {
    struct pollfd p = {b->lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(b->lfd, NULL, NULL);
    if (fd < 0) continue;
    b->served++;
    serve_one(fd);
    close(fd);
  }
  return NULL;
}

static void echo_start(echo_backend *b, int lfd) {
  memset(b, 0, sizeof *b);
  b->lfd = lfd;
  assert_int_equal(pthread_create(&b->thread, NULL, echo_main, b), 0);
}

static void echo_stop(echo_backend *b) {
  __atomic_store_n(&b->stop, 1, __ATOMIC_SEQ_CST);
  pthread_join(b->thread, NULL);
  close(b->lfd);
}

/* ---- the gateway side ---- */

static gw_server_t *logged_server(gwt_log *log, const char *needle) {
  memset(log, 0, sizeof *log);
  pthread_mutex_init(&log->mu, NULL);
  log->needle = needle;
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  so.log = gwt_log_fn;
  so.log_user_data = log;
  so.log_level = GW_LOG_DEBUG;
  gw_server_t *srv = gwt_server_opts(&so);
  assert_non_null(srv);
  return srv;
}

static int log_matches(gwt_log *log) {
  pthread_mutex_lock(&log->mu);
  int n = log->matches;
  pthread_mutex_unlock(&log->mu);
  return n;
}

static gw_listener_t *forward(gw_server_t *srv, const char *backend, gw_framing framing) {
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  o.framing = framing;
  gw_listener_t *l = NULL;
  int rc = gw_listener_create_forward(&l, srv, &o, backend);
  if (rc != 0) fprintf(stderr, "gw_listener_create_forward(%s): %s\n", backend, gw_err_name(rc));
  assert_int_equal(rc, 0);
  assert_non_null(l);
  return l;
}

/* A client of `l`: the backend's greeting arrives (backend -> client
 * without any client byte), then what it sends comes back (both ways). */
static int assert_round_trip(gw_server_t *srv, gw_listener_t *l) {
  char line[256];
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  assert_int_equal(gwt_read_line(srv, fd, line, sizeof line, GWT_TIMEOUT_MS), (int)strlen(GREETING));
  assert_string_equal(line, GREETING);
  const char ping[] = "ping through the gateway\n";
  assert_int_equal(gwt_write_all(srv, fd, ping, sizeof ping - 1), 0);
  assert_int_equal(gwt_read_line(srv, fd, line, sizeof line, GWT_TIMEOUT_MS), (int)sizeof ping - 2);
  assert_string_equal(line, "ping through the gateway");
  return fd;
}

static void test_forward_tcp_ip(void **state) {
  (void)state;
  echo_backend b;
  int lfd = gwt_tcp_socket(1);
  echo_start(&b, lfd);
  char backend[64];
  snprintf(backend, sizeof backend, "tcp://127.0.0.1:%d", gwt_local_port(lfd));
  gw_server_t *srv = gwt_server();
  gw_listener_t *l = forward(srv, backend, GW_FRAMING_RAW);
  int fd = assert_round_trip(srv, l);
  /* A bulk transfer, in pieces (the backend echoes each before the next
   * is sent): large reads switch a raw forward to splice(). */
  static unsigned char out[32768], in[32768];
  for (int piece = 0; piece < 32; ++piece) {
    for (size_t i = 0; i < sizeof out; ++i) out[i] = (unsigned char)(i * 7 + (size_t)piece);
    assert_int_equal(gwt_write_all(srv, fd, out, sizeof out), 0);
    assert_int_equal(gwt_read_exact(srv, fd, in, sizeof in, GWT_TIMEOUT_MS), sizeof in);
    assert_memory_equal(in, out, sizeof out);
  }
  gw_stats st;
  assert_int_equal(gw_listener_stats(&st, l), 0);
  assert_int_equal(st.accepted, 1);
  assert_true(st.bytes_in + st.bytes_out + st.bytes_spliced > 0);
  /* The client's close reaches the backend, which closes its side. */
  shutdown(fd, SHUT_WR);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
  gw_server_destroy(srv);
  echo_stop(&b);
  assert_int_equal(b.served, 1);
}

/* A framed listener checks its clients' messages and passes them on as
 * framed: an oversized line closes the client and never reaches the backend. */
static void test_forward_framed(void **state) {
  (void)state;
  echo_backend b;
  int lfd = gwt_tcp_socket(1);
  echo_start(&b, lfd);
  char backend[64];
  snprintf(backend, sizeof backend, "tcp://127.0.0.1:%d", gwt_local_port(lfd));
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  o.framing = GW_FRAMING_LINE;
  o.max_frame = 32;
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, backend), 0);
  int fd = assert_round_trip(srv, l);
  char big[64];
  memset(big, 'x', sizeof big);
  assert_int_equal(gwt_write_all(srv, fd, big, sizeof big), 0);
  size_t echoed = 0;
  assert_true(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, &echoed) >= 0);
  assert_int_equal(echoed, 0);
  close(fd);
  gw_server_destroy(srv);
  echo_stop(&b);
}

static void test_forward_unix(void **state) {
  (void)state;
  char dir[] = "/tmp/gwt-forward-XXXXXX";
  assert_non_null(mkdtemp(dir));
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s/backend.sock", dir);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(lfd >= 0);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
  assert_int_equal(listen(lfd, 16), 0);
  echo_backend b;
  echo_start(&b, lfd);
  char backend[sizeof sun.sun_path + 8];
  snprintf(backend, sizeof backend, "unix:%s", sun.sun_path);
  gw_server_t *srv = gwt_server();
  gw_listener_t *l = forward(srv, backend, GW_FRAMING_RAW);
  int fd = assert_round_trip(srv, l);
  close(fd);
  gw_server_destroy(srv);
  echo_stop(&b);
  assert_int_equal(b.served, 1);
  unlink(sun.sun_path);
  rmdir(dir);
}

/* A host name is resolved off the loop (the server's resolver, made for
 * it); "localhost" is in every /etc/hosts. The server is destroyed with the
 * client still connected: the forwarder, its name and the resolver must go
 * before the loop (ASan sees it otherwise). */
static void test_forward_host_name(void **state) {
  (void)state;
  echo_backend b;
  int lfd = gwt_tcp_socket(1);
  echo_start(&b, lfd);
  char backend[64];
  snprintf(backend, sizeof backend, "tcp://localhost:%d", gwt_local_port(lfd));
  gwt_log log;
  gw_server_t *srv = logged_server(&log, "resolved");
  gw_listener_t *l = forward(srv, backend, GW_FRAMING_RAW);
  int fd = assert_round_trip(srv, l);
  assert_true(log_matches(&log) >= 1);
  close(fd); /* the backend serves one connection at a time */
  /* A second listener with a name shares the resolver. */
  gw_listener_t *l2 = forward(srv, backend, GW_FRAMING_RAW);
  fd = assert_round_trip(srv, l2);
  gw_server_destroy(srv);
  close(fd);
  echo_stop(&b);
  assert_int_equal(b.served, 2);
}

/* A name that is still being looked up when the server is destroyed. */
static void test_forward_destroy_during_lookup(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  (void)forward(srv, "tcp://name-that-does-not-resolve.invalid:7", GW_FRAMING_RAW);
  gw_server_destroy(srv);
}

/* A backend that refuses: the client is closed (and the reason logged). */
static void test_forward_unreachable(void **state) {
  (void)state;
  int closed = gwt_tcp_socket(0); /* bound, not listening: connections are refused */
  char backend[64];
  snprintf(backend, sizeof backend, "tcp://127.0.0.1:%d", gwt_local_port(closed));
  gwt_log log;
  gw_server_t *srv = logged_server(&log, "closing the client");
  gw_listener_t *l = forward(srv, backend, GW_FRAMING_RAW);
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(fd >= 0);
  assert_true(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL) >= 0);
  assert_true(log_matches(&log) >= 1);
  close(fd);
  close(closed);
  gw_server_destroy(srv);
}

static void test_forward_bad_backend_strings(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "127.0.0.1:7000",    /* no scheme */
      "tcp://127.0.0.1",   /* no port */
      "tcp://127.0.0.1:0", /* port 0 is no backend */
      "tcp://127.0.0.1:65536",
      "tcp://127.0.0.1:007",
      "tcp://::1:7000", /* IPv6 without brackets */
      "tcp://[::1:7000",
      "udp://127.0.0.1:7000",
      "unix:relative/path.sock",
      "unix:",
      "serial:/dev/ttyS0", /* that is gw_listener_create_serial() */
      "tcp://bad_name!:7000",
  };
  gwt_log log;
  gw_server_t *srv = logged_server(&log, "gw_listener_create_forward");
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
    gw_listener_t *l = NULL;
    int rc = gw_listener_create_forward(&l, srv, &o, bad[i]);
    if (rc != GW_EADDRESS) fprintf(stderr, "backend \"%s\": %s\n", bad[i], gw_err_name(rc));
    assert_int_equal(rc, GW_EADDRESS);
    assert_null(l);
    assert_int_equal(log_matches(&log), (int)i + 1);
    assert_int_equal(log.match_level, GW_LOG_ERROR);
  }
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, NULL), GW_EINVAL);
  assert_int_equal(gw_listener_create_forward(NULL, srv, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
  assert_int_equal(gw_listener_create_forward(&l, NULL, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
  assert_int_equal(gw_listener_create_forward(&l, srv, NULL, "tcp://127.0.0.1:7"), GW_EINVAL);
  o.address = NULL;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
  o.address = "127.0.0.1:99999";
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), GW_EADDRESS);
  o.address = "127.0.0.1:0";
  o.version = 0;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
  o.version = GW_LISTENER_OPTIONS_VERSION + 1;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
  assert_null(l);
  gw_stats st;
  assert_int_equal(gw_server_stats(&st, srv), 0);
  gw_server_destroy(srv);
}

static void on_open_cb(gw_conn_t *c, void *ud) {
  (void)c;
  (void)ud;
}
static void on_message_cb(gw_conn_t *c, const void *d, size_t n, void *ud) {
  (void)c;
  (void)d;
  (void)n;
  (void)ud;
}
static void on_close_cb(gw_conn_t *c, gw_close_reason r, void *ud) {
  (void)c;
  (void)r;
  (void)ud;
}
static void on_drain_cb(gw_conn_t *c, void *ud) {
  (void)c;
  (void)ud;
}

/* The backend handles the connections: any callback is refused. */
static void test_forward_callbacks_refused(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  for (int which = 0; which < 4; ++which) {
    gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
    o.address = "127.0.0.1:0";
    if (which == 0) o.on_open = on_open_cb;
    if (which == 1) o.on_message = on_message_cb;
    if (which == 2) o.on_close = on_close_cb;
    if (which == 3) o.on_drain = on_drain_cb;
    gw_listener_t *l = NULL;
    assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), GW_EINVAL);
    assert_null(l);
  }
  /* user_data alone is ignored. */
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  o.user_data = &o;
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_create_forward(&l, srv, &o, "tcp://127.0.0.1:7"), 0);
  /* Its clients' bytes are the backend's: no broadcast among them. */
  assert_int_equal(gw_listener_broadcast(l, "x", 1), GW_EINVAL);
  gw_server_destroy(srv);
}

typedef struct other_thread_call {
  gw_server_t *srv;
  int rc;
} other_thread_call;

static void *create_from_other_thread(void *arg) {
  other_thread_call *c = arg;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  gw_listener_t *l = NULL;
  c->rc = gw_listener_create_forward(&l, c->srv, &o, "tcp://127.0.0.1:7");
  return NULL;
}

static void test_forward_wrong_thread(void **state) {
  (void)state;
  other_thread_call c = {gwt_server(), 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, create_from_other_thread, &c), 0);
  pthread_join(t, NULL);
  assert_int_equal(c.rc, GW_EWRONGTHREAD);
  gw_server_destroy(c.srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_tcp_ip),
      cmocka_unit_test(test_forward_framed),
      cmocka_unit_test(test_forward_unix),
      cmocka_unit_test(test_forward_host_name),
      cmocka_unit_test(test_forward_destroy_during_lookup),
      cmocka_unit_test(test_forward_unreachable),
      cmocka_unit_test(test_forward_bad_backend_strings),
      cmocka_unit_test(test_forward_callbacks_refused),
      cmocka_unit_test(test_forward_wrong_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
