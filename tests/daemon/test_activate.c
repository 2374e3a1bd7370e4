/* SPDX-License-Identifier: MIT */
/* Socket activation: systemd-socket-activate with one and several named fds,
 * an unnamed fd matched by the route's listen address, a fd that matches no
 * route, and (passing LISTEN_* ourselves) a listening and a non-listening fd.
 * Built with GW_WITH_SYSTEMD=OFF (GWT_WITH_SYSTEMD 0), the daemon must ignore
 * LISTEN_FDS: it binds its routes' own listen addresses, and a route without
 * one is a startup error. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SSA "/usr/bin/systemd-socket-activate"

static int have_ssa(void) { return access(SSA, X_OK) == 0; }

/* Writes `conf` as the config, then runs systemd-socket-activate
 * -l 127.0.0.1:PORT1 [-l 127.0.0.1:PORT2] [--fdname=FDNAMES] gatewayd --config
 * CONF (port2 0: one socket; fdnames NULL: no names); it execs the daemon
 * (same pid) on the first connection. */
static void activate(gwd_fixture *f, const char *conf, int port1, int port2, const char *fdnames) {
  gwd_dir_write(&f->dir, "gateway.conf", conf, f->conf, sizeof f->conf);
  char l1[64], l2[64], names[128];
  char *argv[24];
  int n = 0;
  argv[n++] = SSA;
  /* systemd-socket-activate gives the daemon a clean environment; a cross
   * build's gatewayd runs under qemu-user and needs its loader prefix. */
  if (getenv("QEMU_LD_PREFIX")) {
    argv[n++] = "-E";
    argv[n++] = "QEMU_LD_PREFIX";
  }
  snprintf(l1, sizeof l1, "127.0.0.1:%d", port1);
  argv[n++] = "-l";
  argv[n++] = l1;
  if (port2) {
    snprintf(l2, sizeof l2, "127.0.0.1:%d", port2);
    argv[n++] = "-l";
    argv[n++] = l2;
  }
  if (fdnames) {
    snprintf(names, sizeof names, "--fdname=%s", fdnames);
    argv[n++] = names;
  }
  argv[n++] = (char *)gwd_binary();
  argv[n++] = "--config";
  argv[n++] = f->conf;
  argv[n] = NULL;
  assert_int_equal(gwd_spawn(&f->proc, &f->dir, "gatewayd", argv, NULL), 0);
}

