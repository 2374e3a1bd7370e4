/* SPDX-License-Identifier: MIT */
/* Backpressure: a client that does not read. The server stops reading it past
 * high_water (memory stays bounded), gw_conn_send returns GW_EAGAIN beyond
 * max_output with nothing queued, on_drain fires once the client reads, and
 * every byte arrives intact. Other clients are unaffected meanwhile. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static unsigned char pattern(size_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

/* ---- echo with a client that writes but does not read ---- */

static void test_stalled_reader_echo(void **state) {
  (void)state;
  enum { HIGH = 64 * 1024, LOW = 16 * 1024, MAXOUT = 1024 * 1024 };
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_RAW);
  o.high_water = HIGH;
  o.low_water = LOW;
  o.max_output = MAXOUT;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int port = gw_listener_port(l);

  int fd = gwt_connect_small("127.0.0.1", port, 16 * 1024);
  gwt_set_nonblock(fd);
  int other = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_true(gwt_rec_wait(srv, &rec, &rec.opens, 2, GWT_TIMEOUT_MS));

  /* write without reading until nothing more goes in for a while */
  size_t cap = 64 * 1024 * 1024, written = 0;
  unsigned char *out = malloc(cap);
  for (size_t i = 0; i < cap; i++) out[i] = pattern(i);
  int64_t last_progress = gwt_now_ms();
  while (gwt_now_ms() - last_progress < 300 && written < cap) {
    ssize_t n = send(fd, out + written, cap - written > 65536 ? 65536 : cap - written, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      written += (size_t)n;
      last_progress = gwt_now_ms();
    } else {
      assert_true(n < 0 && errno == EAGAIN);
    }
    gwt_dispatch(srv, 5);
  }
  /* bounded: the server stopped reading long before 64 MiB */
  assert_true(written < cap);
  uint64_t in = gwt_stat(srv, GWT_STAT(bytes_in));
  uint64_t sent = gwt_stat(srv, GWT_STAT(bytes_out));
  /* what the server holds queued = read - written out; not above
   * high_water plus one read's worth */
  assert_true(in >= sent);
  assert_true(in - sent <= (uint64_t)MAXOUT);
  /* it really stopped reading: input does not grow any more */
  gwt_pump(srv, 100);
  assert_int_equal(gwt_stat(srv, GWT_STAT(bytes_in)), in);
  assert_int_equal(gwt_rec_get(&rec, &rec.send_failures), 0);
  assert_int_equal(gwt_rec_get(&rec, &rec.drains), 0);

  /* another client on the same listener is served meanwhile */
  char buf[8];
  assert_int_equal(gwt_write_all(srv, other, "ping", 4), 0);
  assert_int_equal(gwt_read_exact(srv, other, buf, 4, GWT_TIMEOUT_MS), 4);
  assert_memory_equal(buf, "ping", 4);

  /* now read everything back, pushing the rest of our output as it fits */
  unsigned char *back = malloc(written + 1);
  size_t got = 0;
  int64_t end = gwt_now_ms() + 4 * GWT_TIMEOUT_MS;
  while (got < written && gwt_now_ms() < end) {
    ssize_t n = recv(fd, back + got, written - got, MSG_DONTWAIT);
    if (n > 0) got += (size_t)n;
    gwt_dispatch(srv, 1);
  }
  assert_int_equal(got, written);
  assert_memory_equal(back, out, written);
  assert_true(gwt_rec_get(&rec, &rec.drains) >= 1);
  assert_int_equal(gwt_rec_get(&rec, &rec.send_failures), 0);
  assert_int_equal(gwt_rec_get(&rec, &rec.closes), 0);
  free(out);
  free(back);
  close(fd);
  close(other);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

/* ---- a producer: gw_conn_send until GW_EAGAIN, resume in on_drain ---- */

typedef struct producer {
  size_t target; /* total bytes to send */
  size_t queued; /* accepted by gw_conn_send */
  int eagain;    /* GW_EAGAIN seen */
  int other_error;
  size_t queued_at_first_eagain;
  uint64_t out_at_first_eagain; /* bytes_out then */
  gw_server_t *srv;
  int drains;
  int closes;
  int reason;
} producer;

