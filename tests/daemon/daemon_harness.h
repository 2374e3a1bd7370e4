/* SPDX-License-Identifier: MIT */
/* Harness for the gatewayd integration suites (C99 + _GNU_SOURCE, cmocka).
 *
 * Drives the real daemon binary (path from argv[1], set by CTest from
 * $<TARGET_FILE:gatewayd>): a temp dir per test for configs, captured
 * stdout/stderr and sockets; child processes started with a prepared
 * environment (NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*) and inherited fds;
 * local backend servers on threads; a test NOTIFY_SOCKET. Client-side socket
 * helpers come from tests/c/helpers.h (call them with srv = NULL).
 * Every wait has a deadline, so a bug fails instead of hanging. */
#ifndef GWD_HARNESS_H
#define GWD_HARNESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "helpers.h"

/* The harness's bounded wait: 5 s, times GWD_TIME_SCALE when set (a slower
 * gatewayd, such as one under valgrind; see gwd_timeout_ms()). */
#define GWD_TIMEOUT_MS (gwd_timeout_ms())

/* Call first in main(): takes argv[1] as the gatewayd path (fails if absent). */
void gwd_init(int argc, char **argv);
const char *gwd_binary(void);
/* 5000 ms times the integer GWD_TIME_SCALE from the environment (default 1). */
int gwd_timeout_ms(void);
/* Any `ms` scaled the same way, for a test's own longer deadlines. */
int gwd_scaled_ms(int ms);
/* 1 if gatewayd is started through GWD_WRAPPER (a space-separated command
 * put in front of it by gwd_start and gwd_run, e.g. "valgrind -q"): tests whose
 * figures a wrapper distorts (memory) may loosen their bounds. */
int gwd_wrapped(void);

/* ---- per-test directory ---- */

typedef struct gwd_dir {
  char path[256];
} gwd_dir;

void gwd_dir_make(gwd_dir *d);
/* Removes the directory and everything in it. */
void gwd_dir_remove(gwd_dir *d);
/* Writes `text` to DIR/name; the full path goes to out (cap bytes). */
void gwd_dir_write(const gwd_dir *d, const char *name, const char *text, char *out, size_t cap);
/* DIR/name into out. */
void gwd_dir_file(const gwd_dir *d, const char *name, char *out, size_t cap);

/* A free TCP port on 127.0.0.1, from a sequence derived from getpid() (each
 * call a new one), checked by binding it. */
int gwd_port(void);

/* ---- processes ---- */

#define GWD_MAX_FDS 8
#define GWD_MAX_ENV 16

typedef struct gwd_spawn_opts {
  /* Extra environment entries "K=V" (NOTIFY_SOCKET=..., WATCHDOG_USEC=...). */
  const char *env[GWD_MAX_ENV];
  /* Fds to pass as 3, 4, ...; with listen_names set, LISTEN_FDS=n,
   * LISTEN_PID=<child pid> and LISTEN_FDNAMES=listen_names are set too. */
  int fds[GWD_MAX_FDS];
  int nfds;
  const char *listen_names; /* "a:b", or NULL for no LISTEN_* variables */
  int listen_no_names;      /* LISTEN_FDS/LISTEN_PID without LISTEN_FDNAMES */
  int watchdog_pid;         /* set WATCHDOG_PID=<child pid> */
  int rlimit_nofile;        /* > 0: the child's RLIMIT_NOFILE (soft and hard), set before exec */
} gwd_spawn_opts;

typedef struct gwd_proc {
  pid_t pid;
  int exited; /* 1 once reaped */
  int status; /* waitpid status */
  char out_path[300];
  char err_path[300];
} gwd_proc;

/* Starts argv (argv[0] an absolute path) with stdout/stderr captured to
 * DIR/<tag>.out and DIR/<tag>.err; every other fd of the test is closed in the
 * child. The environment is the test's minus NOTIFY_SOCKET, LISTEN_* and
 * WATCHDOG_*, plus opts. Returns 0 or -1. */
int gwd_spawn(gwd_proc *p, const gwd_dir *d, const char *tag, char *const argv[], const gwd_spawn_opts *opts);
/* gatewayd --config CONFIG [extra args...] (extra NULL-terminated, may be NULL). */
int gwd_start(gwd_proc *p, const gwd_dir *d, const char *config, const gwd_spawn_opts *opts);
/* Writes `text` to DIR/gateway.conf, starts gatewayd on it and waits for
 * "ready" (fails the test if it does not come). */
