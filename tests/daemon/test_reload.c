/* SPDX-License-Identifier: MIT */
/* SIGHUP reloads leave nothing behind: a removed route's listener gives up its
 * sockets at once and is freed once its last client has closed; a reload that
 * is rolled back frees what it had created. Checked by counting gatewayd's
 * open fds in /proc/PID/fd. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* How many fds the process has open now. */
static int fd_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *dir = opendir(path);
  assert_non_null(dir);
  int count = 0;
  for (struct dirent *e; (e = readdir(dir)) != NULL;)
    if (e->d_name[0] != '.') ++count;
  closedir(dir);
  return count;
}

static void add_route(char *buf, size_t cap, const char *name, int port) {
  size_t len = strlen(buf);
  snprintf(buf + len, cap - len, "[[route]]\nname = \"%s\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\n\n", name,
           port);
}

/* Writes the config, sends SIGHUP and waits for the nth occurrence of
 * expect_log; prints stderr and fails if it does not come. */
static void reload(gwd_fixture *f, const char *text, const char *expect_log, int nth) {
  gwd_dir_write(&f->dir, "gateway.conf", text, NULL, 0);
  gwd_signal(&f->proc, SIGHUP);
  if (!gwd_log_wait(&f->proc, expect_log, nth, GWD_TIMEOUT_MS)) {
    char *err = gwd_read_err(&f->proc);
    size_t len = strlen(err);
    print_error("no \"%s\" (#%d); end of stderr:\n%s\n", expect_log, nth, len > 3000 ? err + len - 3000 : err);
    free(err);
    fail();
  }
}

/* Reload n: route "one" on port a, or route "two" on port b, alternately.
 * Every reload removes the route the previous one added. */
static void alternate(gwd_fixture *f, int n, int pa, int pb) {
  char conf[512] = "";
  if (n % 2)
    add_route(conf, sizeof conf, "two", pb);
  else
    add_route(conf, sizeof conf, "one", pa);
  reload(f, conf, "<6>reloaded: 1 routes\n", n);
}

static int alternate_port(int n, int pa, int pb) { return n % 2 ? pb : pa; }

