/* SPDX-License-Identifier: MIT */
/* gw_listener_create_systemd: inherited sockets by name (LISTEN_FDS protocol,
 * simulated in this process), and the fallback to options->address.
 * Built with GW_WITH_SYSTEMD=OFF (GWT_WITH_SYSTEMD 0), the documented
 * behaviour is checked instead: inherited sockets are never taken, the
 * address is bound, and without an address the call returns GW_ENOSYS. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static void clear_env(void) {
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

/* Puts a listening 127.0.0.1 socket on exactly `target` and returns its port. */
static int listening_on_fd(int target) {
  if (fcntl(target, F_GETFD) >= 0) return -1; /* taken: the test cannot simulate systemd here */
  int s = gwt_tcp_socket(1);
  int port = gwt_local_port(s);
  if (s != target) {
    assert_int_equal(dup2(s, target), target);
    close(s);
  }
  return port;
}

static void set_env(pid_t pid, int n, const char *names) {
  char buf[32];
  snprintf(buf, sizeof buf, "%ld", (long)pid);
  setenv("LISTEN_PID", buf, 1);
  snprintf(buf, sizeof buf, "%d", n);
  setenv("LISTEN_FDS", buf, 1);
  if (names)
    setenv("LISTEN_FDNAMES", names, 1);
  else
    unsetenv("LISTEN_FDNAMES");
}

static void assert_echo_on(gw_server_t *srv, int port, const char *text) {
  char buf[64];
  int fd = gwt_connect("127.0.0.1", port);
  assert_true(fd >= 0);
  assert_int_equal(gwt_send_frame(srv, fd, GW_FRAMING_LINE, text, strlen(text)), 0);
  assert_int_equal(gwt_read_line(srv, fd, buf, sizeof buf, GWT_TIMEOUT_MS), (int)strlen(text));
  assert_string_equal(buf, text);
  close(fd);
}

static void test_inherited_by_name(void **state) {
  (void)state;
  int p3 = listening_on_fd(3);
  int p4 = p3 < 0 ? -1 : listening_on_fd(4);
  if (p3 < 0 || p4 < 0) {
    if (p3 >= 0) close(3);
    skip();
  }
  set_env(getpid(), 2, "other:api");
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  gwt_echo_opts(&o, &rec, GW_FRAMING_LINE);
  o.address = "127.0.0.1:0"; /* must not be used: the inherited socket wins */

  gw_listener_t *api = NULL;
  int inherited = -1;
#if !GWT_WITH_SYSTEMD
  /* No systemd support: the passed sockets are ignored, the address is bound. */
  assert_int_equal(gw_listener_create_systemd(&api, &inherited, srv, "api", &o), 0);
  assert_int_equal(inherited, 0);
  int port = gw_listener_port(api);
  assert_true(port > 0);
  assert_int_not_equal(port, p3);
  assert_int_not_equal(port, p4);
  assert_echo_on(srv, port, "api bound");
  o.address = NULL;
  inherited = -1;
  gw_listener_t *none = NULL;
  assert_int_equal(gw_listener_create_systemd(&none, &inherited, srv, "other", &o), GW_ENOSYS);
  assert_int_equal(inherited, 0);
  assert_null(none);
  gw_server_destroy(srv);
  /* never taken: still ours */
  assert_true(fcntl(3, F_GETFD) >= 0);
  assert_true(fcntl(4, F_GETFD) >= 0);
  close(3);
  close(4);
  clear_env();
  gwt_rec_free(&rec);
  return;
#endif
  assert_int_equal(gw_listener_create_systemd(&api, &inherited, srv, "api", &o), 0);
  assert_int_equal(inherited, 1);
  assert_int_equal(gw_listener_port(api), p4);
  assert_echo_on(srv, p4, "api");

  /* a second name from the same set: a firmware with two sockets */
  gw_listener_t *other = NULL;
  inherited = -1;
  assert_int_equal(gw_listener_create_systemd(&other, &inherited, srv, "other", &o), 0);
  assert_int_equal(inherited, 1);
  assert_int_equal(gw_listener_port(other), p3);
  assert_echo_on(srv, p3, "other");

  gw_server_destroy(srv);
  /* the server owned them */
  assert_true(fcntl(3, F_GETFD) < 0);
  assert_true(fcntl(4, F_GETFD) < 0);
  clear_env();
  gwt_rec_free(&rec);
}

