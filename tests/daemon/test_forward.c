/* SPDX-License-Identifier: MIT */
/* gatewayd forwarding to tcp:// and unix: backends that the test runs itself:
 * both directions, half-close, 8 MiB each way checksummed, connect failures. */
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

#define BIG (8u << 20)

/* Starts gatewayd with one route "fwd" on a fresh port to `target` (a
 * backend URI); returns the route's port. */
static int start_route(gwd_fixture *f, const char *target) {
  int port = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[[route]]\n"
           "name = \"fwd\"\n"
           "listen = \"127.0.0.1:%d\"\n"
           "backend = \"%s\"\n",
           port, target);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  return port;
}

/* Starts the backend (already configured in f->backend) and a daemon route
 * "fwd" to it; returns the route's port. */
static int start(gwd_fixture *f, int use_unix) {
  if (use_unix)
    assert_int_equal(gwd_backend_unix(&f->backend, &f->dir, "backend.sock"), 0);
  else
    assert_int_equal(gwd_backend_tcp(&f->backend), 0);
  f->backend_running = 1;
  char target[400];
  if (use_unix)
    snprintf(target, sizeof target, "unix:%s", f->backend.path);
  else
    snprintf(target, sizeof target, "tcp://127.0.0.1:%d", f->backend.port);
  return start_route(f, target);
}

/* A client of a route whose backend cannot be reached: it is closed (not left
 * hanging) and the log names the client, `backend` and `why`. */
static void expect_client_closed(gwd_fixture *f, int port, const char *backend, const char *why) {
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  int peer = gwt_local_port(c);
  int rc = gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL);
  assert_true(rc == 0 || rc == 1); /* closed, not left hanging */
  close(c);
  char line[700];
  snprintf(line, sizeof line, "<4>route fwd: 127.0.0.1:%d: backend %s: %s; closing the client\n", peer, backend, why);
  assert_true(gwd_log_wait(&f->proc, line, 1, GWD_TIMEOUT_MS));
}

/* Interactive, both directions: every byte the client sends reaches the
 * backend and every byte it answers reaches the client. */
static void roundtrips(gwd_fixture *f, int use_unix) {
  f->backend.mode = GWD_BACKEND_ECHO;
  int port = start(f, use_unix);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, "first"));
  assert_true(gwd_roundtrip(c, "second message"));
  assert_true(gwd_roundtrip(c, "3"));
  assert_int_equal(gwd_backend_accepted(&f->backend), 1);
  /* Our EOF reaches the backend, whose EOF comes back. */
  assert_int_equal(shutdown(c, SHUT_WR), 0);
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  assert_int_equal(f->backend.rx[0].eof, 1);
  assert_int_equal(f->backend.rx[0].bytes, 5 + 14 + 1);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_tcp_roundtrips(void **state) { roundtrips(*state, 0); }

static void test_unix_roundtrips(void **state) { roundtrips(*state, 1); }

/* Client shutdown(SHUT_WR) -> the backend sees EOF; the backend's reply,
 * sent after that, still reaches the client; then the client sees EOF. */
