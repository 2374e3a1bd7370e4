/* SPDX-License-Identifier: MIT */
/* Fail closed, through the real binary: a setting --check-config accepts is one
 * the daemon applies, and one it cannot apply stops startup or rejects the
 * reload instead of being dropped. The allow-list inputs that used to pass the
 * check and then vanish at startup (leaving the route open to everyone), a port
 * with leading zeros, the two inputs that crash Debian's toml++ 3.3.0, and a
 * client outside an allow list that must never reach the backend. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char allow_leading_zeros[] = "allow = [\"10.0.0.0/0008\"]\n";
static const char allow_nul[] = "allow = [\"10.0.0.0\\u0000:/8\"]\n";

/* One route "r" on 127.0.0.1:port (listen written as given when port < 0),
 * then the lines `extra` from line 4 on. */
static void route_conf(char *out, size_t cap, const char *listen, int port, const char *extra) {
  char where[64];
  if (port >= 0)
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
  else
    snprintf(where, sizeof where, "%s", listen);
  int n = snprintf(out, cap, "[[route]]\nname = \"r\"\nlisten = \"%s\"\n%s", where, extra);
  assert_true(n > 0 && (size_t)n < cap);
}

/* Runs gatewayd on CONF (with --check-config when check) and expects exit 78
 * and exactly `message` (one line, without the PATH: prefix) on stderr. */
static void expect_refused_config(gwd_fixture *f, const char *tag, const char *conf, int check, const char *message) {
  char *check_args[] = {"--check-config", "--config", (char *)conf, NULL};
  char *start_args[] = {"--config", (char *)conf, NULL};
  gwd_proc p;
  assert_int_equal(gwd_run(&f->dir, tag, check ? check_args : start_args, &p), 78);
  char expect[1024];
  snprintf(expect, sizeof expect, "%s%s%s\n", check ? "" : "<3>", conf, message);
  char *err = gwd_read_err(&p);
  if (strcmp(err, expect) != 0) print_error("expected:\n%sgot:\n%s", expect, err);
  assert_string_equal(err, expect);
  free(err);
}

static void test_allow_the_runtime_cannot_apply(void **state) {
  gwd_fixture *f = *state;
  char text[512], conf[512];
  route_conf(text, sizeof text, NULL, gwd_port(), allow_leading_zeros);
  strcat(text, "backend = \"echo\"\n");
  gwd_dir_write(&f->dir, "zeros.conf", text, conf, sizeof conf);
  const char *zeros =
      ":4:10: 'allow' entry \"10.0.0.0/0008\" has a prefix length with leading zeros (must be 0 "
      "to 32, written without them: \"10.0.0.0/8\")";
  expect_refused_config(f, "zeros-check", conf, 1, zeros);
  expect_refused_config(f, "zeros-start", conf, 0, zeros);

  route_conf(text, sizeof text, NULL, gwd_port(), allow_nul);
  strcat(text, "backend = \"echo\"\n");
  gwd_dir_write(&f->dir, "nul.conf", text, conf, sizeof conf);
  const char *nul = ":4:10: 'allow' entry \"10.0.0.0\\x00:/8\" contains a NUL byte";
  expect_refused_config(f, "nul-check", conf, 1, nul);
  expect_refused_config(f, "nul-start", conf, 0, nul);
}

static void test_listen_port_with_leading_zeros(void **state) {
  gwd_fixture *f = *state;
  char text[512], conf[512];
  route_conf(text, sizeof text, "127.0.0.1:0017732", -1, "backend = \"echo\"\n");
  gwd_dir_write(&f->dir, "port.conf", text, conf, sizeof conf);
  const char *msg =
      ":3:10: 'listen' port \"0017732\" must be written without leading zeros (got "
      "\"127.0.0.1:0017732\")";
  expect_refused_config(f, "port-check", conf, 1, msg);
  expect_refused_config(f, "port-start", conf, 0, msg);
}

/* A client outside the allow list gets EOF, and not one byte (nor even a
 * connection) reaches the backend; one inside is forwarded. */
static void test_outside_client_never_reaches_backend(void **state) {
  gwd_fixture *f = *state;
  f->backend.mode = GWD_BACKEND_ECHO;
  assert_int_equal(gwd_backend_tcp(&f->backend), 0);
  f->backend_running = 1;
  int closed = gwd_port(), open = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[[route]]\nname = \"closed\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"tcp://127.0.0.1:%d\"\n"
           "allow = [\"10.0.0.0/8\", \"::1/128\"]\n"
           "[[route]]\nname = \"open\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"tcp://127.0.0.1:%d\"\n"
           "allow = [\"127.0.0.0/8\"]\n",
           closed, f->backend.port, open, f->backend.port);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);

  int c = gwd_connect_retry(closed, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  (void)send(c, "secret\n", 7, MSG_NOSIGNAL); /* may fail: the daemon closes at once */
  size_t discarded = 99;
  int rc = gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, &discarded);
  assert_true(rc == 0 || rc == 1); /* EOF, or a reset for the unread bytes: closed either way */
  assert_int_equal(discarded, 0);
  close(c);
  assert_true(gwd_log_wait(&f->proc, "not in the allow list", 1, GWD_TIMEOUT_MS));

  int ok = gwd_connect_retry(open, GWD_TIMEOUT_MS);
  assert_true(ok >= 0);
  gwd_sock_timeouts(ok, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(ok, "forwarded"));
  close(ok);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_backend_accepted(&f->backend), 1); /* only the allowed client */
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* Writes `text` over the running daemon's config, sends SIGHUP and expects
 * the reload to be rejected with `message` (after "<3>PATH"), the daemon still
 * running and `c` still served. */
