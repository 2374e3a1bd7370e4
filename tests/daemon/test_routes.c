/* SPDX-License-Identifier: MIT */
/* gatewayd's per-route settings through the real binary and a config file:
 * allow, max_clients, max_clients_per_ip, idle_timeout, IPv6 and dual-stack
 * listen addresses, u16be framing with max_frame. Refused clients see EOF at
 * once; the log lines are checked exactly (formats from the lib/src sources). */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A client that the daemon served: connected and one echo round trip. */
static int served(const char *host, int port, const char *from) {
  int c = from ? gwt_connect_from(host, port, from) : gwd_connect_host(host, port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(c, "served"));
  return c;
}

/* A client that the daemon refuses: EOF at once, nothing before it. Returns
 * its local port. */
static int refused(const char *host, int port, const char *from) {
  int c = from ? gwt_connect_from(host, port, from) : gwd_connect_host(host, port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  int local = gwt_local_port(c);
  size_t discarded = 99;
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, &discarded), 0);
  assert_int_equal(discarded, 0);
  close(c);
  return local;
}

/* Waits for `line` in the log and checks it appears exactly once. */
static void expect_once(gwd_fixture *f, const char *line) {
  if (!gwd_log_wait(&f->proc, line, 1, GWD_TIMEOUT_MS)) {
    char *err = gwd_read_err(&f->proc);
    print_error("missing line: %sstderr:\n%s\n", line, err);
    free(err);
  }
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
}

/* "<6>route ROUTE: PEER:PORT WHAT\n", exactly once. */
static void expect_line(gwd_fixture *f, const char *route, const char *peer, int peer_port, const char *what) {
  char line[256];
  snprintf(line, sizeof line, "<6>route %s: %s:%d%s\n", route, peer, peer_port, what);
  expect_once(f, line);
}

static void expect_refused(gwd_fixture *f, const char *route, const char *peer, int peer_port, const char *why) {
  char line[256];
  snprintf(line, sizeof line, "<6>route %s: refused %s:%d: %s\n", route, peer, peer_port, why);
  expect_once(f, line);
}

/* Starts the daemon on one echo route NAME listening on HOST:PORT (HOST ""
 * for dual stack) with the settings lines EXTRA. */
static void start_route(gwd_fixture *f, const char *name, const char *host, int port, const char *extra) {
  char conf[512];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"%s\"\n"
           "listen = \"%s:%d\"\n"
           "backend = \"echo\"\n"
           "%s",
           name, host, port, extra);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
}

