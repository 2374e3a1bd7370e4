/* SPDX-License-Identifier: MIT */
/* gatewayd's command line: --version, --help, --check-config (exit 0 / 78 and
 * the exact messages), and a bad config at startup. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int setup(void **state) {
  gwd_dir *d = calloc(1, sizeof *d);
  gwd_dir_make(d);
  *state = d;
  return 0;
}

static int teardown(void **state) {
  gwd_dir *d = *state;
  gwd_dir_remove(d);
  free(d);
  return 0;
}

/* gatewayd --check-config --config CONF (check) or gatewayd --config CONF,
 * run to completion; its exit code must be `rc`. */
static void run_config(const gwd_dir *d, const char *tag, char *conf, int check, int rc, gwd_proc *p) {
  char *check_args[] = {"--check-config", "--config", conf, NULL};
  char *start_args[] = {"--config", conf, NULL};
  assert_int_equal(gwd_run(d, tag, check ? check_args : start_args, p), rc);
}

/* The captured stdout / stderr must be exactly `expect`. */
static void assert_out(const gwd_proc *p, const char *expect) {
  char *out = gwd_read_out(p);
  assert_string_equal(out, expect);
  free(out);
}

static void assert_err(const gwd_proc *p, const char *expect) {
  char *err = gwd_read_err(p);
  assert_string_equal(err, expect);
  free(err);
}

static void test_version_mentions_systemd(void **state) {
  gwd_dir *d = *state;
  gwd_proc p;
  char *args[] = {"--version", NULL};
  assert_int_equal(gwd_run(d, "version", args, &p), 0);
  char *out = gwd_read_out(&p), *err = gwd_read_err(&p);
  assert_int_equal(strncmp(out, "gatewayd ", 9), 0);
#if GWT_WITH_SYSTEMD
  assert_non_null(strstr(out, " (systemd: yes, socket activation, notify and watchdog)\n"));
#else
  /* GW_WITH_SYSTEMD=OFF: the build option is visible to whoever runs it. */
  assert_non_null(strstr(out, " (systemd: no, built with GW_WITH_SYSTEMD=OFF)\n"));
  assert_null(strstr(out, "systemd: yes"));
#endif
  assert_string_equal(err, "");
  free(out);
  free(err);
}

static void test_help_and_bad_option(void **state) {
  gwd_dir *d = *state;
  gwd_proc p;
  char *help[] = {"--help", NULL};
  assert_int_equal(gwd_run(d, "help", help, &p), 0);
  char *out = gwd_read_out(&p);
  assert_int_equal(strncmp(out, "Usage: gatewayd [--config PATH] [--check-config]\n", 49), 0);
  assert_non_null(strstr(out, "--check-config"));
  free(out);

  char *bad[] = {"--bogus", NULL};
  assert_int_equal(gwd_run(d, "bogus", bad, &p), 2);
  char *err = gwd_read_err(&p);
  assert_non_null(strstr(err, "unrecognized option '--bogus'"));
  assert_non_null(strstr(err, "Usage: gatewayd"));
  free(err);

  char *extra[] = {"stray", NULL};
  assert_int_equal(gwd_run(d, "stray", extra, &p), 2);
  err = gwd_read_err(&p);
  assert_int_equal(strncmp(err, "gatewayd: unexpected argument 'stray'\n", 38), 0);
  free(err);
}

static void test_check_config_good(void **state) {
  gwd_dir *d = *state;
  char conf[512];
  gwd_dir_write(d, "good.conf",
                "[service]\n"
                "log_level = \"debug\"\n"
                "\n"
                "[[route]]\n"
                "name = \"echo\"\n"
                "listen = \"127.0.0.1:7000\"\n"
                "backend = \"echo\"\n"
                "framing = \"line\"\n"
                "\n"
                "[[route]]\n"
                "name = \"modbus\"\n"
                "listen = \"[::1]:7502\"\n"
                "backend = \"tcp://127.0.0.1:502\"\n"
                "allow = [\"127.0.0.0/8\", \"::1/128\"]\n"
                "idle_timeout = \"0\"\n"
                "\n"
                "[[route]]\n"
                "name = \"app\"\n"
                "backend = \"unix:/run/app.sock\"\n",
                conf, sizeof conf);
  gwd_proc p;
  run_config(d, "check", conf, 1, 0, &p);
  char expect[700];
  snprintf(expect, sizeof expect, "%s: OK (3 routes)\n", conf);
  assert_out(&p, expect);
  assert_err(&p, "");

  /* An empty file is valid: no routes. */
  gwd_dir_write(d, "empty.conf", "", conf, sizeof conf);
  char *args2[] = {"--config", conf, "--check-config", NULL};
  assert_int_equal(gwd_run(d, "check2", args2, &p), 0);
  snprintf(expect, sizeof expect, "%s: OK (0 routes)\n", conf);
  assert_out(&p, expect);
}