static void test_one_named_fd(void **state) {
  gwd_fixture *f = *state;
  if (!have_ssa()) skip();
  int port = gwd_port();
  /* No listen address: the route can only be served by the passed socket. */
  activate(f,
           "[[route]]\n"
           "name = \"web\"\n"
           "backend = \"echo\"\n",
           port, 0, "web");
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "activated"));
  assert_true(gwd_wait_ready(&f->proc));
  assert_int_equal(gwd_log_count(&f->proc, "<6>route \"web\": serving the socket systemd passed as fd 3 (web)\n"), 1);
  /* It bound nothing itself: the one listener is the passed socket. */
  assert_int_equal(gwd_log_count(&f->proc, "listening on"), 1);
  char line[128];
  snprintf(line, sizeof line, "<6>route web: listening on 127.0.0.1:%d\n", port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>ready: 1 routes\n"), 1);
  /* A second client on the same socket. */
  int c2 = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c2 >= 0);
  assert_true(gwd_roundtrip(c2, "again"));
  close(c2);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_several_named_fds(void **state) {
  gwd_fixture *f = *state;
  if (!have_ssa()) skip();
  int p1 = gwd_port(), p2 = gwd_port(), p3 = gwd_port();
  char conf[512];
  /* "beta" also has a listen address (p3), which must stay unused: the
   * name wins. "gamma" binds its own. */
  int p4 = gwd_port();
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"alpha\"\n"
           "backend = \"echo\"\n"
           "\n"
           "[[route]]\n"
           "name = \"beta\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "framing = \"line\"\n"
           "\n"
           "[[route]]\n"
           "name = \"gamma\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n",
           p3, p4);
  activate(f, conf, p1, p2, "alpha:beta");
  int a = gwd_connect_retry(p1, GWD_TIMEOUT_MS);
  assert_true(a >= 0);
  assert_true(gwd_roundtrip(a, "to alpha"));
  assert_true(gwd_wait_ready(&f->proc));
  int b = gwd_connect_retry(p2, GWD_TIMEOUT_MS);
  assert_true(b >= 0);
  char buf[64];
  assert_int_equal(gwt_write_all(NULL, b, "to beta\n", 8), 0);
  assert_int_equal(gwt_read_line(NULL, b, buf, sizeof buf, GWD_TIMEOUT_MS), 7);
  assert_string_equal(buf, "to beta");
  int g = gwd_connect_retry(p4, GWD_TIMEOUT_MS);
  assert_true(g >= 0);
  assert_true(gwd_roundtrip(g, "to gamma"));
  /* beta's own listen address stays unbound. */
  assert_int_equal(gwt_connect("127.0.0.1", p3), -1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>route \"alpha\": serving the socket systemd passed as fd 3 (alpha)\n"),
                   1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>route \"beta\": serving the socket systemd passed as fd 4 (beta)\n"), 1);
  char line[128];
  snprintf(line, sizeof line, "<6>route gamma: listening on 127.0.0.1:%d\n", p4);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>ready: 3 routes\n"), 1);
  close(a);
  close(b);
  close(g);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_unnamed_fd_matched_by_address(void **state) {
  gwd_fixture *f = *state;
  if (!have_ssa()) skip();
  int port = gwd_port(), other = gwd_port();
  char conf[512];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"first\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "\n"
           "[[route]]\n"
           "name = \"byaddr\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "framing = \"line\"\n",
           other, port);
  activate(f, conf, port, 0, NULL);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  char buf[64];
  /* Line framing proves it is byaddr's socket. */
  assert_int_equal(gwt_write_all(NULL, c, "by address\n", 11), 0);
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 10);
  assert_string_equal(buf, "by address");
  assert_true(gwd_wait_ready(&f->proc));
  assert_int_equal(
      gwd_log_count(&f->proc, "<6>route \"byaddr\": serving the socket systemd passed as fd 3 (unknown)\n"), 1);
  snprintf(buf, sizeof buf, "<6>route first: listening on 127.0.0.1:%d\n", other);
  assert_int_equal(gwd_log_count(&f->proc, buf), 1);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_mismatched_fd_is_a_startup_error(void **state) {
  gwd_fixture *f = *state;
  if (!have_ssa()) skip();
  int port = gwd_port(), other = gwd_port();
  char conf[512];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"echo\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n",
           other);
  activate(f, conf, port, 0, "stray");
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS); /* starts the daemon */
  assert_true(c >= 0);
  assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 1);
  char line[400];
  snprintf(line, sizeof line,
           "<3>inherited socket fd 3 (FileDescriptorName=stray, bound to 127.0.0.1:%d) matches no route: name a "
           "route \"stray\" or give a route listen = \"127.0.0.1:%d\"\n",
           port, port);
  char *err = gwd_read_err(&f->proc);
  if (!strstr(err, line)) print_error("stderr:\n%s\n", err);
  assert_non_null(strstr(err, line));
  assert_null(strstr(err, "ready"));
  free(err);
  /* The client is not served: closed when the daemon exits. */
  int rc = gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL);
  assert_true(rc == 0 || rc == 1);
  close(c);
}

/* Writes `conf` as the config and starts gatewayd with `fd` passed as fd 3
 * (LISTEN_FDS=1, LISTEN_FDNAMES=name); the test's copy of fd is closed. */
static void start_with_fd(gwd_fixture *f, const char *conf, int fd, const char *name) {
  gwd_dir_write(&f->dir, "gateway.conf", conf, f->conf, sizeof f->conf);
  gwd_spawn_opts o = {.fds = {fd}, .nfds = 1, .listen_names = name};
  assert_int_equal(gwd_start(&f->proc, &f->dir, f->conf, &o), 0);
  close(fd);
}

/* LISTEN_* set by hand (no systemd-socket-activate): a listening socket
 * named after a route is served at once, without a first connection. */
