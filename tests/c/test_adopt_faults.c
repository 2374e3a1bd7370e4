/* SPDX-License-Identifier: MIT */
/* gw_listener_adopt and gw_listener_create_systemd when a step fails after
 * the socket passed every check (getsockname, epoll_ctl): the header says
 * the caller still owns the fd after a failed adopt, so the library must
 * not have closed it; it must be the same socket with its flags as before.
 * An inherited (systemd) socket that cannot be adopted is closed exactly
 * once, by the library, since nobody else can take it from the pool.
 *
 * Fault injection without root: this executable defines epoll_ctl(),
 * getsockname() and close(). libgateway.so's calls resolve to these by ELF
 * interposition (the executable comes first in the lookup scope); they
 * forward to the next definition (libc, or a sanitizer's interceptor) via
 * dlsym(RTLD_NEXT) and fail on demand for one chosen fd. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* ---- the interposed functions (used on the test's thread only) ---- */

/* The project compiles with -fvisibility=hidden; an interposer must be
 * exported from the executable to take part in symbol lookup. */
#define GWT_INTERPOSE __attribute__((visibility("default")))

static int fault_fd = -1;           /* the fd whose calls fail */
static int fault_epoll_errno;       /* nonzero: EPOLL_CTL_ADD of fault_fd fails so */
static int fault_getsockname_errno; /* nonzero: getsockname(fault_fd) fails so */
static int count_fd = -1;           /* close() calls on this fd are counted */
static int closes_of_count_fd;

/* dlsym returns void *; copying it avoids an ISO C cast to a function pointer. */
static void *next_symbol(const char *name) {
  void *sym = dlsym(RTLD_NEXT, name);
  if (!sym) {
    fprintf(stderr, "dlsym(RTLD_NEXT, %s) failed\n", name);
    abort();
  }
  return sym;
}

GWT_INTERPOSE int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
  static int (*next)(int, int, int, struct epoll_event *);
  if (!next) {
    void *sym = next_symbol("epoll_ctl");
    memcpy(&next, &sym, sizeof next);
  }
  if (op == EPOLL_CTL_ADD && fd == fault_fd && fault_epoll_errno) {
    errno = fault_epoll_errno;
    return -1;
  }
  return next(epfd, op, fd, event);
}

GWT_INTERPOSE int getsockname(int fd, struct sockaddr *addr, socklen_t *len) {
  static int (*next)(int, struct sockaddr *, socklen_t *);
  if (!next) {
    void *sym = next_symbol("getsockname");
    memcpy(&next, &sym, sizeof next);
  }
  if (fd == fault_fd && fault_getsockname_errno) {
    errno = fault_getsockname_errno;
    return -1;
  }
  return next(fd, addr, len);
}

GWT_INTERPOSE int close(int fd) {
  static int (*next)(int);
  if (!next) {
    void *sym = next_symbol("close");
    memcpy(&next, &sym, sizeof next);
  }
  if (fd == count_fd) closes_of_count_fd++;
  return next(fd);
}

static void faults_off(void) {
  fault_fd = -1;
  fault_epoll_errno = 0;
  fault_getsockname_errno = 0;
  count_fd = -1;
  closes_of_count_fd = 0;
}

/* ---- helpers ---- */

static int listening_socket(void) { return gwt_tcp_socket(1); }

