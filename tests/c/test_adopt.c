/* SPDX-License-Identifier: MIT */
/* gw_listener_adopt: a listening socket works; wrong kinds of fd give a clear
 * error and stay the caller's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

static int tcp_socket_bound(int do_listen) { return gwt_tcp_socket(do_listen); }

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void test_adopt_listening_socket(void **state) {
  (void)state;
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  int s = tcp_socket_bound(1);
  int port = gwt_local_port(s);
  assert_int_equal(fcntl(s, F_GETFL) & O_NONBLOCK, 0);
  assert_int_equal(fcntl(s, F_GETFD) & FD_CLOEXEC, 0);

  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  o.address = "this is ignored by adopt";
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_adopt(&l, srv, s, &o), 0);
  assert_non_null(l);
  assert_int_equal(gw_listener_port(l), port);
  assert_int_equal(fcntl(s, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
  assert_int_equal(fcntl(s, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

  int fd = gwt_connect("127.0.0.1", port);
  assert_true(fd >= 0);
  char buf[64];
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "adopted", 7), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 7);
  assert_string_equal(buf, "adopted");
  close(fd);
  /* the server owns s now and closes it */
  gw_server_destroy(srv);
  assert_false(fd_is_open(s));
  gwt_rec_free(&rec);
}

static void test_adopt_ipv6_listening_socket(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  int s = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(s, 16), 0);
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_U16BE);
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_adopt(&l, srv, s, &o), 0);
  int fd = gwt_connect("::1", gwt_local_port(s));
  char buf[16];
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_U16BE, "six", 3), 0);
  assert_int_equal(gwt_read_frame(srv, fd, GW_FRAMING_U16BE, buf, sizeof buf, GWT_TIMEOUT_MS), 3);
  assert_memory_equal(buf, "six", 3);
  close(fd);
}

static void expect_refused_fd(gw_server_t *srv, int fd, int want) {
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  int flags = fd >= 0 ? fcntl(fd, F_GETFL) : 0;
  int rc = gw_listener_adopt(&l, srv, fd, &o);
  if (rc != want) fail_msg("adopt fd %d: got %d (%s), want %d (%s)", fd, rc, gw_strerror(rc), want, gw_strerror(want));
  if (fd >= 0 && want != GW_EBADF) {
    /* the caller still owns it: open, and the flags are untouched */
    assert_true(fd_is_open(fd));
    assert_int_equal(fcntl(fd, F_GETFL), flags);
  }
}

static void test_adopt_pipe_is_not_a_socket(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  int p[2];
  assert_int_equal(pipe(p), 0);
  expect_refused_fd(srv, p[0], GW_ENOTSOCK);
  expect_refused_fd(srv, p[1], GW_ENOTSOCK);
  gw_server_destroy(srv);
  /* still ours after the server is gone */
  assert_int_equal(write(p[1], "x", 1), 1);
  char c;
  assert_int_equal(read(p[0], &c, 1), 1);
  close(p[0]);
  close(p[1]);
}

static void test_adopt_not_listening(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  int s = socket(AF_INET, SOCK_STREAM, 0); /* neither bound nor listening */
  expect_refused_fd(srv, s, GW_ENOTLISTENING);
  int b = tcp_socket_bound(0); /* bound, not listening */
  expect_refused_fd(srv, b, GW_ENOTLISTENING);
  /* a connected socket */
  int lst = tcp_socket_bound(1);
  int c = gwt_connect("127.0.0.1", gwt_local_port(lst));
  assert_true(c >= 0);
  expect_refused_fd(srv, c, GW_ENOTLISTENING);
  gw_server_destroy(srv);
  assert_true(fd_is_open(s) && fd_is_open(b) && fd_is_open(c) && fd_is_open(lst));
  close(s);
  close(b);
  close(c);
  close(lst);
}

static void test_adopt_udp_is_not_stream(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(u, (struct sockaddr *)&a, sizeof a), 0);
  expect_refused_fd(srv, u, GW_ENOTSTREAM);
  gw_server_destroy(srv);
  assert_true(fd_is_open(u));
  close(u);
}

static void test_adopt_bad_fd(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  expect_refused_fd(srv, -1, GW_EBADF);
  int closed = socket(AF_INET, SOCK_STREAM, 0);
  close(closed);
  expect_refused_fd(srv, closed, GW_EBADF);
  expect_refused_fd(srv, 1 << 20, GW_EBADF);
  gw_server_destroy(srv);
}

static void test_adopt_after_failure_can_retry(void **state) {
  (void)state;
  /* a socket refused while not listening can be adopted once it listens */
  gw_server_t *srv = gwt_server();
  int s = tcp_socket_bound(0);
  expect_refused_fd(srv, s, GW_ENOTLISTENING);
  assert_int_equal(listen(s, 4), 0);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  assert_int_equal(gw_listener_adopt(&l, srv, s, &o), 0);
  assert_int_equal(gw_listener_port(l), gwt_local_port(s));
  gw_server_destroy(srv);
  assert_false(fd_is_open(s));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adopt_listening_socket),        GWT_TEST(test_adopt_ipv6_listening_socket),
      cmocka_unit_test(test_adopt_pipe_is_not_a_socket),    cmocka_unit_test(test_adopt_not_listening),
      cmocka_unit_test(test_adopt_udp_is_not_stream),       cmocka_unit_test(test_adopt_bad_fd),
      cmocka_unit_test(test_adopt_after_failure_can_retry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
