/* SPDX-License-Identifier: MIT */
/* tcp://NAME backends: names are resolved off the loop, a name that does not
 * resolve at start is a warning (and served once it resolves), every address
 * is tried, and an unchanged name is not looked up again on reload.
 *
 * Names under ".gwtest" are answered by the test-only LD_PRELOAD shim
 * (resolv_shim.c, path in $GWD_RESOLV_SHIM) from DIR/hosts, which the tests
 * rewrite while gatewayd runs; the shim logs each lookup to DIR/lookups. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *shim;

typedef struct dns_env {
  char preload[400];
  char hosts[400];
  char log[400];
  char hosts_path[300];
  char log_path[300];
  gwd_spawn_opts opts;
} dns_env;

static void dns_env_init(dns_env *e, gwd_fixture *f, const char *hosts_text) {
  memset(e, 0, sizeof *e);
  gwd_dir_write(&f->dir, "hosts", hosts_text, e->hosts_path, sizeof e->hosts_path);
  gwd_dir_file(&f->dir, "lookups", e->log_path, sizeof e->log_path);
  snprintf(e->preload, sizeof e->preload, "LD_PRELOAD=%s", shim);
  snprintf(e->hosts, sizeof e->hosts, "GWTEST_HOSTS=%s", e->hosts_path);
  snprintf(e->log, sizeof e->log, "GWTEST_HOSTS_LOG=%s", e->log_path);
  e->opts.env[0] = e->preload;
  e->opts.env[1] = e->hosts;
  e->opts.env[2] = e->log;
}

/* How many .gwtest lookups gatewayd has made so far. */
static int lookups(const dns_env *e) {
  FILE *f = fopen(e->log_path, "re");
  if (!f) return 0;
  int n = 0;
  for (int c; (c = fgetc(f)) != EOF;) n += c == '\n';
  fclose(f);
  return n;
}

static void start_echo_backend(gwd_fixture *f) {
  f->backend.mode = GWD_BACKEND_ECHO;
  assert_int_equal(gwd_backend_tcp(&f->backend), 0);
  f->backend_running = 1;
}

static void add_route(char *buf, size_t cap, const char *name, int port, const char *backend) {
  size_t len = strlen(buf);
  snprintf(buf + len, cap - len, "[[route]]\nname = \"%s\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"%s\"\n\n", name,
           port, backend);
}

static void expect_log(gwd_fixture *f, const char *needle, int nth, int timeout_ms) {
  if (!gwd_log_wait(&f->proc, needle, nth, timeout_ms)) {
    char *err = gwd_read_err(&f->proc);
    print_error("no \"%s\" (#%d); stderr:\n%s\n", needle, nth, err);
    free(err);
    fail();
  }
}

/* The backend name does not resolve at start: gatewayd starts anyway, says
 * so, closes the route's clients with that reason, and serves them once the
 * name resolves (retried with backoff). */