static void test_listen_fds_by_hand(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  int lfd = gwd_listen_tcp(port);
  assert_true(lfd >= 0);
  start_with_fd(f,
                "[[route]]\n"
                "name = \"app\"\n"
                "backend = \"echo\"\n",
                lfd, "app");
  assert_true(gwd_wait_ready(&f->proc));
  assert_int_equal(gwd_log_count(&f->proc, "<6>route \"app\": serving the socket systemd passed as fd 3 (app)\n"), 1);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "by hand"));
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* A passed socket that is not listening: startup error naming it. */
static void not_listening(gwd_fixture *f, int fd, const char *what, const char *why) {
  start_with_fd(f,
                "[[route]]\n"
                "name = \"echo\"\n"
                "listen = \"127.0.0.1:1\"\n"
                "backend = \"echo\"\n",
                fd, "echo");
  assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 1);
  char *err = gwd_read_err(&f->proc);
  char expect[300];
  snprintf(expect, sizeof expect,
           "<3>route \"echo\": inherited socket fd 3 (FileDescriptorName=echo) is unusable: %s\n", why);
  const char *at = strstr(err, expect);
  if (!at) print_error("%s: stderr:\n%s\n", what, err);
  assert_non_null(at);
  assert_null(strstr(err, "ready"));
  /* It did not fall back to binding the listen address. */
  assert_null(strstr(err, "listening on"));
  free(err);
}

/* A socket of `type` bound to 127.0.0.1 (any port), not listening. */
static int bound_loopback(int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

static void test_non_listening_tcp_fd(void **state) {
  gwd_fixture *f = *state;
  /* Bound, never listen(). */
  int fd = bound_loopback(SOCK_STREAM);
  not_listening(f, fd, "bound tcp", "the socket is not listening (call listen() or use a listening socket)");
}

static void test_datagram_fd(void **state) {
  gwd_fixture *f = *state;
  int fd = bound_loopback(SOCK_DGRAM);
  not_listening(f, fd, "udp", "the socket is not a SOCK_STREAM socket");
}

#if !GWT_WITH_SYSTEMD
/* No systemd support: a passed socket named after a route is not served; the
 * route binds its own listen address. */
static void test_nosd_listen_fds_ignored(void **state) {
  gwd_fixture *f = *state;
  int passed = gwd_port(), own = gwd_port();
  int lfd = gwd_listen_tcp(passed);
  assert_true(lfd >= 0);
  char conf[256];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"app\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n",
           own);
  start_with_fd(f, conf, lfd, "app");
  assert_true(gwd_wait_ready(&f->proc));
  char line[128];
  snprintf(line, sizeof line, "<6>route app: listening on 127.0.0.1:%d\n", own);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  assert_int_equal(gwd_log_count(&f->proc, "listening on"), 1);
  assert_int_equal(gwd_log_count(&f->proc, "systemd passed"), 0);
  assert_int_equal(gwd_log_count(&f->proc,
                                 "<4>LISTEN_FDS is set, but this gatewayd was built without systemd support: the "
                                 "passed sockets are not used; every route binds its listen address (rebuild with "
                                 "-DGW_WITH_SYSTEMD=ON for socket activation)\n"),
                   1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>ready: 1 routes\n"), 1);
  int c = gwd_connect_retry(own, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "own socket"));
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* No systemd support: a route that only a passed socket could serve cannot start. */
static void test_nosd_route_without_listen(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  int lfd = gwd_listen_tcp(port);
  assert_true(lfd >= 0);
  start_with_fd(f,
                "[[route]]\n"
                "name = \"app\"\n"
                "backend = \"echo\"\n",
                lfd, "app");
  assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 1);
  char *err = gwd_read_err(&f->proc);
  const char *expect =
      "<3>route \"app\" has no listen address: add listen = \"IP:PORT\" (this gatewayd was built "
      "without systemd support, so no socket can be passed to it)\n";
  if (!strstr(err, expect)) print_error("stderr:\n%s\n", err);
  assert_non_null(strstr(err, expect));
  assert_null(strstr(err, "ready"));
  assert_null(strstr(err, "systemd passed as fd"));
  free(err);
}
#endif

int main(int argc, char **argv) {
  gwd_init(argc, argv);
#if !GWT_WITH_SYSTEMD
  const struct CMUnitTest nosd[] = {
      GWD_TEST(test_nosd_listen_fds_ignored),
      GWD_TEST(test_nosd_route_without_listen),
  };
  return cmocka_run_group_tests_name("daemon_activate_nosystemd", nosd, NULL, NULL);
#endif
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_one_named_fd),
      GWD_TEST(test_several_named_fds),
      GWD_TEST(test_unnamed_fd_matched_by_address),
      GWD_TEST(test_mismatched_fd_is_a_startup_error),
      GWD_TEST(test_listen_fds_by_hand),
      GWD_TEST(test_non_listening_tcp_fd),
      GWD_TEST(test_datagram_fd),
  };
  return cmocka_run_group_tests_name("daemon_activate", tests, NULL, NULL);
}
