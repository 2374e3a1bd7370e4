/* SPDX-License-Identifier: MIT */
/* max_clients (server-wide and per listener), max_clients_per_ip and the
 * allow list: excess clients are accepted and closed at once (EOF), counted
 * in gw_stats.refused, never reach on_open; the others are unaffected. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void assert_echo(gw_server_t *srv, int fd, const char *text) {
  char buf[128];
  assert_true(fd >= 0);
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, text, strlen(text)), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), (int)strlen(text));
  assert_string_equal(buf, text);
}

static void assert_refused_client(gw_server_t *srv, int fd) {
  assert_true(fd >= 0);
  assert_int_equal(gwt_wait_eof(srv, fd, GWT_TIMEOUT_MS, NULL), 0);
  close(fd);
}

static gw_listener_t *line_listener(gw_server_t *srv, gwt_rec *rec, const char *addr, gw_listener_options *o) {
  o->framing = GW_FRAMING_LINE;
  gwt_rec_attach(rec, o);
  rec->echo = 1;
  return gwt_listen(srv, addr, o);
}

static uint64_t lstat(gw_listener_t *l, size_t off) {
  gw_stats st;
  assert_int_equal(gw_listener_stats(&st, l), 0);
  uint64_t v;
  memcpy(&v, (const char *)&st + off, sizeof v);
  return v;
}

static void test_server_max_clients(void **state) {
  (void)state;
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  so.max_clients = 2;
  gw_server_t *srv = gwt_server_opts(&so);
  gw_listener_options o1 = GW_LISTENER_OPTIONS_INIT, o2 = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l1 = line_listener(srv, &rec, "127.0.0.1:0", &o1);
  gw_listener_t *l2 = line_listener(srv, &rec, "127.0.0.1:0", &o2);
  int p1 = gw_listener_port(l1), p2 = gw_listener_port(l2);

  int a = gwt_connect_pump(srv, "127.0.0.1", p1);
  int b = gwt_connect_pump(srv, "127.0.0.1", p2);
  assert_echo(srv, a, "a");
  assert_echo(srv, b, "b");
  /* the limit is across listeners */
  assert_refused_client(srv, gwt_connect_pump(srv, "127.0.0.1", p1));
  assert_refused_client(srv, gwt_connect_pump(srv, "127.0.0.1", p2));
  assert_int_equal(gwt_rec_get(&rec, &rec.opens), 2);
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 2);
  assert_int_equal(gwt_stat(srv, GWT_STAT(accepted)), 2);
  assert_int_equal(gwt_stat(srv, GWT_STAT(clients)), 2);
  assert_int_equal(lstat(l1, GWT_STAT(refused)), 1);
  assert_int_equal(lstat(l2, GWT_STAT(refused)), 1);
  assert_echo(srv, a, "a still served");

  /* a slot frees up */
  close(a);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 1, GWT_TIMEOUT_MS));
  int c = gwt_connect_pump(srv, "127.0.0.1", p1);
  assert_echo(srv, c, "c");
  assert_int_equal(gwt_stat(srv, GWT_STAT(accepted)), 3);
  close(b);
  close(c);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_listener_max_clients(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gw_listener_options o1 = GW_LISTENER_OPTIONS_INIT, o2 = GW_LISTENER_OPTIONS_INIT;
  o1.max_clients = 1;
  gw_listener_t *l1 = line_listener(srv, &f->rec, "127.0.0.1:0", &o1);
  gw_listener_t *l2 = line_listener(srv, &f->rec, "127.0.0.1:0", &o2);
  int a = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l1));
  assert_echo(srv, a, "a");
  assert_refused_client(srv, gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l1)));
  int b = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l2));
  int c = gwt_connect_pump(srv, "127.0.0.1", gw_listener_port(l2));
  assert_echo(srv, b, "b");
  assert_echo(srv, c, "c");
  assert_int_equal(lstat(l1, GWT_STAT(refused)), 1);
  assert_int_equal(lstat(l1, GWT_STAT(accepted)), 1);
  assert_int_equal(lstat(l2, GWT_STAT(refused)), 0);
  assert_int_equal(lstat(l2, GWT_STAT(accepted)), 2);
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 1);
  close(a);
  close(b);
  close(c);
}

