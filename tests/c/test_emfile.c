/* SPDX-License-Identifier: MIT */
/* EMFILE under a lowered RLIMIT_NOFILE: pending clients are accepted and
 * closed at once (counted as refused), the loop does not spin, and the server
 * serves again once descriptors are free. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

enum { NOFILE = 64, PENDING = 3 };

static void test_emfile_sheds_and_recovers(void **state) {
  (void)state;
  struct rlimit saved, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  low = saved;
  low.rlim_cur = NOFILE;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int port = gw_listener_port(l);

  /* serve one client first: a server that has been running (this also
   * warms UBSan's vptr cache, whose slow path needs a free fd for a pipe) */
  int warm = gwt_connect_pump(srv, "127.0.0.1", port);
  char wbuf[8];
  assert_int_equal(gwt_send_frame(srv, warm, GW_FRAMING_LINE, "warm", 4), 0);
  assert_int_equal(gwt_read_line(srv, warm, wbuf, sizeof wbuf, GWT_TIMEOUT_MS), 4);
  close(warm);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));

  /* clients complete their handshake in the backlog */
  int clients[PENDING];
  for (int i = 0; i < PENDING; i++) {
    clients[i] = gwt_connect("127.0.0.1", port);
    assert_true(clients[i] >= 0);
  }
  /* use up every remaining descriptor */
  int fill[NOFILE];
  int nfill = 0;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      assert_int_equal(errno, EMFILE);
      break;
    }
    assert_true(nfill < NOFILE);
    fill[nfill++] = fd;
  }

  /* the loop must not spin on the readable listener: count how often the
   * server fd is ready in 300 ms */
  int wakeups = 0;
  int64_t end = gwt_now_ms() + 300;
  while (gwt_now_ms() < end) {
    struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
    if (poll(&p, 1, 10) > 0) {
      wakeups++;
      assert_true(gw_server_dispatch(srv) >= 0);
    }
  }
  assert_true(wakeups < 50);
  /* shed: each pending client was accepted and closed at once */
  for (int i = 0; i < PENDING; i++) assert_int_equal(gwt_wait_eof(srv, clients[i], GWT_TIMEOUT_MS, NULL), 0);
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), PENDING);
  assert_int_equal(gwt_stat(srv, GWT_STAT(accepted)), 1);
  assert_int_equal(gwt_rec_get(&rec, &rec.opens), 1);

  /* free the descriptors: served again */
  for (int i = 0; i < nfill; i++) close(fill[i]);
  for (int i = 0; i < PENDING; i++) close(clients[i]);
  int fd = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_true(fd >= 0);
  char buf[32];
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "back", 4), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 4);
  assert_string_equal(buf, "back");
  assert_int_equal(gwt_stat(srv, GWT_STAT(accepted)), 2);

  /* and it can shed again a second time (the spare is restored) */
  int more[PENDING];
  for (int i = 0; i < PENDING; i++) more[i] = gwt_connect("127.0.0.1", port);
  nfill = 0;
  for (;;) {
    int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f < 0) break;
    fill[nfill++] = f;
  }
  for (int i = 0; i < PENDING; i++) assert_int_equal(gwt_wait_eof(srv, more[i], GWT_TIMEOUT_MS, NULL), 0);
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 2 * PENDING);
  /* the connected client was never disturbed */
  for (int i = 0; i < nfill; i++) close(fill[i]);
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "still", 5), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 5);
  for (int i = 0; i < PENDING; i++) close(more[i]);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emfile_sheds_and_recovers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
