/* SPDX-License-Identifier: MIT */
/* Shared helpers for the C API test suites; see helpers.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t gwt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void quiet_log(gw_log_level level, const char *line, void *ud) {
  (void)ud;
  if (getenv("GWT_LOG")) fprintf(stderr, "[gw %d] %s\n", (int)level, line);
}

gw_server_t *gwt_server_opts(gw_server_options *opts) {
  gw_server_t *srv = NULL;
  if (!opts->log) {
    opts->log = quiet_log;
    opts->log_level = GW_LOG_DEBUG;
  }
  int rc = gw_server_create(&srv, opts);
  if (rc != 0) {
    fprintf(stderr, "gw_server_create: %s\n", gw_strerror(rc));
    return NULL;
  }
  return srv;
}

gw_server_t *gwt_server(void) {
  gw_server_options o = GW_SERVER_OPTIONS_INIT;
  return gwt_server_opts(&o);
}

int gwt_dispatch(gw_server_t *srv, int timeout_ms) {
  struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
  int n = poll(&p, 1, timeout_ms);
  if (n <= 0) return 0;
  return gw_server_dispatch(srv);
}

int gwt_pump(gw_server_t *srv, int ms) {
  int64_t end = gwt_now_ms() + ms;
  int rc = 0;
  for (;;) {
    int64_t left = end - gwt_now_ms();
    if (left <= 0) break;
    rc = gwt_dispatch(srv, (int)left);
    if (rc != 0) break;
  }
  return rc;
}

int gwt_pump_until(gw_server_t *srv, int (*pred)(void *), void *arg, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    if (pred(arg)) return 1;
    int64_t left = end - gwt_now_ms();
    if (left <= 0) return 0;
    if (srv)
      (void)gwt_dispatch(srv, left > 10 ? 10 : (int)left);
    else
      usleep(1000);
  }
}

int gwt_pump_until_stopped(gw_server_t *srv, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    /* dispatch even without poll readiness: a stopped server may have
     * nothing left to signal */
    int rc = gw_server_dispatch(srv);
    if (rc == 1) return 1;
    if (rc < 0) return 0;
    int64_t left = end - gwt_now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {gw_server_fd(srv), POLLIN, 0};
    (void)poll(&p, 1, left > 10 ? 10 : (int)left);
  }
}

uint64_t gwt_stat(gw_server_t *srv, size_t off) {
  gw_stats st;
  memset(&st, 0, sizeof st);
  if (gw_server_stats(&st, srv) != 0) return (uint64_t)-1;
  uint64_t v;
  memcpy(&v, (const char *)&st + off, sizeof v);
  return v;
}

struct stat_pred {
  gw_server_t *srv;
  size_t off;
  uint64_t v;
};
static int stat_reached(void *a) {
  struct stat_pred *p = a;
  return gwt_stat(p->srv, p->off) >= p->v;
}

int gwt_pump_until_stat(gw_server_t *srv, size_t off, uint64_t v, int timeout_ms) {
  struct stat_pred p = {srv, off, v};
  return gwt_pump_until(srv, stat_reached, &p, timeout_ms);
}

struct stat_eq {
  gw_server_t *srv;
  size_t off;
  uint64_t v;
};
static int stat_equal(void *a) {
  struct stat_eq *p = a;
  return gwt_stat(p->srv, p->off) == p->v;
}

int gwt_wait_stat_eq(gw_server_t *srv, int pump, size_t off, uint64_t v, int timeout_ms) {
  struct stat_eq p = {srv, off, v};
  return gwt_pump_until(pump ? srv : NULL, stat_equal, &p, timeout_ms);
}

/* ---- loop thread ---- */

static void *loop_main(void *arg) {
  gwt_loop *l = arg;
  l->rc = gw_server_run(l->srv);
  if (l->destroy) gw_server_destroy(l->srv);
  __atomic_store_n(&l->running, 0, __ATOMIC_SEQ_CST);
  return NULL;
}

void gwt_loop_start(gwt_loop *l, gw_server_t *srv) {
  l->srv = srv;
  l->rc = -1;
  l->running = 1;
  l->destroy = 1;
  if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
    l->running = 0;
    abort();
  }
}

int gwt_loop_join(gwt_loop *l, int timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_timedjoin_np(l->thread, NULL, &ts) == 0 ? 0 : -1;
}

struct on_loop_call {
  void (*fn)(void *);
  void *arg;
  int done;
};

static void on_loop_trampoline(void *a) {
  struct on_loop_call *c = a;
  c->fn(c->arg);
  __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
}

