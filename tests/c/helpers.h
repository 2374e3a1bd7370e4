/* SPDX-License-Identifier: MIT */
/* Shared helpers for the C API test suites (C99, cmocka).
 *
 * Two ways to drive a server:
 *  - single-threaded: the test thread is the loop thread and calls
 *    gwt_pump*() (poll() on gw_server_fd() + gw_server_dispatch()) while it
 *    waits for its own client sockets;
 *  - threaded: gwt_loop_start() runs gw_server_run() on a pthread, the test
 *    thread acts as a blocking client (pass srv = NULL to the read helpers).
 * Every wait is bounded by a deadline so that a bug fails instead of hanging. */
#ifndef GWT_HELPERS_H
#define GWT_HELPERS_H

#include <gateway/gateway.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GWT_TIMEOUT_MS 5000

int64_t gwt_now_ms(void);

/* ---- server driving (single-threaded) ---- */

/* Creates a server with the defaults (log to a quiet sink unless GWT_LOG is set). */
gw_server_t *gwt_server(void);
gw_server_t *gwt_server_opts(gw_server_options *opts);

/* One poll(gw_server_fd, timeout_ms) + gw_server_dispatch(). Returns what
 * dispatch returned (or 0 if nothing was ready). */
int gwt_dispatch(gw_server_t *srv, int timeout_ms);
/* Dispatches for `ms` milliseconds. Returns the last dispatch result. */
int gwt_pump(gw_server_t *srv, int ms);
/* Dispatches until pred(arg) is nonzero or timeout. Returns 1 if pred held. */
int gwt_pump_until(gw_server_t *srv, int (*pred)(void *), void *arg, int timeout_ms);
/* Dispatches until gw_server_dispatch() returns 1 (fully stopped). Returns 1 if so. */
int gwt_pump_until_stopped(gw_server_t *srv, int timeout_ms);
/* Dispatches until the server's stats field (offsetof into gw_stats) reaches v. */
int gwt_pump_until_stat(gw_server_t *srv, size_t field_offset, uint64_t v, int timeout_ms);
/* Waits (dispatching if pump) until the stats field equals v exactly. */
int gwt_wait_stat_eq(gw_server_t *srv, int pump, size_t field_offset, uint64_t v, int timeout_ms);
#define GWT_STAT(field) offsetof(gw_stats, field)
uint64_t gwt_stat(gw_server_t *srv, size_t field_offset);

/* ---- server loop on a thread ---- */

typedef struct gwt_loop {
  pthread_t thread;
  gw_server_t *srv;
  int rc; /* gw_server_run's return value */
  int running;
  int destroy; /* destroy the server on the loop thread once run returns */
} gwt_loop;

/* Runs gw_server_run(srv) on a new thread; when it returns, the thread also
 * destroys the server (the loop thread's job): do not use srv after join. */
void gwt_loop_start(gwt_loop *loop, gw_server_t *srv);
/* Joins with a deadline; returns 0 when joined, -1 on timeout. */
int gwt_loop_join(gwt_loop *loop, int timeout_ms);
/* Runs fn(arg) on the loop thread via gw_server_post and waits for it. 0 or -1. */
int gwt_on_loop(gw_server_t *srv, void (*fn)(void *), void *arg);

/* ---- listeners ---- */

/* Creates a listener with `addr` on the server using opts (address replaced). */
gw_listener_t *gwt_listen(gw_server_t *srv, const char *addr, gw_listener_options *opts);

/* ---- clients ---- */

/* Blocking connect to host:port (IPv4 or IPv6 literal); the socket is left
 * blocking. bind_addr (may be NULL) binds the client's local address first.
 * Returns the fd or -1. */
int gwt_connect(const char *host, int port);
int gwt_connect_from(const char *host, int port, const char *bind_addr);
/* A client with a small receive buffer (set before connect), for slow readers. */
int gwt_connect_small(const char *host, int port, int rcvbuf);
/* Connects, then pumps until the server's accepted + refused grows. */
int gwt_connect_pump(gw_server_t *srv, const char *host, int port);

int gwt_set_nonblock(int fd);
/* Only before connect(): see gwt_connect_small(). */
void gwt_set_rcvbuf(int fd, int bytes);
/* Closes with SO_LINGER 0: the peer gets an RST. */
void gwt_close_reset(int fd);
/* Local port of a socket. */
int gwt_local_port(int fd);
/* A TCP socket bound to 127.0.0.1 on a port the kernel picks, listening
 * (backlog 16) if do_listen; aborts the test otherwise. The caller owns it. */
int gwt_tcp_socket(int do_listen);

/* Writes everything (blocking or not: retries on EAGAIN while pumping srv,
 * srv may be NULL). Returns 0 or -1. */
int gwt_write_all(gw_server_t *srv, int fd, const void *buf, size_t len);

/* Reads exactly len bytes (while pumping srv, may be NULL) with a deadline.
 * Returns the number of bytes read: len, fewer on EOF/error/timeout. */
size_t gwt_read_exact(gw_server_t *srv, int fd, void *buf, size_t len, int timeout_ms);
/* Reads up to and including '\n' into buf (NUL-terminated, without the '\n').
 * Returns the line length, or -1 (timeout, EOF before '\n', overflow). */