enum { CHUNK = 4096, PMAX = 256 * 1024 };

static void produce(gw_conn_t *c, producer *p) {
  unsigned char chunk[CHUNK];
  while (p->queued < p->target) {
    size_t n = p->target - p->queued < CHUNK ? p->target - p->queued : CHUNK;
    for (size_t i = 0; i < n; i++) chunk[i] = pattern(p->queued + i);
    int rc = gw_conn_send(c, chunk, n);
    if (rc == GW_EAGAIN) {
      if (!p->eagain++) {
        p->queued_at_first_eagain = p->queued;
        p->out_at_first_eagain = gwt_stat(p->srv, GWT_STAT(bytes_out));
      }
      return;
    }
    if (rc != 0) {
      p->other_error = rc;
      return;
    }
    p->queued += n;
  }
}

static void prod_open(gw_conn_t *c, void *ud) { produce(c, ud); }
static void prod_drain(gw_conn_t *c, void *ud) {
  producer *p = ud;
  p->drains++;
  produce(c, p);
}
static void prod_close(gw_conn_t *c, gw_close_reason why, void *ud) {
  producer *p = ud;
  (void)c;
  p->closes++;
  p->reason = (int)why;
}

static void test_send_eagain_and_drain(void **state) {
  (void)state;
  producer p;
  memset(&p, 0, sizeof p);
  p.target = 4 * 1024 * 1024;
  gw_server_t *srv = gwt_server();
  p.srv = srv;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.max_output = PMAX;
  o.high_water = PMAX / 2;
  o.low_water = PMAX / 8;
  o.on_open = prod_open;
  o.on_drain = prod_drain;
  o.on_close = prod_close;
  o.user_data = &p;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  int fd = gwt_connect_small("127.0.0.1", gw_listener_port(l), 16 * 1024);
  assert_true(gwt_pump_until_stat(srv, GWT_STAT(accepted), 1, GWT_TIMEOUT_MS));
  gwt_pump(srv, 50);
  /* the client has not read: the queue filled up and gw_conn_send said so */
  assert_true(p.eagain >= 1);
  assert_int_equal(p.other_error, 0);
  assert_true(p.queued < p.target);
  /* memory is bounded: what is queued (minus what the kernel took) is at
   * most max_output, and GW_EAGAIN came no earlier than one chunk short */
  uint64_t out = gwt_stat(srv, GWT_STAT(bytes_out));
  assert_true(p.queued - out <= PMAX);
  assert_true(p.queued_at_first_eagain - p.out_at_first_eagain <= PMAX);
  assert_true(p.queued_at_first_eagain - p.out_at_first_eagain + CHUNK > PMAX);

  /* the client reads everything: drains fire, every byte in order */
  unsigned char *buf = malloc(p.target);
  size_t got = gwt_read_exact(srv, fd, buf, p.target, 4 * GWT_TIMEOUT_MS);
  if (got != p.target)
    fail_msg("read %zu of %zu; queued %zu, drains %d, eagain %d, error %d, closes %d reason %d, bytes_out %llu", got,
             p.target, p.queued, p.drains, p.eagain, p.other_error, p.closes, p.reason,
             (unsigned long long)gwt_stat(srv, GWT_STAT(bytes_out)));
  for (size_t i = 0; i < p.target; i++)
    if (buf[i] != pattern(i)) fail_msg("byte %zu differs", i);
  assert_true(p.drains >= 1);
  assert_int_equal(p.queued, p.target);
  assert_int_equal(gwt_stat(srv, GWT_STAT(bytes_out)), p.target);
  assert_true(gwt_quiet(srv, fd, 20));
  free(buf);
  close(fd);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 0, GWT_TIMEOUT_MS));
  assert_int_equal(p.closes, 1);
  assert_int_equal(p.reason, GW_CLOSE_PEER);
  gw_server_destroy(srv);
  assert_int_equal(p.closes, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stalled_reader_echo),
      cmocka_unit_test(test_send_eagain_and_drain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