int gwt_on_loop(gw_server_t *srv, void (*fn)(void *), void *arg) {
  /* static storage so that a timed-out call cannot write to a dead stack */
  struct on_loop_call *c = calloc(1, sizeof *c);
  c->fn = fn;
  c->arg = arg;
  if (gw_server_post(srv, on_loop_trampoline, c) != 0) {
    free(c);
    return -1;
  }
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (!__atomic_load_n(&c->done, __ATOMIC_SEQ_CST)) {
    if (gwt_now_ms() > end) return -1; /* leak c on purpose */
    usleep(500);
  }
  free(c);
  return 0;
}

/* ---- listeners ---- */

gw_listener_t *gwt_listen(gw_server_t *srv, const char *addr, gw_listener_options *opts) {
  gw_listener_t *l = NULL;
  opts->address = addr;
  int rc = gw_listener_create(&l, srv, opts);
  if (rc != 0) {
    fprintf(stderr, "gw_listener_create(%s): %s (%d)\n", addr, gw_strerror(rc), rc);
    return NULL;
  }
  return l;
}

/* ---- clients ---- */

static int fill_addr(struct sockaddr_storage *ss, socklen_t *len, const char *host, int port) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = sizeof *a4;
    return AF_INET;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = sizeof *a6;
    return AF_INET6;
  }
  return -1;
}

static int connect_impl(const char *host, int port, const char *bind_addr, int rcvbuf) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fam = fill_addr(&ss, &len, host, port);
  if (fam < 0) return -1;
  int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  /* before connect(): the window scale is fixed by the handshake, and a
   * buffer shrunk afterwards makes the kernel drop data it advertised room
   * for (stalls with retransmission backoff) */
  if (rcvbuf > 0) gwt_set_rcvbuf(fd, rcvbuf);
  if (bind_addr) {
    struct sockaddr_storage bs;
    socklen_t blen;
    if (fill_addr(&bs, &blen, bind_addr, 0) != fam || bind(fd, (struct sockaddr *)&bs, blen) != 0) {
      close(fd);
      return -1;
    }
  }
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int gwt_connect_from(const char *host, int port, const char *bind_addr) {
  return connect_impl(host, port, bind_addr, 0);
}

int gwt_connect(const char *host, int port) { return connect_impl(host, port, NULL, 0); }

int gwt_connect_small(const char *host, int port, int rcvbuf) { return connect_impl(host, port, NULL, rcvbuf); }

int gwt_connect_pump(gw_server_t *srv, const char *host, int port) {
  uint64_t before = gwt_stat(srv, GWT_STAT(accepted)) + gwt_stat(srv, GWT_STAT(refused));
  int fd = gwt_connect(host, port);
  if (fd < 0) return -1;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (gwt_stat(srv, GWT_STAT(accepted)) + gwt_stat(srv, GWT_STAT(refused)) <= before) {
    if (gwt_now_ms() > end) break;
    (void)gwt_dispatch(srv, 10);
  }
  return fd;
}

int gwt_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void gwt_set_rcvbuf(int fd, int bytes) { (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes); }

void gwt_close_reset(int fd) {
  struct linger lg = {1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
}

int gwt_tcp_socket(int do_listen) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || (do_listen && listen(s, 16) != 0)) {
    perror("gwt_tcp_socket"); /* the test cannot go on without it */
    abort();
  }
  return s;
}

int gwt_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Waits until fd has `events` (pumping srv meanwhile). 1 ready, 0 timeout. */
static int wait_fd(gw_server_t *srv, int fd, short events, int64_t end) {
  for (;;) {
    int64_t left = end - gwt_now_ms();
    if (left < 0) left = 0;
    struct pollfd p[2] = {{fd, events, 0}, {srv ? gw_server_fd(srv) : -1, POLLIN, 0}};
    int n = poll(p, srv ? 2 : 1, (int)left);
    if (n < 0 && errno != EINTR) return 0;
    if (srv && n > 0 && (p[1].revents & POLLIN)) (void)gw_server_dispatch(srv);
    if (n > 0 && p[0].revents) return 1;
    if (left == 0) return 0;
  }
}

int gwt_write_all(gw_server_t *srv, int fd, const void *buf, size_t len) {
  const char *p = buf;
  int64_t end = gwt_now_ms() + GWT_TIMEOUT_MS;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | (srv ? MSG_DONTWAIT : 0));
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(srv, fd, POLLOUT, end)) return -1;
      continue;
    }
    return -1;
  }
  if (srv) (void)gwt_dispatch(srv, 0);
  return 0;
}