int gwt_read_line(gw_server_t *srv, int fd, char *buf, size_t cap, int timeout_ms);
/* gwt_read_exact() for any fd (a pty master, a pipe): read() instead of
 * recv(). The fd should be non-blocking. */
size_t gwt_read_fd_exact(gw_server_t *srv, int fd, void *buf, size_t len, int timeout_ms);
/* Waits for EOF (read returns 0) discarding data. Returns 0 on EOF, 1 on
 * ECONNRESET, -1 on timeout/other error. *discarded (may be NULL) gets the
 * number of bytes read before. */
int gwt_wait_eof(gw_server_t *srv, int fd, int timeout_ms, size_t *discarded);
/* Returns 1 if fd has nothing to read for ms milliseconds (while pumping). */
int gwt_quiet(gw_server_t *srv, int fd, int ms);

/* Sends one framed message the way a client would (line: appends '\n';
 * u16be/u32be: length prefix; raw: as is). Returns 0 or -1. */
int gwt_send_frame(gw_server_t *srv, int fd, gw_framing framing, const void *data, size_t len);
/* Reads one framed message (line: without '\n'). Returns its length or -1. */
long gwt_read_frame(gw_server_t *srv, int fd, gw_framing framing, void *buf, size_t cap, int timeout_ms);
/* Encodes a frame into out (cap bytes); returns the encoded length. */
size_t gwt_encode(gw_framing framing, const void *data, size_t len, unsigned char *out, size_t cap);

/* ---- a recorder: standard callbacks that count events ---- */

#define GWT_MAX_CONNS 512
#define GWT_MAX_MSGS 256

typedef struct gwt_rec {
  pthread_mutex_t mu;
  int echo; /* on_message: gw_conn_send_message the message back */
  int opens, closes, messages, drains;
  int reasons[8];    /* closes per gw_close_reason */
  int send_failures; /* echo sends that did not return 0 */
  int last_send_rc;
  size_t msg_bytes;
  int order_error;                /* a message or close for a conn never opened / twice closed */
  gw_conn_t *open[GWT_MAX_CONNS]; /* open connections in the order they opened */
  uint64_t open_ids[GWT_MAX_CONNS];
  int nopen_slots;
  uint64_t closed_ids[GWT_MAX_CONNS];
  int closed_reason[GWT_MAX_CONNS];
  int nclosed;
  /* the first GWT_MAX_MSGS messages, copied */
  size_t msg_len[GWT_MAX_MSGS];
  unsigned char *msg_data[GWT_MAX_MSGS];
  int nmsgs;
} gwt_rec;

void gwt_rec_init(gwt_rec *r);
void gwt_rec_free(gwt_rec *r);
/* Sets the four callbacks and user_data = r. */
void gwt_rec_attach(gwt_rec *r, gw_listener_options *opts);
/* *opts = GW_LISTENER_OPTIONS_INIT with `framing`, r attached and r->echo = 1:
 * an echo listener's options; set any other field afterwards. */
void gwt_echo_opts(gw_listener_options *opts, gwt_rec *r, gw_framing framing);
void gwt_rec_on_open(gw_conn_t *c, void *ud);
void gwt_rec_on_message(gw_conn_t *c, const void *d, size_t n, void *ud);
void gwt_rec_on_close(gw_conn_t *c, gw_close_reason why, void *ud);
void gwt_rec_on_drain(gw_conn_t *c, void *ud);
/* Thread-safe snapshots. */
int gwt_rec_get(gwt_rec *r, const int *field);
int gwt_rec_reason(gwt_rec *r, gw_close_reason why);
/* The i-th opened connection if still open, else NULL. */
gw_conn_t *gwt_rec_conn(gwt_rec *r, int i);
/* The close reason recorded for connection id, or 0 if not closed. */
int gwt_rec_reason_of(gwt_rec *r, uint64_t id);
/* Pump (srv non-NULL) or wait (srv NULL) until *field >= v. 1 on success. */
int gwt_rec_wait(gw_server_t *srv, gwt_rec *r, const int *field, int v, int timeout_ms);

/* ---- per-test fixture (cmocka setup/teardown): a recorder and a server ---- */

typedef struct gwt_fixture {
  gwt_rec rec;
  gw_server_t *srv;
} gwt_fixture;

/* rec initialised, srv = gwt_server(). */
int gwt_setup(void **state);
/* gw_server_destroy(srv) (unless the test set it to NULL), then gwt_rec_free. */
int gwt_teardown(void **state);
/* A cmocka test with the fixture as its state (the test keeps its own name). */
#define GWT_TEST(t) cmocka_unit_test_setup_teardown(t, gwt_setup, gwt_teardown)

/* A log sink that counts lines; set GWT_LOG=1 in the environment to print them. */
typedef struct gwt_log {
  pthread_mutex_t mu;
  int lines;
  int matches; /* lines containing `needle` (case-insensitive) */
  const char *needle;
  int match_level; /* the level of the last matching line */
} gwt_log;
void gwt_log_fn(gw_log_level level, const char *line, void *user_data);

#endif
