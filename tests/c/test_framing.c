/* SPDX-License-Identifier: MIT */
/* Framing: line, u16be, u32be and raw; split frames (one byte per write),
 * coalesced frames (several per write), empty and binary frames, the
 * max_frame limit on input and on output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

typedef struct fx {
  gw_server_t *srv;
  gw_listener_t *l;
  gwt_rec rec;
  int port;
} fx;

static fx *fx_new(gw_framing framing, size_t max_frame) {
  fx *f = calloc(1, sizeof *f);
  gwt_rec_init(&f->rec);
  f->srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, framing);
  if (max_frame) o.max_frame = max_frame;
  f->l = gwt_listen(f->srv, "127.0.0.1:0", &o);
  assert_non_null(f->l);
  f->port = gw_listener_port(f->l);
  return f;
}

static void fx_free(fx *f) {
  gw_server_destroy(f->srv);
  gwt_rec_free(&f->rec);
  free(f);
}

static const gw_framing framed[] = {GW_FRAMING_LINE, GW_FRAMING_U16BE, GW_FRAMING_U32BE};
static const char *fname(gw_framing m) {
  switch (m) {
    case GW_FRAMING_LINE: return "line";
    case GW_FRAMING_U16BE: return "u16be";
    case GW_FRAMING_U32BE: return "u32be";
    default: return "raw";
  }
}

/* The messages the tests send: includes an empty one; binary ones (with '\0'
 * and '\n') only for the length-prefixed modes. */
static size_t messages(gw_framing m, const char **msg, size_t *len) {
  static const char bin[] = {'a', '\0', '\n', 'b', '\r', (char)0xff};
  size_t n = 0;
  msg[n] = "first";
  len[n++] = 5;
  msg[n] = "";
  len[n++] = 0;
  msg[n] = "second message, a bit longer";
  len[n++] = 28;
  if (m != GW_FRAMING_LINE) {
    msg[n] = bin;
    len[n++] = sizeof bin;
  }
  msg[n] = "x";
  len[n++] = 1;
  return n;
}

static void check_recorded(fx *f, const char **msg, const size_t *len, size_t n) {
  assert_int_equal(gwt_rec_get(&f->rec, &f->rec.messages), (int)n);
  for (size_t i = 0; i < n; i++) {
    if (f->rec.msg_len[i] != len[i]) fail_msg("message %zu: length %zu, want %zu", i, f->rec.msg_len[i], len[i]);
    if (len[i]) assert_memory_equal(f->rec.msg_data[i], msg[i], len[i]);
  }
}

static void read_echoes(fx *f, int fd, gw_framing m, const char **msg, const size_t *len, size_t n) {
  char buf[256];
  for (size_t i = 0; i < n; i++) {
    long got = gwt_read_frame(f->srv, fd, m, buf, sizeof buf, GWT_TIMEOUT_MS);
    if (got != (long)len[i]) fail_msg("%s echo %zu: length %ld, want %zu", fname(m), i, got, len[i]);
    if (len[i]) assert_memory_equal(buf, msg[i], len[i]);
  }
  assert_true(gwt_quiet(f->srv, fd, 50));
}

/* The messages for m (see messages()), encoded back to back into all (cap
 * bytes); returns the encoded length, the count goes to *n. */
static size_t encode_messages(gw_framing m, const char **msg, size_t *len, size_t *n, unsigned char *all, size_t cap) {
  *n = messages(m, msg, len);
  size_t total = 0;
  for (size_t i = 0; i < *n; i++) total += gwt_encode(m, msg[i], len[i], all + total, cap - total);
  return total;
}

/* Every message comes back on fd and was recorded by the server, in order;
 * then closes fd and frees f. */
static void check_echoed_and_free(fx *f, int fd, gw_framing m, const char **msg, const size_t *len, size_t n) {
  read_echoes(f, fd, m, msg, len, n);
  check_recorded(f, msg, len, n);
  close(fd);
  fx_free(f);
}

static void test_coalesced_frames(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof framed / sizeof framed[0]; k++) {
    gw_framing m = framed[k];
    fx *f = fx_new(m, 0);
    const char *msg[8];
    size_t len[8], n;
    unsigned char all[1024];
    size_t total = encode_messages(m, msg, len, &n, all, sizeof all);
    int fd = gwt_connect("127.0.0.1", f->port);
    assert_int_equal(gwt_write_all(f->srv, fd, all, total), 0); /* one write */
    check_echoed_and_free(f, fd, m, msg, len, n);
  }
}

