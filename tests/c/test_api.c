/* SPDX-License-Identifier: MIT */
/* Version, errors, close-reason names, option versions, argument checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"

static void test_version_matches_macros(void **state) {
  (void)state;
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", GW_VERSION_MAJOR, GW_VERSION_MINOR, GW_VERSION_PATCH);
  assert_non_null(gw_version());
  assert_string_equal(gw_version(), want);
  assert_int_equal(GW_VERSION_HEX, (GW_VERSION_MAJOR << 16) | (GW_VERSION_MINOR << 8) | GW_VERSION_PATCH);
}

static const int all_codes[] = {
    GW_OK,           GW_EINVAL,   GW_ENOMEM,    GW_EAGAIN,  GW_EADDRINUSE,    GW_EADDRNOTAVAIL, GW_EACCES,
    GW_EBADF,        GW_ENOTSOCK, GW_EMFILE,    GW_ENOSYS,  GW_ENOTLISTENING, GW_ENOTSTREAM,    GW_ESTATE,
    GW_EWRONGTHREAD, GW_ECLOSED,  GW_ENOTFOUND, GW_ETOOBIG, GW_EADDRESS,
};

static void test_strerror_every_code_distinct(void **state) {
  (void)state;
  size_t n = sizeof all_codes / sizeof all_codes[0];
  for (size_t i = 0; i < n; i++) {
    const char *s = gw_strerror(all_codes[i]);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    for (size_t j = 0; j < i; j++) {
      if (strcmp(s, gw_strerror(all_codes[j])) == 0)
        fail_msg("gw_strerror(%d) == gw_strerror(%d) == \"%s\"", all_codes[i], all_codes[j], s);
    }
  }
  /* own codes must not read like a generic "unknown error" */
  assert_string_not_equal(gw_strerror(GW_ENOTLISTENING), gw_strerror(-3999));
  assert_string_not_equal(gw_strerror(GW_EADDRESS), gw_strerror(-3999));
  /* any negated errno, and nonsense codes, still give text */
  assert_non_null(gw_strerror(-ECONNRESET));
  assert_non_null(gw_strerror(-3999));
  assert_non_null(gw_strerror(12345));
  assert_non_null(gw_strerror(-2147483647 - 1));
}

/* The values are the ABI: the table may not change them (0.1.0's macros). */
static void test_codes_keep_their_values(void **state) {
  (void)state;
  assert_int_equal(GW_OK, 0);
  assert_int_equal(GW_EINVAL, -EINVAL);
  assert_int_equal(GW_ENOMEM, -ENOMEM);
  assert_int_equal(GW_EAGAIN, -EAGAIN);
  assert_int_equal(GW_EADDRINUSE, -EADDRINUSE);
  assert_int_equal(GW_EADDRNOTAVAIL, -EADDRNOTAVAIL);
  assert_int_equal(GW_EACCES, -EACCES);
  assert_int_equal(GW_EBADF, -EBADF);
  assert_int_equal(GW_ENOTSOCK, -ENOTSOCK);
  assert_int_equal(GW_EMFILE, -EMFILE);
  assert_int_equal(GW_ENOSYS, -ENOSYS);
  assert_int_equal(GW_ENOTLISTENING, -3001);
  assert_int_equal(GW_ENOTSTREAM, -3002);
  assert_int_equal(GW_ESTATE, -3003);
  assert_int_equal(GW_EWRONGTHREAD, -3004);
  assert_int_equal(GW_ECLOSED, -3005);
  assert_int_equal(GW_ENOTFOUND, -3006);
  assert_int_equal(GW_ETOOBIG, -3007);
  assert_int_equal(GW_EADDRESS, -3008);
  assert_int_equal(GW_CLOSE_PEER, 1);
  assert_int_equal(GW_CLOSE_RESET, 2);
  assert_int_equal(GW_CLOSE_IDLE, 3);
  assert_int_equal(GW_CLOSE_LIMIT, 4);
  assert_int_equal(GW_CLOSE_OVERSIZE, 5);
  assert_int_equal(GW_CLOSE_STOPPING, 6);
  assert_int_equal(GW_CLOSE_LOCAL, 7);
}

/* Every row of the table: its constant, its name and its text agree with
 * what the library says. */