static void test_max_clients_per_ip(void **state) {
  gwt_fixture *f = *state;
  gw_server_t *srv = f->srv;
  gwt_rec *rec = &f->rec;
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.max_clients_per_ip = 2;
  gw_listener_t *l = line_listener(srv, rec, "0.0.0.0:0", &o);
  int port = gw_listener_port(l);
  int a = gwt_connect_pump(srv, "127.0.0.1", port);
  int b = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_echo(srv, a, "a");
  assert_echo(srv, b, "b");
  assert_refused_client(srv, gwt_connect_pump(srv, "127.0.0.1", port));
  /* another peer address is counted on its own */
  int fd = gwt_connect_from("127.0.0.1", port, "127.0.0.2");
  assert_true(fd >= 0);
  assert_true(gwt_pump_until_stat(srv, GWT_STAT(accepted), 3, GWT_TIMEOUT_MS));
  assert_echo(srv, fd, "from 127.0.0.2");
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 1);
  /* a slot of 127.0.0.1 frees up */
  close(a);
  assert_true(gwt_wait_stat_eq(srv, 1, GWT_STAT(clients), 2, GWT_TIMEOUT_MS));
  int c = gwt_connect_pump(srv, "127.0.0.1", port);
  assert_echo(srv, c, "c");
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 1);
  assert_int_equal(gwt_rec_get(rec, &rec->opens), 4);
  close(b);
  close(c);
  close(fd);
}

static void test_allow_list_v4(void **state) {
  (void)state;
  static const char *const allow[] = {"10.0.0.0/8", "127.0.0.2/32"};
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.allow = allow;
  o.allow_count = 2;
  gw_listener_t *l = line_listener(srv, &rec, "0.0.0.0:0", &o);
  assert_non_null(l);
  int port = gw_listener_port(l);
  assert_refused_client(srv, gwt_connect_pump(srv, "127.0.0.1", port));
  assert_int_equal(gwt_rec_get(&rec, &rec.opens), 0);
  int fd = gwt_connect_from("127.0.0.1", port, "127.0.0.2");
  assert_true(gwt_pump_until_stat(srv, GWT_STAT(accepted), 1, GWT_TIMEOUT_MS));
  assert_echo(srv, fd, "allowed");
  assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 1);
  assert_int_equal(gwt_rec_get(&rec, &rec.opens), 1);
  close(fd);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_allow_list_dual_stack(void **state) {
  (void)state;
  static const char *const v4only[] = {"127.0.0.0/8"};
  static const char *const v6only[] = {"::1/128"};
  for (int k = 0; k < 2; k++) {
    gwt_rec rec;
    gwt_rec_init(&rec);
    gw_server_t *srv = gwt_server();
    gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
    o.allow = k ? v6only : v4only;
    o.allow_count = 1;
    gw_listener_t *l = line_listener(srv, &rec, ":0", &o);
    assert_non_null(l);
    int port = gw_listener_port(l);
    /* IPv4 peers on a dual-stack socket match IPv4 CIDRs */
    int ok = gwt_connect_pump(srv, k ? "::1" : "127.0.0.1", port);
    assert_echo(srv, ok, "allowed");
    assert_refused_client(srv, gwt_connect_pump(srv, k ? "127.0.0.1" : "::1", port));
    assert_int_equal(gwt_stat(srv, GWT_STAT(refused)), 1);
    close(ok);
    gw_server_destroy(srv);
    gwt_rec_free(&rec);
  }
}

static void test_allow_list_bad_cidr(void **state) {
  (void)state;
  static const char *const bad[] = {"10.0.0.0/33", "garbage", "::1/129", "10.0.0.0/", ""};
  gw_server_t *srv = gwt_server();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
    gw_listener_t *l = NULL;
    o.address = "127.0.0.1:0";
    o.allow = &bad[i];
    o.allow_count = 1;
    int rc = gw_listener_create(&l, srv, &o);
    /* the header does not say which; either is a clear error */
    if (rc != GW_EINVAL && rc != GW_EADDRESS)
      fail_msg("allow \"%s\": got %d (%s), want GW_EINVAL or GW_EADDRESS", bad[i], rc, gw_strerror(rc));
  }
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_max_clients),
      GWT_TEST(test_listener_max_clients),
      GWT_TEST(test_max_clients_per_ip),
      cmocka_unit_test(test_allow_list_v4),
      cmocka_unit_test(test_allow_list_dual_stack),
      cmocka_unit_test(test_allow_list_bad_cidr),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
