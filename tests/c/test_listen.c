/* SPDX-License-Identifier: MIT */
/* Binding: specific addresses, ephemeral and fixed ports, IPv6, v6-only,
 * dual stack, bad address strings, address in use, backlog. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A line-echo listener on addr; returns its port. */
static gw_listener_t *echo_listener(gw_server_t *srv, gwt_rec *rec, const char *addr) {
  gw_listener_options o;
  gwt_echo_opts(&o, rec, GW_FRAMING_LINE);
  return gwt_listen(srv, addr, &o);
}

static void assert_echo(gw_server_t *srv, int fd, const char *text) {
  char buf[256];
  assert_true(fd >= 0);
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, text, strlen(text)), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), (int)strlen(text));
  assert_string_equal(buf, text);
}

/* Connect that is expected to be refused (nothing listens there). */
static void assert_refused(const char *host, int port) {
  int fd = gwt_connect(host, port);
  if (fd >= 0) {
    close(fd);
    fail_msg("connect to %s port %d succeeded, expected ECONNREFUSED", host, port);
  }
}

static void check_peer(gw_conn_t *c, const char *want_addr, int want_port) {
  char buf[64];
  int port = -1;
  assert_non_null(c);
  assert_int_equal(gw_conn_peer(buf, sizeof buf, &port, c), 0);
  assert_string_equal(buf, want_addr);
  assert_int_equal(port, want_port);
}

static void test_ipv4_specific_ephemeral(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_t *l = echo_listener(srv, rec, "127.0.0.1:0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  assert_true(port > 0 && port < 65536);

  int fd = gwt_connect("127.0.0.1", port);
  assert_echo(srv, fd, "hello");
  assert_int_equal(gwt_rec_get(rec, &rec->opens), 1);
  gw_conn_t *c = gwt_rec_conn(rec, 0);
  check_peer(c, "127.0.0.1", gwt_local_port(fd));
  assert_ptr_equal(gw_conn_listener(c), l);
  /* a too small buffer */
  char small[4];
  assert_int_equal(gw_conn_peer(small, sizeof small, NULL, c), GW_ENOMEM);
  close(fd);
}

static void test_specific_address_is_specific(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_t *l = echo_listener(srv, &f->rec, "127.0.0.2:0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  assert_true(port > 0);
  int fd = gwt_connect("127.0.0.2", port);
  assert_echo(srv, fd, "on 127.0.0.2");
  assert_refused("127.0.0.1", port);
  assert_refused("::1", port);
  close(fd);
}

static int free_port(void) {
  int s = gwt_tcp_socket(0);
  int port = gwt_local_port(s);
  close(s);
  return port;
}

static void test_ipv4_fixed_port(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  int want = free_port();
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", want);
  gw_listener_t *l = echo_listener(srv, &f->rec, addr);
  assert_non_null(l);
  assert_int_equal(gw_listener_port(l), want);
  int fd = gwt_connect("127.0.0.1", want);
  assert_echo(srv, fd, "fixed");
  close(fd);
}

static void test_ipv6_loopback(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_t *l = echo_listener(srv, &f->rec, "[::1]:0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  assert_true(port > 0);
  int fd = gwt_connect("::1", port);
  assert_echo(srv, fd, "v6");
  check_peer(gwt_rec_conn(&f->rec, 0), "::1", gwt_local_port(fd));
  assert_refused("127.0.0.1", port);
  close(fd);
}

static void test_ipv6_wildcard_is_v6_only(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_t *l = echo_listener(srv, &f->rec, "[::]:0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  int fd = gwt_connect("::1", port);
  assert_echo(srv, fd, "v6 only");
  assert_refused("127.0.0.1", port);
  close(fd);
}

static void test_ipv4_wildcard_is_v4_only(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_t *l = echo_listener(srv, &f->rec, "0.0.0.0:0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  int fd = gwt_connect("127.0.0.1", port);
  assert_echo(srv, fd, "v4 only");
  assert_refused("::1", port);
  close(fd);
}

static void test_port_only_is_dual_stack(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_t *l = echo_listener(srv, rec, ":0");
  assert_non_null(l);
  int port = gw_listener_port(l);
  assert_true(port > 0);
  int f4 = gwt_connect("127.0.0.1", port);
  assert_echo(srv, f4, "over v4");
  int f6 = gwt_connect("::1", port);
  assert_echo(srv, f6, "over v6");
  assert_int_equal(gwt_rec_get(rec, &rec->opens), 2);
  /* the header documents plain dotted IPv4 text for IPv4 peers */
  check_peer(gwt_rec_conn(rec, 0), "127.0.0.1", gwt_local_port(f4));
  check_peer(gwt_rec_conn(rec, 1), "::1", gwt_local_port(f6));
  close(f4);
  close(f6);
}

static void test_bad_addresses(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "127.0.0.1",
      "127.0.0.1:",
      "127.0.0.1:65536",
      "127.0.0.1:99999",
      "127.0.0.1:-1",
      "127.0.0.1:abc",
      "127.0.0.1:80x",
      "256.0.0.1:80",
      "1.2.3:80",
      "[::1",
      "[::1]",
      "[::1]:",
      "::1:7000",
      "[127.0.0.1]:80",
      "[::g]:80",
      "[::1]7000",
      ":",
      ":port",
      "a b:1",
  };
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gw_listener_t *l = NULL;
    o.address = bad[i];
    int rc = gw_listener_create(&l, srv, &o);
    if (rc != GW_EADDRESS) fail_msg("address \"%s\": got %d (%s), want GW_EADDRESS", bad[i], rc, gw_strerror(rc));
  }
  gw_listener_t *l = NULL;
  o.address = NULL;
  int rc = gw_listener_create(&l, srv, &o);
  assert_true(rc == GW_EINVAL || rc == GW_EADDRESS);
  gw_server_destroy(srv);
}

static void test_address_in_use(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_t *l = echo_listener(srv, &f->rec, "127.0.0.1:0");
  assert_non_null(l);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", gw_listener_port(l));
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l2 = NULL;
  o.address = addr;
  assert_int_equal(gw_listener_create(&l2, srv, &o), GW_EADDRINUSE);

  /* a socket listening outside the library */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(s, 4), 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", gwt_local_port(s));
  o.address = addr;
  assert_int_equal(gw_listener_create(&l2, srv, &o), GW_EADDRINUSE);
  /* the dual-stack form collides with it too */
  snprintf(addr, sizeof addr, ":%d", gwt_local_port(s));
  assert_int_equal(gw_listener_create(&l2, srv, &o), GW_EADDRINUSE);
  close(s);
  /* the first listener still works */
  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_echo(srv, fd, "still here");
  close(fd);
}

static void test_address_not_available(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  o.address = "192.0.2.1:0"; /* TEST-NET-1: not on this host */
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_EADDRNOTAVAIL);
  o.address = "[2001:db8::1]:0";
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_EADDRNOTAVAIL);
  assert_true(gw_listener_port(NULL) < 0);
  gw_server_destroy(srv);
}

/* Linux keeps backlog + 1 completed connections in the accept queue and drops
 * further SYNs while it is full. With backlog 1 and no dispatch, exactly two of
 * four clients complete their handshake; once the server accepts, all four
 * are served (the others after a SYN retransmission). */
static void test_backlog(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_LINE);
  o.backlog = 1;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int port = gw_listener_port(l);

  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  int fds[4];
  struct pollfd p[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(fds[i], (struct sockaddr *)&a, sizeof a);
    assert_true(rc == 0 || errno == EINPROGRESS);
    p[i].fd = fds[i];
    p[i].events = POLLOUT;
  }
  /* no dispatch: give the handshakes time to complete (or not) */
  usleep(300 * 1000);
  int done = poll(p, 4, 0);
  assert_int_equal(done, 2);

  for (int i = 0; i < 4; i++) {
    char line[32], buf[32];
    snprintf(line, sizeof line, "client %d", i);
    assert_int_equal(gwt_send_frame(srv, fds[i], GW_FRAMING_LINE, line, strlen(line)), 0);
    assert_int_equal(gwt_read_line(srv, fds[i], buf, sizeof buf, GWT_TIMEOUT_MS), (int)strlen(line));
    assert_string_equal(buf, line);
  }
  for (int i = 0; i < 4; i++) close(fds[i]);
}