static void test_err_name_every_row(void **state) {
  (void)state;
  int rows = 0;
#define ROW(name, value, text)                                                             \
  do {                                                                                     \
    assert_int_equal(GW_##name, (value));                                                  \
    assert_string_equal(gw_err_name(GW_##name), "GW_" #name);                              \
    if ((text) != NULL) assert_string_equal(gw_strerror(GW_##name), (text) ? (text) : ""); \
    rows++;                                                                                \
  } while (0);
  GW_ERRNO_MAP(ROW)
#undef ROW
  assert_int_equal(rows, (int)(sizeof all_codes / sizeof all_codes[0]) - 1); /* all_codes has GW_OK too */
  assert_string_equal(gw_err_name(GW_OK), "GW_OK");
  assert_string_equal(gw_err_name(GW_ESTATE), "GW_ESTATE");
  assert_string_equal(gw_err_name(-EINVAL), "GW_EINVAL");
  /* a negated errno without a GW_ constant: the errno's name */
  assert_string_equal(gw_err_name(-EPIPE), "EPIPE");
  assert_string_equal(gw_err_name(-ECONNRESET), "ECONNRESET");
  /* anything else: a static placeholder, never NULL */
  assert_string_equal(gw_err_name(-3999), "GW_EUNKNOWN");
  assert_string_equal(gw_err_name(-3000), "GW_EUNKNOWN");
  assert_string_equal(gw_err_name(12345), "GW_EUNKNOWN");
  assert_string_equal(gw_err_name(EINVAL), "GW_EUNKNOWN");
  assert_string_equal(gw_err_name(-4095), "GW_EUNKNOWN");
  assert_string_equal(gw_err_name(-2147483647 - 1), "GW_EUNKNOWN");
}

/* The name and text functions return static strings, from any thread at
 * once: a shared formatting buffer would show as a name of another code. */
static pthread_barrier_t names_start;

typedef struct names_worker {
  pthread_t thread;
  int code;
  const char *want;
  int wrong;
} names_worker;

static void *names_loop(void *arg) {
  names_worker *w = arg;
  pthread_barrier_wait(&names_start); /* all at once, not one after another */
  for (int i = 0; i < 1000000; i++) {
    if (strcmp(gw_err_name(w->code), w->want) != 0) w->wrong++;
    (void)gw_strerror(w->code);
  }
  return NULL;
}

static void test_err_name_threads(void **state) {
  (void)state;
  names_worker w[] = {
      {.code = GW_ESTATE, .want = "GW_ESTATE"},
      {.code = -EPIPE, .want = "EPIPE"},
      {.code = -ECONNREFUSED, .want = "ECONNREFUSED"},
      {.code = -3999, .want = "GW_EUNKNOWN"},
  };
  size_t n = sizeof w / sizeof w[0];
  assert_int_equal(pthread_barrier_init(&names_start, NULL, (unsigned)n), 0);
  for (size_t i = 0; i < n; i++) assert_int_equal(pthread_create(&w[i].thread, NULL, names_loop, &w[i]), 0);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(pthread_join(w[i].thread, NULL), 0);
    assert_int_equal(w[i].wrong, 0);
  }
  pthread_barrier_destroy(&names_start);
}

static void test_close_reason_names_every_row(void **state) {
  (void)state;
  int rows = 0;
#define ROW(NAME, name, value, text)                                   \
  do {                                                                 \
    assert_int_equal(GW_CLOSE_##NAME, (value));                        \
    assert_string_equal(gw_close_reason_name(GW_CLOSE_##NAME), #name); \
    rows++;                                                            \
  } while (0);
  GW_CLOSE_REASON_MAP(ROW)
#undef ROW
  assert_int_equal(rows, 7);
  assert_string_equal(gw_close_reason_name(GW_CLOSE_OVERSIZE), "oversize");
  assert_string_equal(gw_close_reason_name(GW_CLOSE_LOCAL), "local");
  assert_string_equal(gw_close_reason_name((gw_close_reason)0), "unknown");
  assert_string_equal(gw_close_reason_name((gw_close_reason)8), "unknown");
  assert_string_equal(gw_close_reason_name((gw_close_reason)-1), "unknown");
}

static void test_close_reason_names(void **state) {
  (void)state;
  /* the header names the first three; the others must exist and differ */
  assert_string_equal(gw_close_reason_name(GW_CLOSE_PEER), "peer");
  assert_string_equal(gw_close_reason_name(GW_CLOSE_RESET), "reset");
  assert_string_equal(gw_close_reason_name(GW_CLOSE_IDLE), "idle");
  for (int r = GW_CLOSE_PEER; r <= GW_CLOSE_LOCAL; r++) {
    const char *s = gw_close_reason_name((gw_close_reason)r);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    for (int q = GW_CLOSE_PEER; q < r; q++) assert_string_not_equal(s, gw_close_reason_name((gw_close_reason)q));
  }
  assert_non_null(gw_close_reason_name((gw_close_reason)0));
  assert_non_null(gw_close_reason_name((gw_close_reason)99));
}

static void test_server_defaults_and_null(void **state) {
  (void)state;
  gw_server_t *srv = NULL;
  assert_int_equal(gw_server_create(&srv, NULL), 0);
  assert_non_null(srv);
  assert_true(gw_server_fd(srv) >= 0);
  gw_stats st;
  memset(&st, 0xff, sizeof st);
  assert_int_equal(gw_server_stats(&st, srv), 0);
  assert_int_equal(st.clients, 0);
  assert_int_equal(st.accepted, 0);
  assert_int_equal(st.refused, 0);
  assert_int_equal(st.bytes_in, 0);
  assert_int_equal(st.bytes_out, 0);
  gw_server_destroy(srv);
  gw_server_destroy(NULL);
  gw_timer_destroy(NULL);

  assert_int_equal(gw_server_create(NULL, NULL), GW_EINVAL);
  assert_int_equal(gw_server_stop(NULL), GW_EINVAL);
  assert_int_equal(gw_server_post(NULL, NULL, NULL), GW_EINVAL);
  assert_int_equal(gw_server_stats(&st, NULL), GW_EINVAL);
  assert_int_equal(gw_conn_send(NULL, "x", 1), GW_EINVAL);
  assert_int_equal(gw_conn_close(NULL), GW_EINVAL);
}

static void test_server_option_version_mismatch(void **state) {
  (void)state;
  gw_server_options o = GW_SERVER_OPTIONS_INIT;
  gw_server_t *srv = (gw_server_t *)&o; /* must be left alone on failure */
  o.version = 0;
  assert_int_equal(gw_server_create(&srv, &o), GW_EINVAL);
  o.version = GW_SERVER_OPTIONS_VERSION + 100;
  assert_int_equal(gw_server_create(&srv, &o), GW_EINVAL);
}

static void test_listener_option_version_mismatch(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  assert_non_null(srv);
  gw_listener_options o = GW_LISTENER_OPTIONS_INIT;
  o.address = "127.0.0.1:0";
  gw_listener_t *l = NULL;
  o.version = 0;
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_EINVAL);
  o.version = GW_LISTENER_OPTIONS_VERSION + 100;
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_EINVAL);
  assert_int_equal(gw_listener_adopt(&l, srv, 0, &o), GW_EINVAL);
  o.version = GW_LISTENER_OPTIONS_VERSION;
  assert_int_equal(gw_listener_create(&l, srv, NULL), GW_EINVAL);
  assert_int_equal(gw_listener_create(NULL, srv, &o), GW_EINVAL);
  assert_int_equal(gw_listener_create(&l, NULL, &o), GW_EINVAL);
  /* nonsense framing */
  o.framing = (gw_framing)42;
  assert_int_equal(gw_listener_create(&l, srv, &o), GW_EINVAL);
  o.framing = GW_FRAMING_LINE;
  assert_int_equal(gw_listener_create(&l, srv, &o), 0);
  gw_server_destroy(srv);
}

static void test_timer_args(void **state) {
  (void)state;
  gw_server_t *srv = gwt_server();
  gw_timer_t *t = NULL;
  assert_int_equal(gw_timer_create(&t, NULL, NULL, NULL), GW_EINVAL);
  assert_int_equal(gw_timer_create(NULL, srv, NULL, NULL), GW_EINVAL);
  assert_int_equal(gw_timer_start(NULL, 1, 0), GW_EINVAL);
  assert_int_equal(gw_timer_stop(NULL), GW_EINVAL);
  gw_server_destroy(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_matches_macros),
      cmocka_unit_test(test_strerror_every_code_distinct),
      cmocka_unit_test(test_close_reason_names),
      cmocka_unit_test(test_codes_keep_their_values),
      cmocka_unit_test(test_err_name_every_row),
      cmocka_unit_test(test_err_name_threads),
      cmocka_unit_test(test_close_reason_names_every_row),
      cmocka_unit_test(test_server_defaults_and_null),
      cmocka_unit_test(test_server_option_version_mismatch),
      cmocka_unit_test(test_listener_option_version_mismatch),
      cmocka_unit_test(test_timer_args),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
