/* SPDX-License-Identifier: MIT */
/* sd_notify on a test NOTIFY_SOCKET: READY, STATUS, WATCHDOG (from
 * WATCHDOG_USEC/WATCHDOG_PID), RELOADING around SIGHUP, STOPPING on SIGTERM.
 * Built with GW_WITH_SYSTEMD=OFF (GWT_WITH_SYSTEMD 0): the daemon works the
 * same but sends nothing, and starts no watchdog. */
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

static void config(gwd_fixture *f, int port, char *out, size_t cap) {
  char text[256];
  snprintf(text, sizeof text,
           "[[route]]\n"
           "name = \"echo\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n",
           port);
  gwd_dir_write(&f->dir, "gateway.conf", text, out, cap);
}

static void test_lifecycle(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  char conf[512];
  config(f, port, conf, sizeof conf);
  gwd_spawn_opts o = {.env = {f->notify.env, "WATCHDOG_USEC=200000"}, .watchdog_pid = 1};
  assert_int_equal(gwd_start(&f->proc, &f->dir, conf, &o), 0);

  assert_true(gwd_notify_wait(&f->notify, "READY=1", 1, GWD_TIMEOUT_MS));
  /* READY only once the listener is live. */
  int c = gwt_connect("127.0.0.1", port);
  assert_true(c >= 0);
  gwd_sock_timeouts(c, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(c, "ready means ready"));
  assert_true(gwd_notify_wait(&f->notify, "STATUS=", 1, GWD_TIMEOUT_MS));
  assert_non_null(strstr(
      f->notify.log, "STATUS=1 routes, 0 clients, 0 accepted, 0 refused, 0 bytes in, 0 bytes out, 0 bytes spliced\n"));
  assert_true(gwd_log_wait(&f->proc, "<6>watchdog: every 100 ms\n", 1, GWD_TIMEOUT_MS));
  /* Fed at half the interval: several in a second (bounded wait, no rate assertion). */
  assert_true(gwd_notify_wait(&f->notify, "WATCHDOG=1", 3, GWD_TIMEOUT_MS));

  /* Reload: RELOADING=1 with MONOTONIC_USEC in one datagram, then READY=1. */
  gwd_signal(&f->proc, SIGHUP);
  assert_true(gwd_notify_wait(&f->notify, "RELOADING=1", 1, GWD_TIMEOUT_MS));
  assert_true(gwd_notify_wait(&f->notify, "READY=1", 2, GWD_TIMEOUT_MS));
  int reloading = gwd_notify_index(&f->notify, "RELOADING=1", 1);
  assert_int_equal(gwd_notify_index(&f->notify, "MONOTONIC_USEC=", 1), reloading);
  assert_true(gwd_notify_index(&f->notify, "READY=1", 2) > reloading);
  assert_true(gwd_notify_wait(&f->notify, "STATUS=", 2, GWD_TIMEOUT_MS));

  /* A rejected reload still ends the reload: READY=1 with a status saying so. */
  gwd_dir_write(&f->dir, "gateway.conf", "[[route]]\nname = 5\n", NULL, 0);
  gwd_signal(&f->proc, SIGHUP);
  assert_true(gwd_notify_wait(&f->notify, "RELOADING=1", 2, GWD_TIMEOUT_MS));
  assert_true(gwd_notify_wait(&f->notify, "READY=1", 3, GWD_TIMEOUT_MS));
  assert_true(gwd_notify_wait(&f->notify, "STATUS=reload rejected: see the journal", 1, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_notify_index(&f->notify, "STATUS=reload rejected: see the journal", 1),
                   gwd_notify_index(&f->notify, "READY=1", 3));
  assert_true(gwd_roundtrip(c, "still served"));

  /* The watchdog keeps coming from the loop after reloads. */
  int fed = gwd_notify_count(&f->notify, "WATCHDOG=1");
  assert_true(gwd_notify_wait(&f->notify, "WATCHDOG=1", fed + 2, GWD_TIMEOUT_MS));

  close(c);
  gwd_signal(&f->proc, SIGTERM);
  assert_true(gwd_notify_wait(&f->notify, "STOPPING=1", 1, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 0);
  assert_true(gwd_notify_index(&f->notify, "STOPPING=1", 1) > gwd_notify_index(&f->notify, "READY=1", 3));
  assert_int_equal(gwd_notify_count(&f->notify, "STOPPING=1"), 1);
  assert_int_equal(gwd_notify_count(&f->notify, "READY=1"), 3);
}

/* WATCHDOG_PID names another process: the watchdog is not ours, no WATCHDOG=1. */
static void test_watchdog_for_another_pid(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  char conf[512];
  config(f, port, conf, sizeof conf);
  gwd_spawn_opts o = {.env = {f->notify.env, "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"}};
  assert_int_equal(gwd_start(&f->proc, &f->dir, conf, &o), 0);
  assert_true(gwd_notify_wait(&f->notify, "READY=1", 1, GWD_TIMEOUT_MS));
  gwd_sleep_ms(400);
  assert_int_equal(gwd_notify_count(&f->notify, "WATCHDOG=1"), 0);
  assert_int_equal(gwd_log_count(&f->proc, "watchdog"), 0);
  assert_int_equal(gwd_stop(&f->proc), 0);
  assert_int_equal(gwd_notify_count(&f->notify, "STOPPING=1"), 1);
}

#if !GWT_WITH_SYSTEMD
static void test_nosd_sends_nothing(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  char conf[512];
  config(f, port, conf, sizeof conf);
  gwd_spawn_opts o = {.env = {f->notify.env, "WATCHDOG_USEC=200000"}, .watchdog_pid = 1};
  assert_int_equal(gwd_start(&f->proc, &f->dir, conf, &o), 0);
  assert_true(gwd_wait_ready(&f->proc));
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "served"));
  gwd_signal(&f->proc, SIGHUP);
  assert_true(gwd_log_wait(&f->proc, "<6>reloaded: 1 routes\n", 1, GWD_TIMEOUT_MS));
  assert_true(gwd_roundtrip(c, "still served"));
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
  /* Everything the daemon could have sent was sent before it exited. */
  gwd_notify_poll(&f->notify);
  assert_int_equal(f->notify.datagrams, 0);
  assert_int_equal(gwd_log_count(&f->proc, "watchdog"), 0);
  assert_int_equal(gwd_log_count(&f->proc, "<6>stopped\n"), 1);
}
#endif

int main(int argc, char **argv) {
  gwd_init(argc, argv);
#if !GWT_WITH_SYSTEMD
  const struct CMUnitTest nosd[] = {
      cmocka_unit_test_setup_teardown(test_nosd_sends_nothing, gwd_setup_notify, gwd_teardown),
  };
  return cmocka_run_group_tests_name("daemon_notify_nosystemd", nosd, NULL, NULL);
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lifecycle, gwd_setup_notify, gwd_teardown),
      cmocka_unit_test_setup_teardown(test_watchdog_for_another_pid, gwd_setup_notify, gwd_teardown),
  };
  return cmocka_run_group_tests_name("daemon_notify", tests, NULL, NULL);
}