static void test_split_frames(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof framed / sizeof framed[0]; k++) {
    gw_framing m = framed[k];
    fx *f = fx_new(m, 0);
    const char *msg[8];
    size_t len[8], n;
    unsigned char all[1024];
    size_t total = encode_messages(m, msg, len, &n, all, sizeof all);
    int fd = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
    /* one byte at a time, each one read by the server before the next */
    for (size_t i = 0; i < total; i++) {
      assert_int_equal(gwt_write_all(f->srv, fd, all + i, 1), 0);
      assert_true(gwt_pump_until_stat(f->srv, GWT_STAT(bytes_in), i + 1, GWT_TIMEOUT_MS));
    }
    check_echoed_and_free(f, fd, m, msg, len, n);
  }
}

static void test_raw_passthrough(void **state) {
  (void)state;
  fx *f = fx_new(GW_FRAMING_RAW, 0);
  int fd = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
  unsigned char data[3000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 31 + 7);
  /* split: single bytes, each read by the server on its own */
  for (size_t i = 0; i < 10; i++) {
    assert_int_equal(gwt_write_all(f->srv, fd, data + i, 1), 0);
    assert_true(gwt_pump_until_stat(f->srv, GWT_STAT(bytes_in), i + 1, GWT_TIMEOUT_MS));
  }
  assert_int_equal(gwt_rec_get(&f->rec, &f->rec.messages), 10);
  /* coalesced: the rest in one write */
  assert_int_equal(gwt_write_all(f->srv, fd, data + 10, sizeof data - 10), 0);
  unsigned char back[sizeof data];
  assert_int_equal(gwt_read_exact(f->srv, fd, back, sizeof back, GWT_TIMEOUT_MS), sizeof back);
  assert_memory_equal(back, data, sizeof data);
  assert_int_equal(f->rec.msg_bytes, sizeof data);
  /* raw adds nothing to what gw_conn_send_message sends */
  assert_true(gwt_quiet(f->srv, fd, 50));
  close(fd);
  fx_free(f);
}

/* A frame of exactly max_frame is accepted; one byte more closes that client
 * with GW_CLOSE_OVERSIZE while another client of the listener goes on. */
static void test_oversize(void **state) {
  (void)state;
  enum { MAXF = 100 };
  for (size_t k = 0; k < sizeof framed / sizeof framed[0]; k++) {
    gw_framing m = framed[k];
    fx *f = fx_new(m, MAXF);
    int good = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
    int bad = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
    assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.opens, 2, GWT_TIMEOUT_MS));
    uint64_t bad_id = gw_conn_id(gwt_rec_conn(&f->rec, 1));
    char big[MAXF + 1], buf[MAXF + 8];
    memset(big, 'z', sizeof big);

    /* exactly max_frame: fine */
    assert_int_equal(gwt_send_frame(f->srv, bad, m, big, MAXF), 0);
    assert_int_equal(gwt_read_frame(f->srv, bad, m, buf, sizeof buf, GWT_TIMEOUT_MS), MAXF);
    /* one more: closed */
    assert_int_equal(gwt_send_frame(f->srv, bad, m, big, MAXF + 1), 0);
    /* the client sees the end; once it closes too, on_close reports why */
    assert_true(gwt_wait_eof(f->srv, bad, GWT_TIMEOUT_MS, NULL) >= 0);
    close(bad);
    assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 1, GWT_TIMEOUT_MS));
    if (gwt_rec_reason_of(&f->rec, bad_id) != GW_CLOSE_OVERSIZE)
      fail_msg("%s: close reason %d, want GW_CLOSE_OVERSIZE", fname(m), gwt_rec_reason_of(&f->rec, bad_id));
    /* nothing of the oversized frame was delivered */
    assert_int_equal(gwt_rec_get(&f->rec, &f->rec.messages), 1);

    /* the other client is unaffected */
    assert_int_equal(gwt_send_frame(f->srv, good, m, "still fine", 10), 0);
    assert_int_equal(gwt_read_frame(f->srv, good, m, buf, sizeof buf, GWT_TIMEOUT_MS), 10);
    assert_memory_equal(buf, "still fine", 10);
    assert_int_equal(gwt_rec_get(&f->rec, &f->rec.closes), 1);
    close(good);
    fx_free(f);
  }
}

/* A length prefix announcing more than max_frame is refused on the prefix
 * alone: the client does not have to send the payload. */