static int read_somaxconn(void) {
  FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
  int v = -1;
  if (f) {
    if (fscanf(f, "%d", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

/* A backlog above net.core.somaxconn works (the kernel caps it) and is logged
 * once per listener that asks for it; none at the cap. */
static void test_backlog_above_somaxconn_logged_once(void **state) {
  (void)state;
  int somax = read_somaxconn();
  if (somax <= 0 || somax >= 1 << 30) skip();
  gwt_log lg;
  memset(&lg, 0, sizeof lg);
  pthread_mutex_init(&lg.mu, NULL);
  lg.needle = "somaxconn";
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  so.log = gwt_log_fn;
  so.log_user_data = &lg;
  so.log_level = GW_LOG_DEBUG;
  gw_server_t *srv = gwt_server_opts(&so);
  assert_non_null(srv);
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);

  o.backlog = somax; /* at the cap: nothing to say */
  assert_non_null(gwt_listen(srv, "127.0.0.1:0", &o));
  assert_int_equal(lg.matches, 0);

  o.backlog = somax + 1;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  assert_int_equal(lg.matches, 1);
  /* a second over-large listener may say so for itself, but only once */
  assert_non_null(gwt_listen(srv, "127.0.0.1:0", &o));
  assert_true(lg.matches <= 2);

  int fd = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_echo(srv, fd, "big backlog");
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
  pthread_mutex_destroy(&lg.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      GWT_TEST(test_ipv4_specific_ephemeral),
      GWT_TEST(test_specific_address_is_specific),
      GWT_TEST(test_ipv4_fixed_port),
      GWT_TEST(test_ipv6_loopback),
      GWT_TEST(test_ipv6_wildcard_is_v6_only),
      GWT_TEST(test_ipv4_wildcard_is_v4_only),
      GWT_TEST(test_port_only_is_dual_stack),
      cmocka_unit_test(test_bad_addresses),
      GWT_TEST(test_address_in_use),
      cmocka_unit_test(test_address_not_available),
      GWT_TEST(test_backlog),
      cmocka_unit_test(test_backlog_above_somaxconn_logged_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
