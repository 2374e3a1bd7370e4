/* SPDX-License-Identifier: MIT */
/* gatewayd's echo backend end to end: raw and line framing, several clients,
 * a client's EOF, the per-connection log lines. */
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

static void start_echo(gwd_fixture *f, int port, const char *framing) {
  char conf[512];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"echo\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"echo\"\n"
           "framing = \"%s\"\n",
           port, framing);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
}

static void test_raw_roundtrip(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_echo(f, port, "raw");
  char line[128];
  snprintf(line, sizeof line, "<6>route echo: listening on 127.0.0.1:%d\n", port);
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  assert_int_equal(gwd_log_count(&f->proc, "<6>ready: 1 routes\n"), 1);

  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "hello"));
  assert_true(gwd_roundtrip(c, "x"));

  /* 1 MiB through the echo, checked byte for byte. */
  gwd_sender s = {0};
  gwd_sender_start(&s, c, 1u << 20, 7, 1);
  gwd_rx rx;
  gwd_recv_stream(c, 7, GWD_TIMEOUT_MS, &rx);
  assert_int_equal(gwd_sender_join(&s), 0);
  assert_int_equal(rx.bytes, 1u << 20);
  assert_int_equal(rx.mismatches, 0);
  /* Our EOF is answered with the daemon's once everything is echoed. */
  assert_int_equal(rx.eof, 1);

  snprintf(line, sizeof line, "<6>route echo: 127.0.0.1:%d connected\n", gwt_local_port(c));
  assert_int_equal(gwd_log_count(&f->proc, line), 1);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_line_roundtrip(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_echo(f, port, "line");
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  char buf[256];
  /* Several lines in one write, one line across writes. */
  assert_int_equal(gwt_write_all(NULL, c, "one\ntwo\nthr", 11), 0);
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 3);
  assert_string_equal(buf, "one");
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 3);
  assert_string_equal(buf, "two");
  /* The partial line is not echoed before its newline. */
  assert_true(gwt_quiet(NULL, c, 100));
  assert_int_equal(gwt_write_all(NULL, c, "ee\n", 3), 0);
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 5);
  assert_string_equal(buf, "three");
  /* An empty line is a message too. */
  assert_int_equal(gwt_write_all(NULL, c, "\n", 1), 0);
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 0);
  assert_string_equal(buf, "");
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_several_clients(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  start_echo(f, port, "line");
  int c[5];
  for (int i = 0; i < 5; ++i) {
    c[i] = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(c[i] >= 0);
  }
  char msg[64], buf[64];
  for (int round = 0; round < 3; ++round) {
    for (int i = 4; i >= 0; --i) {
      int n = snprintf(msg, sizeof msg, "client %d round %d\n", i, round);
      assert_int_equal(gwt_write_all(NULL, c[i], msg, (size_t)n), 0);
    }
    for (int i = 0; i < 5; ++i) {
      int n = snprintf(msg, sizeof msg, "client %d round %d", i, round);
      assert_int_equal(gwt_read_line(NULL, c[i], buf, sizeof buf, GWD_TIMEOUT_MS), n);
      assert_string_equal(buf, msg);
    }
  }
  for (int i = 0; i < 5; ++i) {
    assert_int_equal(shutdown(c[i], SHUT_WR), 0);
    assert_int_equal(gwt_wait_eof(NULL, c[i], GWD_TIMEOUT_MS, NULL), 0);
    close(c[i]);
  }
  assert_true(gwd_log_wait(&f->proc, "closed (peer closed)", 5, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_stop(&f->proc), 0);
  assert_int_equal(gwd_log_count(&f->proc, "<6>stopped\n"), 1);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_raw_roundtrip),
      GWD_TEST(test_line_roundtrip),
      GWD_TEST(test_several_clients),
  };
  return cmocka_run_group_tests_name("daemon_echo", tests, NULL, NULL);
}