static void half_close(gwd_fixture *f, int use_unix) {
  f->backend.mode = GWD_BACKEND_STREAM;
  f->backend.send_len = 0;
  f->backend.recv_seed = 3;
  f->backend.reply = "reply after your EOF\n";
  int port = start(f, use_unix);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_int_equal(gwd_send_stream(c, 1000, 3, 0, 0, 1, GWD_TIMEOUT_MS), 0);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  assert_int_equal(f->backend.rx[0].eof, 1);
  assert_int_equal(f->backend.rx[0].bytes, 1000);
  assert_int_equal(f->backend.rx[0].mismatches, 0);
  assert_int_equal(f->backend.send_rc[0], 0);
  char buf[64];
  assert_int_equal(gwt_read_line(NULL, c, buf, sizeof buf, GWD_TIMEOUT_MS), 20);
  assert_string_equal(buf, "reply after your EOF");
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_tcp_half_close(void **state) { half_close(*state, 0); }

static void test_unix_half_close(void **state) { half_close(*state, 1); }

/* The other half: the backend sends and shuts down first; the client gets
 * everything and EOF while its own direction is still open, and can still
 * send (the backend reads to EOF). */
static void test_tcp_backend_closes_first(void **state) {
  gwd_fixture *f = *state;
  f->backend.mode = GWD_BACKEND_STREAM;
  f->backend.send_len = 300000;
  f->backend.send_seed = 11;
  f->backend.shut_after_send = 1;
  f->backend.recv_seed = 12;
  int port = start(f, 0);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_rx rx;
  gwd_recv_stream(c, 11, GWD_TIMEOUT_MS, &rx);
  assert_int_equal(rx.eof, 1);
  assert_int_equal(rx.bytes, 300000);
  assert_int_equal(rx.mismatches, 0);
  /* After the backend's EOF, the client's direction still works. */
  assert_int_equal(gwd_send_stream(c, 5000, 12, 0, 0, 1, GWD_TIMEOUT_MS), 0);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  assert_int_equal(f->backend.rx[0].eof, 1);
  assert_int_equal(f->backend.rx[0].bytes, 5000);
  assert_int_equal(f->backend.rx[0].mismatches, 0);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* The backend answers and shuts down first; then the client uploads 4 MiB
 * faster than the backend reads, and shuts down. Everything must reach the
 * backend (the daemon has unread client bytes when the client's FIN arrives on
 * a socket whose write side it already shut down). */
static void test_tcp_upload_after_backend_eof(void **state) {
  gwd_fixture *f = *state;
  f->backend.mode = GWD_BACKEND_STREAM;
  f->backend.send_len = 100;
  f->backend.send_seed = 31;
  f->backend.shut_after_send = 1;
  f->backend.recv_seed = 32;
  f->backend.recv_chunk = 16384;
  f->backend.recv_delay_us = 500;
  int port = start(f, 0);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_rx rx;
  gwd_recv_stream(c, 31, GWD_TIMEOUT_MS, &rx);
  assert_int_equal(rx.eof, 1);
  assert_int_equal(rx.bytes, 100);
  assert_int_equal(gwd_send_stream(c, 4u << 20, 32, 0, 0, 1, 10000), 0);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, 10000));
  gwd_rx *b = &f->backend.rx[0];
  if (b->bytes != (4u << 20)) {
    char *err = gwd_read_err(&f->proc);
    print_error("backend got %llu of %u bytes; gatewayd stderr:\n%s", (unsigned long long)b->bytes, 4u << 20, err);
    free(err);
  }
  assert_int_equal(b->eof, 1);
  assert_int_equal(b->bytes, 4u << 20);
  assert_int_equal(b->mismatches, 0);
  /* And the client then sees the end, not a reset. */
  assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* 8 MiB each way at once, checked byte for byte and by checksum. */
static void big(gwd_fixture *f, int use_unix) {
  f->backend.mode = GWD_BACKEND_STREAM;
  f->backend.send_len = BIG;
  f->backend.send_seed = 21;
  f->backend.shut_after_send = 1;
  f->backend.recv_seed = 22;
  int port = start(f, use_unix);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sender s = {0};
  s.timeout_ms = 15000;
  gwd_sender_start(&s, c, BIG, 22, 1);
  gwd_rx rx;
  gwd_recv_stream(c, 21, 15000, &rx);
  assert_int_equal(gwd_sender_join(&s), 0);
  assert_int_equal(rx.eof, 1);
  assert_int_equal(rx.bytes, BIG);
  assert_int_equal(rx.mismatches, 0);
  assert_int_equal(rx.fnv, gwd_fnv_pattern(BIG, 21));
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  gwd_rx *b = &f->backend.rx[0];
  if (b->bytes != BIG || b->eof != 1 || b->mismatches) {
    char *err = gwd_read_err(&f->proc);
    print_error(
        "backend got %llu bytes (eof %d, errno %d, mismatches %llu at %lld); client got %llu\n"
        "gatewayd stderr:\n%s",
        (unsigned long long)b->bytes, b->eof, b->err, (unsigned long long)b->mismatches, (long long)b->first_mismatch,
        (unsigned long long)rx.bytes, err);
    free(err);
  }
  assert_int_equal(b->eof, 1);
  assert_int_equal(b->bytes, BIG);
  assert_int_equal(b->mismatches, 0);
  assert_int_equal(b->fnv, gwd_fnv_pattern(BIG, 22));
  assert_int_equal(f->backend.send_rc[0], 0);
  close(c);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_tcp_8mib_each_way(void **state) { big(*state, 0); }

static void test_unix_8mib_each_way(void **state) { big(*state, 1); }

/* Nothing listens at the backend: the client is closed and the log says why,
 * naming the backend. The daemon keeps serving. */
static void test_tcp_backend_refused(void **state) {
  gwd_fixture *f = *state;
  int dead = gwd_port();
  char target[64];
  snprintf(target, sizeof target, "tcp://127.0.0.1:%d", dead);
  int port = start_route(f, target);
  for (int i = 1; i <= 2; ++i) expect_client_closed(f, port, target, "Connection refused");
  assert_true(gwd_alive(&f->proc));
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_unix_backend_missing(void **state) {
  gwd_fixture *f = *state;
  char path[300], target[310];
  gwd_dir_file(&f->dir, "nobody.sock", path, sizeof path);
  snprintf(target, sizeof target, "unix:%s", path);
  int port = start_route(f, target);
  expect_client_closed(f, port, target, "No such file or directory");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_tcp_roundtrips),           GWD_TEST(test_unix_roundtrips),
      GWD_TEST(test_tcp_half_close),           GWD_TEST(test_unix_half_close),
      GWD_TEST(test_tcp_backend_closes_first), GWD_TEST(test_tcp_upload_after_backend_eof),
      GWD_TEST(test_tcp_8mib_each_way),        GWD_TEST(test_unix_8mib_each_way),
      GWD_TEST(test_tcp_backend_refused),      GWD_TEST(test_unix_backend_missing),
  };
  return cmocka_run_group_tests_name("daemon_forward", tests, NULL, NULL);
}