static void test_inherited_name_missing(void **state) {
  (void)state;
  int p3 = listening_on_fd(3);
  if (p3 < 0) skip();
  set_env(getpid(), 1, "api");
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  int inherited = -1;
#if !GWT_WITH_SYSTEMD
  /* No systemd support and no address: GW_ENOSYS whatever the name. */
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "nosuchname", &o), GW_ENOSYS);
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), GW_ENOSYS);
  assert_int_equal(inherited, 0);
  gw_server_destroy(srv);
  assert_true(fcntl(3, F_GETFD) >= 0);
  close(3);
  clear_env();
  return;
#endif
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "nosuchname", &o), GW_ENOTFOUND);
  /* the unclaimed inherited socket is still there for its real name */
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), 0);
  assert_int_equal(inherited, 1);
  assert_int_equal(gw_listener_port(l), p3);
  gw_server_destroy(srv);
  clear_env();
}

/* gw_listener_create_systemd for "api" with address 127.0.0.1:0 must bind
 * that address itself (not inherit); checks the echo and returns the port. */
static int assert_binds_address(gw_server_t *srv, gwt_rec *rec, gw_listener_options *o, const char *text) {
  gwt_echo_opts(o, rec, GW_FRAMING_LINE);
  o->address = "127.0.0.1:0";
  gw_listener_t *l = NULL;
  int inherited = -1;
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", o), 0);
  assert_int_equal(inherited, 0);
  int port = gw_listener_port(l);
  assert_true(port > 0);
  assert_echo_on(srv, port, text);
  return port;
}

static void test_other_pid_falls_back_to_address(void **state) {
  (void)state;
  int p3 = listening_on_fd(3);
  if (p3 < 0) skip();
  set_env(getpid() + 1, 1, "api"); /* meant for another process */
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  int port = assert_binds_address(srv, &rec, &o, "fallback");
  assert_int_not_equal(port, p3);
  gw_server_destroy(srv);
  /* not ours to take: fd 3 was left alone */
  assert_true(fcntl(3, F_GETFD) >= 0);
  close(3);
  clear_env();
  gwt_rec_free(&rec);
}

static void test_started_by_hand_binds_address(void **state) {
  (void)state;
  clear_env();
  gwt_rec rec;
  gwt_rec_init(&rec);
  gw_server_t *srv = gwt_server();
  gw_listener_options o;
  assert_binds_address(srv, &rec, &o, "by hand");
  /* out_inherited may be NULL */
  gw_listener_t *l2 = NULL;
  assert_int_equal(gw_listener_create_systemd(&l2, NULL, srv, "api", &o), 0);
  assert_true(gw_listener_port(l2) > 0);
  gw_server_destroy(srv);
  gwt_rec_free(&rec);
}

static void test_started_by_hand_without_address(void **state) {
  (void)state;
  clear_env();
  gw_server_t *srv = gwt_server();
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  int inherited = -1;
#if GWT_WITH_SYSTEMD
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), GW_ENOTFOUND);
#else
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), GW_ENOSYS);
#endif
  assert_int_equal(inherited, 0);
  /* a bad fallback address is reported as such */
  o.address = "nonsense";
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), GW_EADDRESS);
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inherited_by_name),
      cmocka_unit_test(test_inherited_name_missing),
      cmocka_unit_test(test_other_pid_falls_back_to_address),
      cmocka_unit_test(test_started_by_hand_binds_address),
      cmocka_unit_test(test_started_by_hand_without_address),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