void gwd_start_conf(gwd_proc *p, const gwd_dir *d, const char *text, const gwd_spawn_opts *opts);
/* SIGTERM and the exit code (bounded; -1 on timeout). */
int gwd_stop(gwd_proc *p);
/* Runs gatewayd with args to completion (bounded) and returns the exit code,
 * or -1 if it did not exit normally in time. */
int gwd_run(const gwd_dir *d, const char *tag, char *const args[], gwd_proc *p);

/* Waits for exit; returns the exit code, 128+signal, or -1 on timeout. */
int gwd_wait_exit(gwd_proc *p, int timeout_ms);
/* 1 if the process is still running. */
int gwd_alive(gwd_proc *p);
/* Sends sig (if still running). */
void gwd_signal(gwd_proc *p, int sig);
/* Teardown: SIGKILL if still running and reap. */
void gwd_kill(gwd_proc *p);

/* The captured stderr (or stdout) as a malloc'ed NUL-terminated string. */
char *gwd_read_err(const gwd_proc *p);
char *gwd_read_out(const gwd_proc *p);
/* Waits until the captured stderr contains `needle` at least `count` times.
 * 1 if so. */
int gwd_log_wait(const gwd_proc *p, const char *needle, int count, int timeout_ms);
int gwd_log_count(const gwd_proc *p, const char *needle);
/* Waits for "<6>ready: " in stderr (and the daemon still alive). 1 if so. */
int gwd_wait_ready(gwd_proc *p);

/* Open file descriptors of a process (entries of /proc/PID/fd), or -1. */
int gwd_proc_fd_count(pid_t pid);
/* VmRSS of a process in KiB (from /proc/PID/status), or -1. */
long gwd_proc_rss_kb(pid_t pid);
/* Waits until the process has exactly `count` fds. Returns the last count seen. */
int gwd_wait_fd_count(pid_t pid, int count, int timeout_ms);

/* ---- sd_notify receiver ---- */

typedef struct gwd_notify {
  int fd;
  char path[300];
  char env[320];   /* "NOTIFY_SOCKET=path" */
  char log[65536]; /* every datagram, each followed by "\n--\n" */
  size_t log_len;
  int datagrams;
} gwd_notify;

void gwd_notify_open(gwd_notify *n, const gwd_dir *d);
void gwd_notify_close(gwd_notify *n);
/* Receives datagrams until one has a line equal to `line` (or starting with
 * it, when line ends with '='), counting from the start of the test: the
 * count-th such line overall. 1 if seen before the timeout. */
int gwd_notify_wait(gwd_notify *n, const char *line, int count, int timeout_ms);
/* How many received lines match (same rule) so far, without waiting. */
int gwd_notify_count(gwd_notify *n, const char *line);
/* Drains what is queued now (non-blocking). */
void gwd_notify_poll(gwd_notify *n);
/* Index (in datagrams) of the first datagram with the count-th match, or -1. */
int gwd_notify_index(gwd_notify *n, const char *line, int count);

/* ---- data patterns ---- */

/* Byte `i` of the stream with `seed`. Not periodic over small spans. */
unsigned char gwd_pattern(uint64_t i, unsigned seed);
void gwd_fill(unsigned char *buf, size_t len, uint64_t offset, unsigned seed);

typedef struct gwd_rx {
  uint64_t bytes;
  uint64_t fnv;           /* FNV-1a 64 of everything received */
  uint64_t mismatches;    /* bytes differing from the expected pattern */
  int64_t first_mismatch; /* offset, or -1 */
  int eof;                /* 1: clean EOF, 0: timeout, -1: error */
  int err;                /* errno on error */
} gwd_rx;

uint64_t gwd_fnv_pattern(uint64_t len, unsigned seed);
/* Reads until EOF (or the deadline) checking against pattern(seed);
 * seed < 0 skips the pattern check. */
void gwd_recv_stream(int fd, int seed, int timeout_ms, gwd_rx *rx);
/* The same, reading at most `chunk` bytes per read with delay_us after each
 * (a slow reader). */
void gwd_recv_stream_slow(int fd, int seed, int timeout_ms, size_t chunk, unsigned delay_us, gwd_rx *rx);
/* Sends len pattern bytes in chunks of `chunk` (0: 64 KiB) with delay_us
 * between chunks; shut_wr: shutdown(SHUT_WR) at the end. Returns 0 or -1
 * (error or deadline). */
int gwd_send_stream(int fd, uint64_t len, unsigned seed, size_t chunk, unsigned delay_us, int shut_wr, int timeout_ms);

/* Sends a stream on a thread (for full-duplex transfers). */
typedef struct gwd_sender {
  pthread_t th;
  int fd;
  uint64_t len;
  unsigned seed;
  size_t chunk;
  unsigned delay_us;
  int shut_wr;
  int timeout_ms;
  int rc;
} gwd_sender;
void gwd_sender_start(gwd_sender *s, int fd, uint64_t len, unsigned seed, int shut_wr);
int gwd_sender_join(gwd_sender *s);