static void test_unresolvable_at_start_then_serves(void **state) {
  gwd_fixture *f = *state;
  start_echo_backend(f);
  dns_env e;
  dns_env_init(&e, f, "# plc.gwtest is not known yet\n");
  int port = gwd_port();
  char backend[64], conf[512] = "";
  snprintf(backend, sizeof backend, "tcp://plc.gwtest:%d", f->backend.port);
  add_route(conf, sizeof conf, "fwd", port, backend);
  gwd_start_conf(&f->proc, &f->dir, conf, &e.opts);
  char line[300];
  snprintf(line, sizeof line,
           "<4>route \"fwd\": backend %s: cannot resolve plc.gwtest: Name or service not known; its clients are "
           "closed until it resolves; retrying in 1000 ms\n",
           backend);
  expect_log(f, line, 1, GWD_TIMEOUT_MS);
  assert_true(gwd_alive(&f->proc));

  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  close(c);
  snprintf(line, sizeof line, "backend %s: cannot resolve plc.gwtest: Name or service not known; closing the client\n",
           backend);
  expect_log(f, line, 1, GWD_TIMEOUT_MS);

  gwd_dir_write(&f->dir, "hosts", "plc.gwtest 127.0.0.1\n", NULL, 0);
  snprintf(line, sizeof line, "<6>route \"fwd\": backend %s: plc.gwtest resolved to 127.0.0.1:%d\n", backend,
           f->backend.port);
  expect_log(f, line, 1, 10000);
  c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "resolved now"));
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* A reload that points a route at a name whose lookup takes 3 s: the loop
 * does not wait for it (the other route's clients are answered at once), the
 * route's next client waits for the answer and is served, and a reload that
 * leaves the name unchanged does not look it up again. */
static void test_slow_lookup_does_not_stall_the_loop(void **state) {
  gwd_fixture *f = *state;
  start_echo_backend(f);
  dns_env e;
  dns_env_init(&e, f, "fast.gwtest 127.0.0.1\nslow.gwtest delay=3000 127.0.0.1\n");
  int pe = gwd_port(), pf = gwd_port();
  char fast[64], slow[64], conf[1024] = "";
  snprintf(fast, sizeof fast, "tcp://fast.gwtest:%d", f->backend.port);
  snprintf(slow, sizeof slow, "tcp://slow.gwtest:%d", f->backend.port);
  add_route(conf, sizeof conf, "echo", pe, "echo");
  add_route(conf, sizeof conf, "fwd", pf, fast);
  gwd_start_conf(&f->proc, &f->dir, conf, &e.opts);
  int ce = gwd_connect_retry(pe, GWD_TIMEOUT_MS);
  assert_true(ce >= 0);
  assert_true(gwd_roundtrip(ce, "before"));

  conf[0] = '\0';
  add_route(conf, sizeof conf, "echo", pe, "echo");
  add_route(conf, sizeof conf, "fwd", pf, slow);
  gwd_dir_write(&f->dir, "gateway.conf", conf, NULL, 0);
  int64_t t0 = gwt_now_ms();
  gwd_signal(&f->proc, SIGHUP);
  expect_log(f, "<6>reloaded: 2 routes\n", 1, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(ce, "during the lookup"));
  int ce2 = gwd_connect_retry(pe, GWD_TIMEOUT_MS);
  assert_true(ce2 >= 0);
  assert_true(gwd_roundtrip(ce2, "new during the lookup"));
  int64_t echo_ms = gwt_now_ms() - t0;
  /* A client of the slow route waits for the answer, then is served. */
  int cf = gwd_connect_retry(pf, GWD_TIMEOUT_MS);
  assert_true(cf >= 0);
  gwd_sock_timeouts(cf, 6000);
  assert_true(gwd_roundtrip(cf, "after the slow answer"));
  int64_t fwd_ms = gwt_now_ms() - t0;
  print_message("reload + echo round trips during a 3 s lookup: %lld ms; the slow route's first client: %lld ms\n",
                (long long)echo_ms, (long long)fwd_ms);
  assert_true(echo_ms < 1000);
  assert_true(fwd_ms >= 2500);
  expect_log(f, "slow.gwtest resolved to 127.0.0.1:", 1, GWD_TIMEOUT_MS);

  /* The same configuration again: no lookup, the handler is kept. */
  int before = lookups(&e);
  gwd_signal(&f->proc, SIGHUP);
  expect_log(f, "<6>reloaded: 2 routes\n", 2, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(cf, "kept"));
  int cf2 = gwd_connect_retry(pf, GWD_TIMEOUT_MS);
  assert_true(cf2 >= 0);
  int64_t t1 = gwt_now_ms();
  assert_true(gwd_roundtrip(cf2, "no new lookup"));
  assert_true(gwt_now_ms() - t1 < 1000);
  assert_int_equal(lookups(&e), before);
  close(ce);
  close(ce2);
  close(cf);
  close(cf2);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* The name's first address refuses (nothing listens on 127.0.0.2): the second
 * one serves. */
static void test_second_address_serves_when_first_refuses(void **state) {
  gwd_fixture *f = *state;
  start_echo_backend(f);
  dns_env e;
  dns_env_init(&e, f, "multi.gwtest 127.0.0.2 127.0.0.1\n");
  int port = gwd_port();
  char backend[64], conf[512] = "";
  snprintf(backend, sizeof backend, "tcp://multi.gwtest:%d", f->backend.port);
  add_route(conf, sizeof conf, "fwd", port, backend);
  gwd_start_conf(&f->proc, &f->dir, conf, &e.opts);
  for (int i = 0; i < 3; ++i) {
    int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(c >= 0);
    assert_true(gwd_roundtrip(c, "second address"));
    close(c);
  }
  assert_int_equal(gwd_backend_accepted(&f->backend), 3);
  char line[300];
  snprintf(line, sizeof line, "multi.gwtest resolved to 127.0.0.2:%d, 127.0.0.1:%d\n", f->backend.port,
           f->backend.port);
  expect_log(f, line, 1, GWD_TIMEOUT_MS);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  shim = getenv("GWD_RESOLV_SHIM");
  if (!shim || access(shim, R_OK) != 0) {
    fprintf(stderr, "GWD_RESOLV_SHIM must name the resolv shim (set by CTest)\n");
    return 1;
  }
  /* Under ASan, gatewayd would refuse a preloaded library ahead of its runtime. */
  const char *asan = getenv("ASAN_OPTIONS");
  char options[1024];
  snprintf(options, sizeof options, "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
  setenv("ASAN_OPTIONS", options, 1);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_unresolvable_at_start_then_serves),
      GWD_TEST(test_slow_lookup_does_not_stall_the_loop),
      GWD_TEST(test_second_address_serves_when_first_refuses),
  };
  return cmocka_run_group_tests_name("daemon_dns", tests, NULL, NULL);
}