static void test_oversize_prefix_alone(void **state) {
  (void)state;
  static const unsigned char u16[] = {0xff, 0xff};
  static const unsigned char u32[] = {0xff, 0xff, 0xff, 0xff};
  for (int k = 0; k < 2; k++) {
    fx *f = fx_new(k ? GW_FRAMING_U32BE : GW_FRAMING_U16BE, 1000);
    int fd = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
    assert_int_equal(gwt_write_all(f->srv, fd, k ? u32 : u16, k ? 4 : 2), 0);
    assert_int_equal(gwt_wait_eof(f->srv, fd, GWT_TIMEOUT_MS, NULL), 0);
    close(fd);
    assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 1, GWT_TIMEOUT_MS));
    assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_OVERSIZE), 1);
    fx_free(f);
  }
}

/* A line longer than max_frame is refused before its '\n' arrives. */
static void test_oversize_line_without_newline(void **state) {
  (void)state;
  fx *f = fx_new(GW_FRAMING_LINE, 64);
  int fd = gwt_connect_pump(f->srv, "127.0.0.1", f->port);
  char junk[4096];
  memset(junk, 'q', sizeof junk);
  assert_int_equal(gwt_write_all(f->srv, fd, junk, sizeof junk), 0);
  assert_true(gwt_wait_eof(f->srv, fd, GWT_TIMEOUT_MS, NULL) >= 0);
  close(fd);
  assert_true(gwt_rec_wait(f->srv, &f->rec, &f->rec.closes, 1, GWT_TIMEOUT_MS));
  assert_int_equal(gwt_rec_reason(&f->rec, GW_CLOSE_OVERSIZE), 1);
  assert_int_equal(gwt_rec_get(&f->rec, &f->rec.messages), 0);
  fx_free(f);
}

/* gw_conn_send_message on output: GW_ETOOBIG beyond max_frame or beyond what
 * the prefix can express; nothing is queued. */
static int toobig_rc[3];
static void toobig_open(gw_conn_t *c, void *ud) {
  static char big[200];
  (void)ud;
  toobig_rc[0] = gw_conn_send_message(c, big, 101); /* > max_frame (100) */
  toobig_rc[1] = gw_conn_send_message(c, "ok", 2);
  toobig_rc[2] = gw_conn_send_message(c, "", 0); /* an empty message is fine */
}

static void test_send_message_too_big(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof framed / sizeof framed[0]; k++) {
    gw_framing m = framed[k];
    gw_server_t *srv = gwt_server();
    gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
    o.framing = m;
    o.max_frame = 100;
    o.on_open = toobig_open;
    gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
    memset(toobig_rc, 0x55, sizeof toobig_rc);
    int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
    assert_int_equal(toobig_rc[0], GW_ETOOBIG);
    assert_int_equal(toobig_rc[1], 0);
    assert_int_equal(toobig_rc[2], 0);
    char buf[16];
    assert_int_equal(gwt_read_frame(srv, fd, m, buf, sizeof buf, GWT_TIMEOUT_MS), 2);
    assert_memory_equal(buf, "ok", 2);
    assert_int_equal(gwt_read_frame(srv, fd, m, buf, sizeof buf, GWT_TIMEOUT_MS), 0);
    assert_true(gwt_quiet(srv, fd, 50));
    close(fd);
    gw_server_destroy(srv);
  }
}

static int u16_rc[2];
static void u16_open(gw_conn_t *c, void *ud) {
  (void)ud;
  static char big[65536];
  u16_rc[0] = gw_conn_send_message(c, big, 65536); /* does not fit 16 bits */
  u16_rc[1] = gw_conn_send_message(c, big, 65535);
}

static void test_u16_prefix_limit(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.framing = GW_FRAMING_U16BE;
  o.max_frame = 1 << 20;
  o.on_open = u16_open;
  gw_listener_t *l = gwt_listen(srv, "127.0.0.1:0", &o);
  assert_non_null(l);
  int fd = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l));
  assert_int_equal(u16_rc[0], GW_ETOOBIG);
  assert_int_equal(u16_rc[1], 0);
  static char buf[65535];
  assert_int_equal(gwt_read_frame(srv, fd, GW_FRAMING_U16BE, buf, sizeof buf, GWT_TIMEOUT_MS), 65535);
  close(fd);
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_coalesced_frames),      cmocka_unit_test(test_split_frames),
      cmocka_unit_test(test_raw_passthrough),       cmocka_unit_test(test_oversize),
      cmocka_unit_test(test_oversize_prefix_alone), cmocka_unit_test(test_oversize_line_without_newline),
      cmocka_unit_test(test_send_message_too_big),  cmocka_unit_test(test_u16_prefix_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