/* 200 reloads alternating two route names: the fd count stays where it was. */
static void test_fd_count_flat_over_200_reloads(void **state) {
  gwd_fixture *f = *state;
  int pa = gwd_port(), pb = gwd_port();
  char conf[512] = "";
  add_route(conf, sizeof conf, "one", pa);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  int before = fd_count(f->proc.pid);
  for (int n = 1; n <= 200; ++n) alternate(f, n, pa, pb);
  int after = fd_count(f->proc.pid);
  print_message("gatewayd fds: %d before, %d after 200 reloads\n", before, after);
  assert_int_equal(after, before);
  assert_int_equal(gwd_log_count(&f->proc, "retired listener freed (no clients left)\n"), 200);
  /* Still serving, on the route of the last reload (200: "one"). */
  int c = gwd_connect_retry(alternate_port(200, pa, pb), GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "after 200 reloads"));
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* With RLIMIT_NOFILE=32, 30 reloads later 5 clients are still served. */
static void test_low_fd_limit_survives_30_reloads(void **state) {
  gwd_fixture *f = *state;
  int pa = gwd_port(), pb = gwd_port();
  char conf[512] = "";
  add_route(conf, sizeof conf, "one", pa);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  struct rlimit limit = {32, 32};
  assert_int_equal(prlimit(f->proc.pid, RLIMIT_NOFILE, &limit, NULL), 0);
  for (int n = 1; n <= 30; ++n) alternate(f, n, pa, pb);
  int port = alternate_port(30, pa, pb);
  int clients[5];
  for (int i = 0; i < 5; ++i) {
    clients[i] = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(clients[i] >= 0);
  }
  for (int i = 0; i < 5; ++i) {
    char msg[32];
    snprintf(msg, sizeof msg, "client %d", i);
    if (!gwd_roundtrip(clients[i], msg)) {
      char *err = gwd_read_err(&f->proc);
      size_t len = strlen(err);
      print_error("client %d not served; end of stderr:\n%s\n", i, len > 2000 ? err + len - 2000 : err);
      free(err);
      fail();
    }
  }
  for (int i = 0; i < 5; ++i) close(clients[i]);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* A reload whose second new route cannot bind is rolled back: the first new
 * route's listener is freed at once, and ten such reloads leak no fd. */
static void test_rolled_back_reload_leaks_nothing(void **state) {
  gwd_fixture *f = *state;
  int pa = gwd_port(), pb = gwd_port(), pc = gwd_port();
  int held = gwd_listen_tcp(pc);
  assert_true(held >= 0);
  char conf[512] = "";
  add_route(conf, sizeof conf, "a", pa);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  int before = fd_count(f->proc.pid);
  char busy[1024] = "";
  add_route(busy, sizeof busy, "a", pa);
  add_route(busy, sizeof busy, "b", pb);
  add_route(busy, sizeof busy, "c", pc);
  for (int n = 1; n <= 10; ++n) {
    reload(f, busy, "<3>reload rejected (a new route cannot listen); the running configuration stays\n", n);
    assert_true(gwd_log_wait(&f->proc, "<6>route b: retired listener freed (no clients left)\n", n, GWD_TIMEOUT_MS));
  }
  int after = fd_count(f->proc.pid);
  print_message("gatewayd fds: %d before, %d after 10 rolled-back reloads\n", before, after);
  assert_int_equal(after, before);
  assert_int_equal(gwt_connect("127.0.0.1", pb), -1);
  int c = gwd_connect_retry(pa, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "still here"));
  close(c);
  close(held);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* A removed route's client keeps being served until it closes; then the
 * route's listener is freed, and gatewayd is back to its fd count. */
static void test_removed_route_client_then_listener_gone(void **state) {
  gwd_fixture *f = *state;
  int pa = gwd_port(), pb = gwd_port();
  char both[1024] = "";
  add_route(both, sizeof both, "a", pa);
  add_route(both, sizeof both, "b", pb);
  gwd_start_conf(&f->proc, &f->dir, both, NULL);
  int base = fd_count(f->proc.pid);
  int cb = gwd_connect_retry(pb, GWD_TIMEOUT_MS);
  assert_true(cb >= 0);
  assert_true(gwd_roundtrip(cb, "before"));

  char only_a[512] = "";
  add_route(only_a, sizeof only_a, "a", pa);
  reload(f, only_a, "<6>reloaded: 1 routes\n", 1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>route \"b\" removed: no longer accepting; 1 clients stay\n"), 1);
  assert_int_equal(gwt_connect("127.0.0.1", pb), -1);
  /* The listening socket and spare are gone already; the client is not. */
  assert_int_equal(fd_count(f->proc.pid), base - 2 + 1);
  for (int i = 0; i < 3; ++i) {
    gwd_sleep_ms(50);
    assert_true(gwd_roundtrip(cb, "still served"));
  }
  assert_int_equal(gwd_log_count(&f->proc, "<6>route b: retired listener freed"), 0);

  close(cb);
  assert_true(gwd_log_wait(&f->proc, "<6>route b: retired listener freed (no clients left)\n", 1, GWD_TIMEOUT_MS));
  assert_int_equal(fd_count(f->proc.pid), base - 2);
  int ca = gwd_connect_retry(pa, GWD_TIMEOUT_MS);
  assert_true(ca >= 0);
  assert_true(gwd_roundtrip(ca, "a"));
  close(ca);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_fd_count_flat_over_200_reloads),
      GWD_TEST(test_low_fd_limit_survives_30_reloads),
      GWD_TEST(test_rolled_back_reload_leaks_nothing),
      GWD_TEST(test_removed_route_client_then_listener_gone),
  };
  return cmocka_run_group_tests_name("daemon_reload", tests, NULL, NULL);
}