static int is_listening(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* After a failed adopt: s is open, still the listening socket on `port`,
 * with the flags it had; closing it then closes nothing else. */
static void assert_untouched_and_close(int s, int port, int fl, int fd_flags) {
  faults_off();
  assert_true(fcntl(s, F_GETFD) >= 0);
  assert_int_equal(fcntl(s, F_GETFL), fl);
  assert_int_equal(fcntl(s, F_GETFD), fd_flags);
  assert_int_equal(gwt_local_port(s), port);
  assert_true(is_listening(s));
  /* Had the library closed s, this file would get its number and the
   * caller's close(s) below would close it instead. */
  int other = open("/dev/null", O_RDONLY);
  assert_true(other >= 0);
  assert_int_not_equal(other, s);
  assert_int_equal(close(s), 0);
  assert_true(fcntl(other, F_GETFD) >= 0);
  close(other);
}

static void adopt_fails(int epoll_errno, int getsockname_errno, int want) {
  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  int s = listening_socket();
  int port = gwt_local_port(s);
  int fl = fcntl(s, F_GETFL), fd_flags = fcntl(s, F_GETFD);
  assert_int_equal(fl & O_NONBLOCK, 0);
  assert_int_equal(fd_flags & FD_CLOEXEC, 0);

  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  fault_fd = s;
  fault_epoll_errno = epoll_errno;
  fault_getsockname_errno = getsockname_errno;
  count_fd = s;
  int rc = gw_listener_adopt(&l, srv, s, &o);
  int closes = closes_of_count_fd;
  if (rc != want) fail_msg("adopt: got %d (%s), want %d (%s)", rc, gw_strerror(rc), want, gw_strerror(want));
  assert_int_equal(closes, 0);
  assert_untouched_and_close(s, port, fl, fd_flags);
  /* the server is fine and can adopt another socket */
  int s2 = listening_socket();
  assert_int_equal(gw_listener_adopt(&l, srv, s2, &o), 0);
  assert_int_equal(gw_listener_port(l), gwt_local_port(s2));
  gw_server_destroy(srv);
  assert_true(fcntl(s2, F_GETFD) < 0); /* the server owned s2 and closed it */
}

/* ---- tests ---- */

static void test_adopt_epoll_enospc(void **state) {
  (void)state;
  adopt_fails(ENOSPC, 0, -ENOSPC);
}

static void test_adopt_epoll_enomem(void **state) {
  (void)state;
  adopt_fails(ENOMEM, 0, GW_ENOMEM);
}

static void test_adopt_getsockname_fails(void **state) {
  (void)state;
  adopt_fails(0, ENOBUFS, -ENOBUFS);
}

/* A failed adopt can be retried with the same fd once the cause is gone. */
static void test_adopt_retry_after_fault(void **state) {
  gwt_fixture *f = *state;
  int s = listening_socket();
  gw_listener_options o;
  gwt_echo_opts(&o, &f->rec, GW_FRAMING_LINE);
  gw_listener_t *l = NULL;
  fault_fd = s;
  fault_epoll_errno = ENOSPC;
  assert_int_equal(gw_listener_adopt(&l, f->srv, s, &o), -ENOSPC);
  faults_off();
  assert_int_equal(gw_listener_adopt(&l, f->srv, s, &o), 0);
  int c = gwt_connect("127.0.0.1", gw_listener_port(l));
  assert_true(c >= 0);
  char buf[16];
  assert_int_equal(gwt_send_frame(f->srv, c, GW_FRAMING_LINE, "again", 5), 0);
  assert_int_equal(gwt_read_line(f->srv, c, buf, sizeof buf, GWT_TIMEOUT_MS), 5);
  close(c);
}

/* An inherited socket that cannot be adopted: closed by the library, once. */
static void test_systemd_failed_adopt_closes_once(void **state) {
  (void)state;
#if !GWT_WITH_SYSTEMD
  skip(); /* inherited sockets are never taken without systemd support */
#else
  enum { TARGET = 3 };
  if (fcntl(TARGET, F_GETFD) >= 0) skip(); /* fd 3 is taken: systemd's protocol cannot be simulated here */
  int s = listening_socket();
  if (s != TARGET) {
    assert_int_equal(dup2(s, TARGET), TARGET);
    close(s);
  }
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  setenv("LISTEN_PID", pid, 1);
  setenv("LISTEN_FDS", "1", 1);
  setenv("LISTEN_FDNAMES", "api", 1);

  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  gw_listener_t *l = NULL;
  int inherited = -1;
  fault_fd = TARGET;
  fault_epoll_errno = ENOSPC;
  count_fd = TARGET;
  int rc = gw_listener_create_systemd(&l, &inherited, srv, "api", &o);
  int closes = closes_of_count_fd;
  faults_off();
  assert_int_equal(rc, -ENOSPC);
  assert_int_equal(inherited, 0);
  assert_int_equal(closes, 1);
  assert_true(fcntl(TARGET, F_GETFD) < 0);
  /* it has left the pool: a second call cannot find it */
  o.address = NULL;
  assert_int_equal(gw_listener_create_systemd(&l, &inherited, srv, "api", &o), GW_ENOTFOUND);
  gw_server_destroy(srv);
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* first, while fd 3 is surely free (a failing test may leak its socket) */
      cmocka_unit_test(test_systemd_failed_adopt_closes_once),
      cmocka_unit_test(test_adopt_epoll_enospc),
      cmocka_unit_test(test_adopt_epoll_enomem),
      cmocka_unit_test(test_adopt_getsockname_fails),
      GWT_TEST(test_adopt_retry_after_fault),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