static const char bad_text[] =
    "[service]\n"
    "log_level = \"verbose\"\n"
    "\n"
    "[[route]]\n"
    "name = \"a\"\n"
    "listen = \"127.0.0.1:7000\"\n"
    "backend = \"echo\"\n"
    "bakclog = 5\n"
    "\n"
    "[[route]]\n"
    "name = \"a\"\n"
    "listen = \"127.0.0.1:7001\"\n"
    "backend = \"ftp://x\"\n"
    "allow = [\"10.0.0.1/8\"]\n";

static void bad_expected(char *out, size_t cap, const char *prefix, const char *c) {
  int n =
      snprintf(out, cap,
               "%s%s:2:13: 'log_level' must be one of error, warning, info, debug (got \"verbose\")\n"
               "%s%s:8:1: unknown key 'bakclog' in route \"a\" (did you mean 'backlog'?)\n"
               "%s%s:11:8: duplicate route name \"a\" (first defined at %s:5:8)\n"
               "%s%s:13:11: 'backend' must be echo, tcp://HOST:PORT, unix:/PATH or serial:/DEVICE (got \"ftp://x\")\n"
               "%s%s:14:10: 'allow' entry \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)\n",
               prefix, c, prefix, c, prefix, c, c, prefix, c, prefix, c);
  assert_true(n > 0 && (size_t)n < cap);
}

static void test_check_config_bad(void **state) {
  gwd_dir *d = *state;
  char conf[512];
  gwd_dir_write(d, "bad.conf", bad_text, conf, sizeof conf);
  gwd_proc p;
  run_config(d, "check", conf, 1, 78, &p);
  char expect[2048];
  bad_expected(expect, sizeof expect, "", conf);
  assert_err(&p, expect);
  assert_out(&p, "");
}

static void test_check_config_single_typo(void **state) {
  gwd_dir *d = *state;
  char conf[512];
  gwd_dir_write(d, "typo.conf",
                "[[route]]\n"
                "name = \"modbus\"\n"
                "listen = \"127.0.0.1:7000\"\n"
                "  bakclog = 5\n"
                "backend = \"echo\"\n",
                conf, sizeof conf);
  gwd_proc p;
  run_config(d, "check", conf, 1, 78, &p);
  char expect[700];
  snprintf(expect, sizeof expect, "%s:4:3: unknown key 'bakclog' in route \"modbus\" (did you mean 'backlog'?)\n",
           conf);
  assert_err(&p, expect);
}

static void test_check_config_missing_and_syntax(void **state) {
  gwd_dir *d = *state;
  char conf[512], expect[800];
  gwd_dir_file(d, "missing.conf", conf, sizeof conf);
  gwd_proc p;
  run_config(d, "missing", conf, 1, 78, &p);
  snprintf(expect, sizeof expect, "%s: cannot open: No such file or directory\n", conf);
  assert_err(&p, expect);

  gwd_dir_write(d, "syntax.conf", "[[route]\nname=", conf, sizeof conf);
  run_config(d, "syntax", conf, 1, 78, &p);
  char *err = gwd_read_err(&p);
  snprintf(expect, sizeof expect, "%s:1:9: ", conf);
  /* toml++'s wording is its own; the position is ours. Exactly one line. */
  assert_int_equal(strncmp(err, expect, strlen(expect)), 0);
  assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1);
  free(err);
}

/* Without --check-config the same errors go to the journal with <3>, exit 78,
 * and nothing is bound. */
static void test_start_with_bad_config(void **state) {
  gwd_dir *d = *state;
  char conf[512];
  gwd_dir_write(d, "bad.conf", bad_text, conf, sizeof conf);
  gwd_proc p;
  run_config(d, "start", conf, 0, 78, &p);
  char expect[2048];
  bad_expected(expect, sizeof expect, "<3>", conf);
  assert_err(&p, expect);
}

/* A route with no listen address and no socket from systemd: startup error. */
static void test_start_route_without_socket(void **state) {
  gwd_dir *d = *state;
  char conf[512];
  gwd_dir_write(d, "nolisten.conf",
                "[[route]]\n"
                "name = \"app\"\n"
                "backend = \"echo\"\n",
                conf, sizeof conf);
  gwd_proc p;
  run_config(d, "start", conf, 0, 1, &p);
  char *err = gwd_read_err(&p);
#if GWT_WITH_SYSTEMD
  assert_non_null(strstr(err, "<3>route \"app\" has no listen address and systemd passed no socket named \"app\""));
#else
  assert_non_null(strstr(err,
                         "<3>route \"app\" has no listen address: add listen = \"IP:PORT\" (this gatewayd was "
                         "built without systemd support"));
#endif
  free(err);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_version_mentions_systemd, setup, teardown),
      cmocka_unit_test_setup_teardown(test_help_and_bad_option, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_config_good, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_config_bad, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_config_single_typo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_config_missing_and_syntax, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_with_bad_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_route_without_socket, setup, teardown),
  };
  return cmocka_run_group_tests_name("daemon_cli", tests, NULL, NULL);
}