/* ---- local backend servers (one thread per connection) ---- */

typedef enum gwd_backend_mode {
  GWD_BACKEND_ECHO,  /* sends back what it reads; EOF -> shutdown(SHUT_WR) */
  GWD_BACKEND_STREAM /* sends send_len pattern bytes (seed send_seed) while it
                        reads to EOF checking pattern recv_seed; then sends
                        `reply` (if set) and closes */
} gwd_backend_mode;

#define GWD_BACKEND_MAX_CONNS 16

typedef struct gwd_backend {
  gwd_backend_mode mode;
  /* GWD_BACKEND_STREAM */
  uint64_t send_len;
  unsigned send_seed;
  int recv_seed;          /* < 0: no pattern check */
  size_t send_chunk;      /* 0: 64 KiB */
  unsigned send_delay_us; /* between chunks */
  int shut_after_send;    /* shutdown(SHUT_WR) once sent (else after reply) */
  const char *reply;      /* sent after the EOF from the peer, then close */
  size_t recv_chunk;      /* slow reader: bytes per read (0: 64 KiB) */
  unsigned recv_delay_us; /* slow reader: pause after each read */

  int lfd;
  int family;
  int port;       /* tcp */
  char path[300]; /* unix */
  pthread_t th;
  int stop; /* set by gwd_backend_stop from the test thread: __atomic_* only */
  pthread_mutex_t mu;
  int accepted;
  int finished;
  gwd_rx rx[GWD_BACKEND_MAX_CONNS]; /* per connection, in accept order */
  int send_rc[GWD_BACKEND_MAX_CONNS];
  pthread_t conn_th[GWD_BACKEND_MAX_CONNS];
  int conn_fd[GWD_BACKEND_MAX_CONNS];
} gwd_backend;

/* Fill the mode fields first (gwd_backend b = {.mode = ...}); then start on a
 * TCP port of 127.0.0.1 (b->port) or on DIR/name as a Unix socket (b->path).
 * Returns 0 or -1. */
int gwd_backend_tcp(gwd_backend *b);
int gwd_backend_unix(gwd_backend *b, const gwd_dir *d, const char *name);
/* Waits until `n` connections have finished (EOF seen and handled). 1 if so. */
int gwd_backend_wait_finished(gwd_backend *b, int n, int timeout_ms);
int gwd_backend_accepted(gwd_backend *b);
/* Stops accepting, joins every thread, closes everything. */
void gwd_backend_stop(gwd_backend *b);

/* ---- per-test fixture (cmocka setup/teardown) ---- */

/* What the suites share per test: a temp dir, the daemon process, an optional
 * backend and an optional NOTIFY_SOCKET receiver, all cleaned up at teardown. */
typedef struct gwd_fixture {
  gwd_dir dir;
  gwd_proc proc;       /* pid -1 until started; killed at teardown */
  gwd_backend backend; /* stopped at teardown if backend_running */
  int backend_running;
  gwd_notify notify; /* open with gwd_setup_notify; closed at teardown */
  char conf[512];    /* a config path, for suites that keep one */
} gwd_fixture;

int gwd_setup(void **state);
/* gwd_setup plus a NOTIFY_SOCKET receiver in the test's dir. */
int gwd_setup_notify(void **state);
int gwd_teardown(void **state);
/* A cmocka test with the fixture as its state (the test keeps its own name). */
#define GWD_TEST(t) cmocka_unit_test_setup_teardown(t, gwd_setup, gwd_teardown)

/* ---- misc ---- */

/* A listening TCP socket on 127.0.0.1:port (port 0: any). */
int gwd_listen_tcp(int port);
/* Connects to 127.0.0.1:port with retries until the deadline (the daemon may
 * still be starting). -1 on timeout. */
int gwd_connect_retry(int port, int timeout_ms);
/* The same for any IPv4 or IPv6 literal host ("::1"). */
int gwd_connect_host(const char *host, int port, int timeout_ms);
/* 1 if this host has IPv6 loopback (::1 can be bound). */
int gwd_have_ipv6(void);
int gwd_connect_unix(const char *path);
/* Sets SO_RCVTIMEO/SO_SNDTIMEO so blocking calls cannot hang. */
void gwd_sock_timeouts(int fd, int ms);
/* One echo round trip on a connected socket: sends msg, expects it back. 1 if ok. */
int gwd_roundtrip(int fd, const char *msg);
void gwd_sleep_ms(int ms);

#endif
