/* SPDX-License-Identifier: MIT */
/* Faults around a forwarding route of the real gatewayd: a tcp backend that
 * is down when a client comes, that dies in the middle of a stream, and that
 * comes back (served again without a restart); and SIGTERM while bulk data
 * flows in both directions, every byte of which must arrive before the
 * daemon exits. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BULK (4u << 20)

static int start_route(gwd_fixture *f, int backend_port, const char *service) {
  int port = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n%s\n"
           "[[route]]\nname = \"fwd\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"tcp://127.0.0.1:%d\"\n",
           service, port, backend_port);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  return port;
}

/* Accepts the daemon's connection to the test's backend listener (bounded). */
static int accept_backend(int lfd) {
  struct pollfd p = {lfd, POLLIN, 0};
  if (poll(&p, 1, GWD_TIMEOUT_MS) != 1) return -1;
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd >= 0) gwd_sock_timeouts(fd, GWD_TIMEOUT_MS);
  return fd;
}

/* A client of a route whose backend is down is closed promptly, and the log
 * says which client and why. */
static void expect_refused_client(gwd_fixture *f, int port, int backend_port, int nth) {
  int64_t start = gwt_now_ms();
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  int peer = gwt_local_port(c);
  size_t got = 0;
  int rc = gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, &got);
  int64_t took = gwt_now_ms() - start;
  close(c);
  assert_true(rc == 0 || rc == 1);
  assert_int_equal(got, 0);
  char line[256];
  snprintf(line, sizeof line,
           "<4>route fwd: 127.0.0.1:%d: backend tcp://127.0.0.1:%d: Connection refused; closing the client\n", peer,
           backend_port);
  assert_true(gwd_log_wait(&f->proc, line, 1, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_log_count(&f->proc, "Connection refused; closing the client"), nth);
  printf("faults: backend down: client closed after %lld ms, logged\n", (long long)took);
}

/* Down at connect, up, dead in mid-stream (reset), down, up again: the same
 * daemon process serves whenever the backend is there, and closes its
 * clients with a log line whenever it is not. */
static void test_backend_down_dies_returns(void **state) {
  gwd_fixture *f = *state;
  int backend_port = gwd_port();
  int port = start_route(f, backend_port, "");
  pid_t pid = f->proc.pid;
  int base_fds = gwd_proc_fd_count(pid);

  expect_refused_client(f, port, backend_port, 1);

  /* The backend comes up; a client streams through it. */
  int lfd = gwd_listen_tcp(backend_port);
  assert_true(lfd >= 0);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  int peer = gwt_local_port(c);
  assert_int_equal(gwt_write_all(NULL, c, "hello backend", 13), 0);
  int b = accept_backend(lfd);
  assert_true(b >= 0);
  char buf[64];
  assert_int_equal(gwt_read_exact(NULL, b, buf, 13, GWD_TIMEOUT_MS), 13);
  assert_memory_equal(buf, "hello backend", 13);
  /* Bulk from the backend, some of it read by the client: mid-stream. */
  static unsigned char bulk[1 << 20];
  gwd_fill(bulk, sizeof bulk, 0, 5);
  assert_int_equal(gwt_write_all(NULL, b, bulk, sizeof bulk), 0);
  unsigned char *got = malloc(sizeof bulk);
  assert_int_equal(gwt_read_exact(NULL, c, got, 300000, GWD_TIMEOUT_MS), 300000);
  assert_memory_equal(got, bulk, 300000);
  free(got);
  /* The backend dies: its socket is reset, its listener gone. */
  gwt_close_reset(b);
  close(lfd);
  size_t rest = 0;
  int rc = gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, &rest);
  assert_true(rc == 0 || rc == 1);
  close(c);
  char line[256];
  snprintf(line, sizeof line, "<4>route fwd: 127.0.0.1:%d: backend tcp://127.0.0.1:%d: ", peer, backend_port);
  assert_true(gwd_log_wait(&f->proc, line, 1, GWD_TIMEOUT_MS));
  assert_true(gwd_log_wait(&f->proc, "; closing the client\n", 2, GWD_TIMEOUT_MS));
  printf("faults: backend reset mid-stream: client got 300000 + %zu of %zu bytes, then %s; logged\n", rest, sizeof bulk,
         rc == 0 ? "EOF" : "a reset");

  /* Down again: refused again. */
  expect_refused_client(f, port, backend_port, 2);

  /* Back: new clients are served by the same process. */
  lfd = gwd_listen_tcp(backend_port);
  assert_true(lfd >= 0);
  for (int i = 0; i < 3; ++i) {
    c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(c >= 0);
    assert_int_equal(gwt_write_all(NULL, c, "ping", 4), 0);
    b = accept_backend(lfd);
    assert_true(b >= 0);
    assert_int_equal(gwt_read_exact(NULL, b, buf, 4, GWD_TIMEOUT_MS), 4);
    assert_int_equal(gwt_write_all(NULL, b, "pong", 4), 0);
    assert_int_equal(gwt_read_exact(NULL, c, buf, 4, GWD_TIMEOUT_MS), 4);
    assert_memory_equal(buf, "pong", 4);
    assert_int_equal(shutdown(c, SHUT_WR), 0);
    assert_int_equal(gwt_read_exact(NULL, b, buf, 1, GWD_TIMEOUT_MS), 0); /* our EOF passed */
    close(b);
    assert_int_equal(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL), 0);
    close(c);
  }
  close(lfd);
  assert_int_equal(f->proc.pid, pid);
  assert_true(gwd_alive(&f->proc));
  int fds = gwd_wait_fd_count(pid, base_fds, GWD_TIMEOUT_MS);
  printf("faults: backend back: 3 clients served without a restart (pid %d); daemon fds %d -> %d\n", (int)pid, base_fds,
         fds);
  assert_int_equal(fds, base_fds);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* SIGTERM while 4 MiB flow each way through a forwarding route, both ends
 * sending in paced chunks so that the signal lands in the middle: the drain
 * delivers every byte both ways (checked by pattern and checksum), both ends
 * see their EOF, and the daemon exits 0 well within stop_timeout. */