static void test_allow(void **state) {
  gwd_fixture *f = *state;
  int deny = gwd_port(), ok = gwd_port();
  char conf[512];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"deny\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "allow = [\"10.0.0.0/8\"]\n"
           "\n"
           "[[route]]\n"
           "name = \"ok\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "allow = [\"127.0.0.0/8\"]\n",
           deny, ok);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);

  int p1 = refused("127.0.0.1", deny, NULL);
  expect_refused(f, "deny", "127.0.0.1", p1, "not in the allow list");
  int c = served("127.0.0.1", ok, NULL);
  int p2 = refused("127.0.0.1", deny, NULL);
  expect_refused(f, "deny", "127.0.0.1", p2, "not in the allow list");
  assert_true(gwd_roundtrip(c, "still served"));
  expect_line(f, "ok", "127.0.0.1", gwt_local_port(c), " connected");
  assert_int_equal(gwd_log_count(&f->proc, "refused"), 2);
  assert_int_equal(gwd_log_count(&f->proc, "route ok: refused"), 0);
  assert_int_equal(gwd_log_count(&f->proc, "route deny: 127.0.0.1"), 0); /* never "connected" */
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_max_clients(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_route(f, "lim", "127.0.0.1", port, "max_clients = 2\n");

  int c1 = served("127.0.0.1", port, NULL);
  /* another source address: the total limit, not the per-address one */
  int c2 = served("127.0.0.1", port, "127.0.0.2");
  int p3 = refused("127.0.0.1", port, "127.0.0.3");
  expect_refused(f, "lim", "127.0.0.3", p3, "max_clients is reached");
  assert_true(gwd_roundtrip(c1, "c1 still served"));
  assert_true(gwd_roundtrip(c2, "c2 still served"));

  /* A place frees up once a client has gone. */
  int gone = gwt_local_port(c1);
  close(c1);
  expect_line(f, "lim", "127.0.0.1", gone, " closed (peer closed)");
  int c4 = served("127.0.0.1", port, NULL);
  assert_true(gwd_roundtrip(c2, "c2 still served"));
  assert_int_equal(gwd_log_count(&f->proc, "refused"), 1);
  close(c2);
  close(c4);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_max_clients_per_ip(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_route(f, "perip", "127.0.0.1", port, "max_clients_per_ip = 2\n");

  int c1 = served("127.0.0.1", port, NULL);
  int c2 = served("127.0.0.1", port, NULL);
  int p3 = refused("127.0.0.1", port, NULL);
  expect_refused(f, "perip", "127.0.0.1", p3, "max_clients_per_ip is reached for this address");
  /* Another address has its own count. */
  int o1 = served("127.0.0.1", port, "127.0.0.2");
  int o2 = served("127.0.0.1", port, "127.0.0.2");
  int p4 = refused("127.0.0.1", port, "127.0.0.2");
  expect_refused(f, "perip", "127.0.0.2", p4, "max_clients_per_ip is reached for this address");
  assert_true(gwd_roundtrip(c1, "c1"));
  assert_true(gwd_roundtrip(c2, "c2"));
  assert_true(gwd_roundtrip(o1, "o1"));
  assert_true(gwd_roundtrip(o2, "o2"));
  assert_int_equal(gwd_log_count(&f->proc, "refused"), 2);
  close(c1);
  close(c2);
  close(o1);
  close(o2);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_idle_timeout(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_route(f, "idle", "127.0.0.1", port, "idle_timeout = \"300ms\"\n");

  int active = served("127.0.0.1", port, NULL);
  int silent = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(silent >= 0);
  int64_t connected = gwt_now_ms();
  int silent_port = gwt_local_port(silent);

  /* The active client talks every 50 ms, for longer than three timeouts. */
  while (gwt_now_ms() - connected < 1000) {
    assert_true(gwd_roundtrip(active, "tick"));
    gwd_sleep_ms(50);
  }
  /* The silent one was closed meanwhile: EOF, nothing sent. */
  size_t discarded = 99;
  assert_int_equal(gwt_wait_eof(NULL, silent, GWD_TIMEOUT_MS, &discarded), 0);
  assert_int_equal(discarded, 0);
  char line[256];
  snprintf(line, sizeof line, "<6>route idle: closing 127.0.0.1:%d: idle for 300 ms\n", silent_port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  close(silent);
  expect_line(f, "idle", "127.0.0.1", silent_port, " closed (idle timeout)");

  assert_true(gwd_roundtrip(active, "still here"));
  snprintf(line, sizeof line, "127.0.0.1:%d: idle", gwt_local_port(active));
  assert_int_equal(gwd_log_count(&f->proc, line), 0);
  assert_int_equal(gwd_log_count(&f->proc, ": idle for 300 ms\n"), 1);
  close(active);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_ipv6_listen(void **state) {
  gwd_fixture *f = *state;
  if (!gwd_have_ipv6()) skip();
  int port = gwd_port();
  start_route(f, "v6", "[::1]", port, "");
  char line[128];
  snprintf(line, sizeof line, "<6>route v6: listening on [::1]:%d\n", port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);

  int c = served("::1", port, NULL);
  expect_line(f, "v6", "[::1]", gwt_local_port(c), " connected");
  /* IPv6 only: nothing listens on 127.0.0.1 for it. */
  assert_int_equal(gwt_connect("127.0.0.1", port), -1);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_dual_stack(void **state) {
  gwd_fixture *f = *state;
  if (!gwd_have_ipv6()) skip();
  int port = gwd_port();
  start_route(f, "any", "", port, "");
  char line[128];
  snprintf(line, sizeof line, "<6>route any: listening on [::]:%d\n", port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);

  int c4 = served("127.0.0.1", port, NULL);
  int c6 = served("::1", port, NULL);
  /* An IPv4 client is logged as IPv4, not as ::ffff:127.0.0.1. */
  expect_line(f, "any", "127.0.0.1", gwt_local_port(c4), " connected");
  expect_line(f, "any", "[::1]", gwt_local_port(c6), " connected");
  assert_true(gwd_roundtrip(c4, "v4 again"));
  close(c4);
  close(c6);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* allow on a dual-stack route: IPv4 clients arrive as ::ffff:a.b.c.d and must
 * match an IPv4 network; ::1 does not. */
static void test_dual_stack_allow(void **state) {
  gwd_fixture *f = *state;
  if (!gwd_have_ipv6()) skip();
  int port = gwd_port();
  start_route(f, "any4", "", port, "allow = [\"127.0.0.0/8\"]\n");
  int c4 = served("127.0.0.1", port, NULL);
  int p6 = refused("::1", port, NULL);
  expect_refused(f, "any4", "[::1]", p6, "not in the allow list");
  assert_true(gwd_roundtrip(c4, "v4 allowed"));
  close(c4);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_u16be_max_frame(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_route(f, "fr", "127.0.0.1", port, "framing = \"u16be\"\nmax_frame = 16\n");

  int good = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  int bad = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(good >= 0 && bad >= 0);
  unsigned char buf[64];
  /* The echo answers in the route's framing: the same frame back. */
  assert_int_equal(gwt_send_frame(NULL, good, GW_FRAMING_U16BE, "hello", 5), 0);
  assert_int_equal(gwt_read_frame(NULL, good, GW_FRAMING_U16BE, buf, sizeof buf, GWD_TIMEOUT_MS), 5);
  assert_memory_equal(buf, "hello", 5);

  /* 17 bytes: one over max_frame. Only that client is closed. */
  int bad_port = gwt_local_port(bad);
  assert_int_equal(gwt_send_frame(NULL, bad, GW_FRAMING_U16BE, "0123456789abcdefg", 17), 0);
  size_t discarded = 99;
  assert_int_equal(gwt_wait_eof(NULL, bad, GWD_TIMEOUT_MS, &discarded), 0);
  assert_int_equal(discarded, 0);
  char line[256];
  snprintf(line, sizeof line, "<6>route fr: closing 127.0.0.1:%d: frame larger than max_frame (16 bytes)\n", bad_port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  close(bad);
  expect_line(f, "fr", "127.0.0.1", bad_port, " closed (oversized frame)");

  /* Exactly max_frame is fine, and an empty frame too. */
  assert_int_equal(gwt_send_frame(NULL, good, GW_FRAMING_U16BE, "0123456789abcdef", 16), 0);
  assert_int_equal(gwt_read_frame(NULL, good, GW_FRAMING_U16BE, buf, sizeof buf, GWD_TIMEOUT_MS), 16);
  assert_memory_equal(buf, "0123456789abcdef", 16);
  assert_int_equal(gwt_send_frame(NULL, good, GW_FRAMING_U16BE, "", 0), 0);
  assert_int_equal(gwt_read_frame(NULL, good, GW_FRAMING_U16BE, buf, sizeof buf, GWD_TIMEOUT_MS), 0);
  assert_int_equal(gwd_log_count(&f->proc, "frame larger"), 1);
  close(good);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_allow),
      GWD_TEST(test_max_clients),
      GWD_TEST(test_max_clients_per_ip),
      GWD_TEST(test_idle_timeout),
      GWD_TEST(test_ipv6_listen),
      GWD_TEST(test_dual_stack),
      GWD_TEST(test_dual_stack_allow),
      GWD_TEST(test_u16be_max_frame),
  };
  return cmocka_run_group_tests_name("daemon_routes", tests, NULL, NULL);
}