size_t gwt_read_exact(gw_server_t *srv, int fd, void *buf, size_t len, int timeout_ms) {
  char *p = buf;
  size_t got = 0;
  int64_t end = gwt_now_ms() + timeout_ms;
  while (got < len) {
    if (!wait_fd(srv, fd, POLLIN, end)) break;
    ssize_t n = recv(fd, p + got, len - got, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    break; /* EOF or error */
  }
  return got;
}

size_t gwt_read_fd_exact(gw_server_t *srv, int fd, void *buf, size_t len, int timeout_ms) {
  char *p = buf;
  size_t got = 0;
  int64_t end = gwt_now_ms() + timeout_ms;
  while (got < len) {
    if (!wait_fd(srv, fd, POLLIN, end)) break;
    ssize_t n = read(fd, p + got, len - got);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    break; /* EOF or error (EIO: a pty whose other side is closed) */
  }
  return got;
}

int gwt_read_line(gw_server_t *srv, int fd, char *buf, size_t cap, int timeout_ms) {
  size_t got = 0;
  int64_t end = gwt_now_ms() + timeout_ms;
  while (got + 1 < cap) {
    /* byte by byte: never read past the line */
    if (!wait_fd(srv, fd, POLLIN, end)) return -1;
    ssize_t n = recv(fd, buf + got, 1, MSG_DONTWAIT);
    if (n == 1) {
      if (buf[got] == '\n') {
        buf[got] = '\0';
        return (int)got;
      }
      got++;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return -1;
  }
  return -1;
}

int gwt_wait_eof(gw_server_t *srv, int fd, int timeout_ms, size_t *discarded) {
  char buf[65536];
  size_t total = 0;
  int64_t end = gwt_now_ms() + timeout_ms;
  int rc = -1;
  for (;;) {
    if (!wait_fd(srv, fd, POLLIN, end)) break;
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      total += (size_t)n;
      continue;
    }
    if (n == 0) {
      rc = 0;
      break;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    rc = errno == ECONNRESET ? 1 : -1;
    break;
  }
  if (discarded) *discarded = total;
  return rc;
}

int gwt_quiet(gw_server_t *srv, int fd, int ms) {
  int64_t end = gwt_now_ms() + ms;
  return !wait_fd(srv, fd, POLLIN, end);
}

size_t gwt_encode(gw_framing framing, const void *data, size_t len, unsigned char *out, size_t cap) {
  size_t n = 0;
  switch (framing) {
    case GW_FRAMING_U16BE:
      out[0] = (unsigned char)(len >> 8);
      out[1] = (unsigned char)len;
      n = 2;
      break;
    case GW_FRAMING_U32BE:
      out[0] = (unsigned char)(len >> 24);
      out[1] = (unsigned char)(len >> 16);
      out[2] = (unsigned char)(len >> 8);
      out[3] = (unsigned char)len;
      n = 4;
      break;
    default: break;
  }
  if (n + len + 1 > cap) abort();
  memcpy(out + n, data, len);
  n += len;
  if (framing == GW_FRAMING_LINE) out[n++] = '\n';
  return n;
}

int gwt_send_frame(gw_server_t *srv, int fd, gw_framing framing, const void *data, size_t len) {
  unsigned char *buf = malloc(len + 8);
  size_t n = gwt_encode(framing, data, len, buf, len + 8);
  int rc = gwt_write_all(srv, fd, buf, n);
  free(buf);
  return rc;
}

long gwt_read_frame(gw_server_t *srv, int fd, gw_framing framing, void *buf, size_t cap, int timeout_ms) {
  unsigned char hdr[4];
  size_t len;
  switch (framing) {
    case GW_FRAMING_LINE: return gwt_read_line(srv, fd, buf, cap, timeout_ms);
    case GW_FRAMING_U16BE:
      if (gwt_read_exact(srv, fd, hdr, 2, timeout_ms) != 2) return -1;
      len = ((size_t)hdr[0] << 8) | hdr[1];
      break;
    case GW_FRAMING_U32BE:
      if (gwt_read_exact(srv, fd, hdr, 4, timeout_ms) != 4) return -1;
      len = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | hdr[3];
      break;
    default: return -1;
  }
  if (len > cap) return -1;
  if (gwt_read_exact(srv, fd, buf, len, timeout_ms) != len) return -1;
  return (long)len;
}

/* ---- recorder ---- */

void gwt_rec_init(gwt_rec *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
}

void gwt_rec_free(gwt_rec *r) {
  for (int i = 0; i < r->nmsgs; i++) free(r->msg_data[i]);
  r->nmsgs = 0;
  pthread_mutex_destroy(&r->mu);
}

void gwt_rec_attach(gwt_rec *r, gw_listener_options *o) {
  o->on_open = gwt_rec_on_open;
  o->on_message = gwt_rec_on_message;
  o->on_close = gwt_rec_on_close;
  o->on_drain = gwt_rec_on_drain;
  o->user_data = r;
}

void gwt_echo_opts(gw_listener_options *o, gwt_rec *r, gw_framing framing) {
  gw_listener_options d = GW_LISTENER_OPTIONS_INIT;
  *o = d;
  o->framing = framing;
  gwt_rec_attach(r, o);
  r->echo = 1;
}

static int find_open(gwt_rec *r, gw_conn_t *c) {
  for (int i = 0; i < r->nopen_slots; i++)
    if (r->open[i] == c) return i;
  return -1;
}

void gwt_rec_on_open(gw_conn_t *c, void *ud) {
  gwt_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  if (r->nopen_slots < GWT_MAX_CONNS) {
    r->open[r->nopen_slots] = c;
    r->open_ids[r->nopen_slots] = gw_conn_id(c);
    r->nopen_slots++;
  }
  r->opens++;
  pthread_mutex_unlock(&r->mu);
}

void gwt_rec_on_message(gw_conn_t *c, const void *d, size_t n, void *ud) {
  gwt_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  if (find_open(r, c) < 0) r->order_error++;
  r->messages++;
  r->msg_bytes += n;
  if (r->nmsgs < GWT_MAX_MSGS) {
    r->msg_data[r->nmsgs] = malloc(n ? n : 1);
    memcpy(r->msg_data[r->nmsgs], d, n);
    r->msg_len[r->nmsgs] = n;
    r->nmsgs++;
  }
  int echo = r->echo;
  pthread_mutex_unlock(&r->mu);
  if (echo) {
    int rc = gw_conn_send_message(c, d, n);
    pthread_mutex_lock(&r->mu);
    r->last_send_rc = rc;
    if (rc != 0) r->send_failures++;
    pthread_mutex_unlock(&r->mu);
  }
}

void gwt_rec_on_close(gw_conn_t *c, gw_close_reason why, void *ud) {
  gwt_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  int i = find_open(r, c);
  if (i < 0)
    r->order_error++;
  else
    r->open[i] = NULL;
  r->closes++;
  if ((int)why >= 0 && (int)why < 8) r->reasons[why]++;
  if (r->nclosed < GWT_MAX_CONNS) {
    r->closed_ids[r->nclosed] = gw_conn_id(c);
    r->closed_reason[r->nclosed] = (int)why;
    r->nclosed++;
  }
  pthread_mutex_unlock(&r->mu);
}

void gwt_rec_on_drain(gw_conn_t *c, void *ud) {
  gwt_rec *r = ud;
  (void)c;
  pthread_mutex_lock(&r->mu);
  r->drains++;
  pthread_mutex_unlock(&r->mu);
}

int gwt_rec_get(gwt_rec *r, const int *field) {
  pthread_mutex_lock(&r->mu);
  int v = *field;
  pthread_mutex_unlock(&r->mu);
  return v;
}

int gwt_rec_reason(gwt_rec *r, gw_close_reason why) { return gwt_rec_get(r, &r->reasons[why]); }

gw_conn_t *gwt_rec_conn(gwt_rec *r, int i) {
  pthread_mutex_lock(&r->mu);
  gw_conn_t *c = i < r->nopen_slots ? r->open[i] : NULL;
  pthread_mutex_unlock(&r->mu);
  return c;
}

int gwt_rec_reason_of(gwt_rec *r, uint64_t id) {
  int why = 0;
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < r->nclosed; i++)
    if (r->closed_ids[i] == id) why = r->closed_reason[i];
  pthread_mutex_unlock(&r->mu);
  return why;
}

struct rec_pred {
  gwt_rec *r;
  const int *field;
  int v;
};
static int rec_reached(void *a) {
  struct rec_pred *p = a;
  return gwt_rec_get(p->r, p->field) >= p->v;
}

int gwt_rec_wait(gw_server_t *srv, gwt_rec *r, const int *field, int v, int timeout_ms) {
  struct rec_pred p = {r, field, v};
  return gwt_pump_until(srv, rec_reached, &p, timeout_ms);
}

void gwt_log_fn(gw_log_level level, const char *line, void *user_data) {
  gwt_log *l = user_data;
  if (getenv("GWT_LOG")) fprintf(stderr, "[gw %d] %s\n", (int)level, line);
  pthread_mutex_lock(&l->mu);
  l->lines++;
  if (l->needle && strcasestr(line, l->needle)) {
    l->matches++;
    l->match_level = (int)level;
  }
  pthread_mutex_unlock(&l->mu);
}

int gwt_setup(void **state) {
  gwt_fixture *f = calloc(1, sizeof *f);
  if (!f) return -1;
  gwt_rec_init(&f->rec);
  f->srv = gwt_server();
  *state = f;
  return f->srv ? 0 : -1;
}

int gwt_teardown(void **state) {
  gwt_fixture *f = *state;
  if (f->srv) gw_server_destroy(f->srv);
  gwt_rec_free(&f->rec);
  free(f);
  return 0;
}
