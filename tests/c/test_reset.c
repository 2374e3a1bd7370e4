/* SPDX-License-Identifier: MIT */
/* Peer reset (SO_LINGER 0) -> GW_CLOSE_RESET; half-close (SHUT_WR after
 * sending) -> the echo is still delivered, then GW_CLOSE_PEER; a write to a
 * reset peer never raises SIGPIPE. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static gw_server_t *echo_server(gwt_rec *rec, gw_framing framing, int *port) {
  gwt_rec_init(rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, rec, framing);
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  *port = gw_listener_port(l);
  return srv;
}

static void test_peer_reset(void **state) {
  (void)state;
  gwt_rec rec;
  int port;
  gw_server_t *srv = echo_server(&rec, GW_FRAMING_LINE, &port);
  int fd = gwt_connect_pump(srv, "127.0.0.1", port);
  char buf[16];
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, "hi", 2), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), 2);
  gwt_close_reset(fd);
  assert_true(gwt_rec_wait(srv, &rec, &rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_RESET), 1);
  assert_int_equal(gwt_stat(srv, GWT_STAT(clients)), 0);
  gwt_pump(srv, 20);
  assert_int_equal(gwt_rec_get(&rec, &rec.closes), 1); /* exactly once */
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_plain_close_is_peer(void **state) {
  (void)state;
  gwt_rec rec;
  int port;
  gw_server_t *srv = echo_server(&rec, GW_FRAMING_LINE, &port);
  int fd = gwt_connect_pump(srv, "127.0.0.1", port);
  close(fd);
  assert_true(gwt_rec_wait(srv, &rec, &rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_PEER), 1);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_half_close_echo_delivered(void **state) {
  (void)state;
  gwt_rec rec;
  int port;
  gw_server_t *srv = echo_server(&rec, GW_FRAMING_LINE, &port);
  int fd = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_int_equal(gwt_write_all(srv, fd, "one\ntwo\nthree\n", 14), 0);
  assert_int_equal(shutdown(fd, SHUT_WR), 0);
  char buf[64];
  assert_int_equal(gwt_read_exact(srv, fd, buf, 14, GWT_TIMEOUT_MS), 14);
  assert_memory_equal(buf, "one\ntwo\nthree\n", 14);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  assert_true(gwt_rec_wait(srv, &rec, &rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_PEER), 1);
  assert_int_equal(gwt_rec_get(&rec, &rec.messages), 3);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

/* Half-close with a large echo still queued: all of it arrives first. */
static void test_half_close_large_output(void **state) {
  (void)state;
  gwt_rec rec;
  int port;
  gw_server_t *srv = echo_server(&rec, GW_FRAMING_RAW, &port);
  int fd = gwt_connect_pump(srv, "127.0.0.1", port);
  gwt_set_nonblock(fd);
  size_t n = 512 * 1024;
  unsigned char *out = malloc(n), *in = malloc(n);
  for (size_t i = 0; i < n; i++) out[i] = (unsigned char)(i ^ (i >> 9));
  /* write and read concurrently (the echo would fill both directions) */
  size_t wr = 0, rd = 0;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (rd < n && gwt_now_ms() < end) {
    if (wr < n) {
      ssize_t k = send(fd, out + wr, n - wr > 65536 ? 65536 : n - wr, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (k > 0) wr += (size_t)k;
      if (wr == n) assert_int_equal(shutdown(fd, SHUT_WR), 0);
    }
    ssize_t k = recv(fd, in + rd, n - rd, MSG_DONTWAIT);
    if (k > 0) rd += (size_t)k;
    gwt_dispatch(srv, 1);
  }
  assert_int_equal(wr, n);
  assert_int_equal(rd, n);
  assert_memory_equal(in, out, n);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  assert_true(gwt_rec_wait(srv, &rec, &rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_PEER), 1);
  free(out);
  free(in);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

/* The server has a lot queued for a client that resets: writing to it must
 * not kill the process with SIGPIPE (default disposition kept on purpose). */
static void flood_open(gw_conn_t *c, void *ud) {
  static char chunk[65536];
  gwt_rec_on_open(c, ud);
  for (int i = 0; i < 8; i++) gw_conn_send(c, chunk, sizeof chunk);
}

static void test_no_sigpipe(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_DFL);
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gwt_rec_attach(&rec, &o);
  o.on_open = flood_open;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  for (int i = 0; i < 3; i++) {
    int fd = gwt_connect_small("127.0.0.1", gw_listener_port(l), 4096);
    assert_true(gwt_rec_wait(srv, &rec, &rec.opens, i + 1, GWT_TIMEOUT_MS));
    char buf[100];
    assert_int_equal(gwt_read_exact(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), sizeof buf);
    gwt_close_reset(fd);
    assert_true(gwt_rec_wait(srv, &rec, &rec.closes, i + 1, GWT_TIMEOUT_MS));
  }
  assert_int_equal(gwt_rec_reason(&rec, GW_CLOSE_RESET), 3);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_peer_reset),
      cmocka_unit_test(test_plain_close_is_peer),
      cmocka_unit_test(test_half_close_echo_delivered),
      cmocka_unit_test(test_half_close_large_output),
      cmocka_unit_test(test_no_sigpipe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