static void test_sigterm_bulk_both_ways(void **state) {
  gwd_fixture *f = *state;
  f->backend.mode = GWD_BACKEND_STREAM;
  f->backend.send_len = BULK;
  f->backend.send_seed = 61;
  f->backend.send_chunk = 65536;
  f->backend.send_delay_us = 8000; /* about 0.5 s for 4 MiB */
  f->backend.shut_after_send = 1;
  f->backend.recv_seed = 62;
  assert_int_equal(gwd_backend_tcp(&f->backend), 0);
  f->backend_running = 1;
  int port = start_route(f, f->backend.port, "stop_timeout = \"20s\"\n");
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  gwd_sender s;
  memset(&s, 0, sizeof s);
  s.chunk = 65536;
  s.delay_us = 8000;
  s.timeout_ms = gwd_scaled_ms(20000);
  gwd_sender_start(&s, c, BULK, 62, 1);

  uint64_t received = 0, mismatches = 0, fnv = 0xcbf29ce484222325ull;
  int signalled = 0, eof = 0;
  uint64_t at_signal = 0;
  int64_t signal_ms = 0, end = gwt_now_ms() + gwd_scaled_ms(30000);
  static unsigned char buf[65536];
  while (!eof && gwt_now_ms() < end) {
    if (!signalled && received >= 256 * 1024) {
      gwd_signal(&f->proc, SIGTERM);
      signalled = 1;
      at_signal = received;
      signal_ms = gwt_now_ms();
    }
    struct pollfd p = {c, POLLIN, 0};
    if (poll(&p, 1, 100) != 1) continue;
    ssize_t n = recv(c, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      eof = 1;
    } else if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        mismatches += buf[i] != gwd_pattern(received + (uint64_t)i, 61);
        fnv = (fnv ^ buf[i]) * 0x100000001b3ull;
      }
      received += (uint64_t)n;
    } else if (errno != EAGAIN && errno != EINTR) {
      break;
    }
  }
  int sent_rc = gwd_sender_join(&s);
  int code = gwd_wait_exit(&f->proc, gwd_scaled_ms(20000));
  int64_t drained = gwt_now_ms() - signal_ms;
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  gwd_rx *rx = &f->backend.rx[0];
  printf(
      "faults: SIGTERM with %llu of %u bytes down at the signal: client got %llu (mismatches %llu, eof %d), "
      "backend got %llu (mismatches %llu, eof %d); exit %d after %lld ms\n",
      (unsigned long long)at_signal, BULK, (unsigned long long)received, (unsigned long long)mismatches, eof,
      (unsigned long long)rx->bytes, (unsigned long long)rx->mismatches, rx->eof, code, (long long)drained);
  if (received != BULK || rx->bytes != BULK) {
    char *err = gwd_read_err(&f->proc);
    print_error("gatewayd stderr:\n%s\n", err);
    free(err);
  }
  assert_true(signalled);
  assert_true(at_signal < BULK); /* the signal came in the middle */
  assert_int_equal(sent_rc, 0);
  assert_int_equal(received, BULK);
  assert_int_equal(mismatches, 0);
  assert_int_equal(fnv, gwd_fnv_pattern(BULK, 61));
  assert_int_equal(eof, 1);
  assert_int_equal(rx->bytes, BULK);
  assert_int_equal(rx->mismatches, 0);
  assert_int_equal(rx->fnv, gwd_fnv_pattern(BULK, 62));
  assert_int_equal(rx->eof, 1);
  assert_int_equal(f->backend.send_rc[0], 0);
  assert_int_equal(code, 0);
  assert_int_equal(gwd_log_count(&f->proc, "<6>stopping: 1 clients to drain\n"), 1);
  assert_int_equal(gwd_log_count(&f->proc, "closed (peer closed)\n"), 1);
  assert_int_equal(gwd_log_count(&f->proc, "could not be delivered"), 0);
  assert_int_equal(gwd_log_count(&f->proc, "<6>stopped\n"), 1);
  close(c);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_backend_down_dies_returns),
      GWD_TEST(test_sigterm_bulk_both_ways),
  };
  return cmocka_run_group_tests_name("daemon_faults", tests, NULL, NULL);
}