static void expect_reload_rejected(gwd_fixture *f, int count, const char *text, const char *message, int c) {
  char conf[512], line[1024];
  gwd_dir_write(&f->dir, "gateway.conf", text, conf, sizeof conf);
  gwd_signal(&f->proc, SIGHUP);
  if (!gwd_log_wait(&f->proc, "reload rejected (configuration errors)", count, GWD_TIMEOUT_MS)) {
    char *err = gwd_read_err(&f->proc);
    print_error("no rejected reload; stderr:\n%s\n", err);
    free(err);
    fail();
  }
  snprintf(line, sizeof line, "<3>%s%s\n", conf, message);
  if (gwd_log_count(&f->proc, line) != 1) {
    char *err = gwd_read_err(&f->proc);
    print_error("missing line:\n%sstderr:\n%s\n", line, err);
    free(err);
  }
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  assert_true(gwd_alive(&f->proc));
  assert_true(gwd_roundtrip(c, "still served"));
}

static void test_reload_rejects_what_cannot_be_applied(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  char good[512], text[512];
  route_conf(good, sizeof good, NULL, port, "backend = \"echo\"\nallow = [\"127.0.0.0/8\"]\n");
  gwd_start_conf(&f->proc, &f->dir, good, NULL);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(c, "before"));

  /* toml++ 3.3.0: an assertion on "[/", __builtin_unreachable() on U+FCFF.
   * A sanitizer or debug build died here; now the reload is refused. */
  expect_reload_rejected(f, 1, "[/",
                         ": cannot parse this file: the TOML parser (toml++ 3.3.0) failed an internal check "
                         "(assertion failed: is_bare_key_character(*cp) || is_string_delimiter(*cp)); look for a "
                         "stray character or bracket near the start of a line",
                         c);
  expect_reload_rejected(f, 2, "\xef\xb3\xbf\x78",
                         ":1:1: Error while parsing root table: expected keys, tables, whitespace or comments, "
                         "saw '\xef\xb3\xbf'",
                         c);
  /* An allow list that cannot be applied is refused, not dropped. */
  route_conf(text, sizeof text, NULL, port, "backend = \"echo\"\nallow = [\"10.0.0.0/0008\"]\n");
  expect_reload_rejected(f, 3, text,
                         ":5:10: 'allow' entry \"10.0.0.0/0008\" has a prefix length with leading zeros (must be 0 "
                         "to 32, written without them: \"10.0.0.0/8\")",
                         c);
  /* The running allow list still applies: a new client from 127.0.0.1 is
   * served, and the route was never opened to everyone. */
  int d = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(d >= 0);
  gwd_sock_timeouts(d, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(d, "after"));
  close(d);
  close(c);
  assert_int_equal(gwd_log_count(&f->proc, "reloaded:"), 0);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* The crash inputs through --check-config: exit 78, one line each. */
static void test_check_config_toml_crash_inputs(void **state) {
  gwd_fixture *f = *state;
  const char *inputs[] = {"[/", "\xef\xb3\xbf\x78", "a = 1\n[[/"};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
    char conf[512], tag[32];
    snprintf(tag, sizeof tag, "crash%zu", i);
    gwd_dir_write(&f->dir, "crash.conf", inputs[i], conf, sizeof conf);
    char *args[] = {"--check-config", "--config", conf, NULL};
    gwd_proc p;
    assert_int_equal(gwd_run(&f->dir, tag, args, &p), 78);
    char *err = gwd_read_err(&p);
    assert_int_equal(strncmp(err, conf, strlen(conf)), 0);
    assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1);
    free(err);
  }
}

/* Control bytes and invalid UTF-8 in the file come out escaped, one line. */
static void test_messages_are_one_line(void **state) {
  gwd_fixture *f = *state;
  char conf[512];
  gwd_dir_write(&f->dir, "ctl.conf",
                "[[route]]\nname = \"r\"\nbackend = \"echo\"\nframing = \"a\\r\\u000b\\u001b\\u0000\xc3\xa9\"\n"
                "[[route]]\nname = \"s\xff\"\n",
                conf, sizeof conf);
  char *args[] = {"--check-config", "--config", conf, NULL};
  gwd_proc p;
  assert_int_equal(gwd_run(&f->dir, "ctl", args, &p), 78);
  char *err = gwd_read_err(&p);
  char expect[1024];
  snprintf(expect, sizeof expect, "%s:6:9: Encountered invalid utf-8 sequence\n", conf);
  assert_string_equal(err, expect);
  free(err);

  gwd_dir_write(&f->dir, "ctl.conf",
                "[[route]]\nname = \"r\"\nbackend = \"echo\"\nframing = \"a\\r\\u000b\\u001b\\u0000\xc3\xa9\"\n", conf,
                sizeof conf);
  assert_int_equal(gwd_run(&f->dir, "ctl2", args, &p), 78);
  err = gwd_read_err(&p);
  snprintf(expect, sizeof expect,
           "%s:4:11: 'framing' must be one of raw, line, u16be, u32be (got \"a\\x0d\\x0b\\x1b\\x00\xc3\xa9\")\n", conf);
  assert_string_equal(err, expect);
  free(err);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_allow_the_runtime_cannot_apply),       GWD_TEST(test_listen_port_with_leading_zeros),
      GWD_TEST(test_outside_client_never_reaches_backend), GWD_TEST(test_reload_rejects_what_cannot_be_applied),
      GWD_TEST(test_check_config_toml_crash_inputs),       GWD_TEST(test_messages_are_one_line),
  };
  return cmocka_run_group_tests_name("daemon_allow", tests, NULL, NULL);
}
