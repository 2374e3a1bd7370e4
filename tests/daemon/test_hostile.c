/* SPDX-License-Identifier: MIT */
/* Hostile load against the real gatewayd: connection floods against the
 * client limits, a per-address limit while other addresses are served, an fd
 * limit far below the load, a client that never reads, per-frame deadlines,
 * lying and oversized frames, and clients outside the allow list. Each case
 * counts the daemon's fds (/proc/PID/fd) and resident memory (VmRSS) before
 * and after, and checks that the daemon still answers afterwards. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The daemon logs a refusal after it has closed the socket: tests wait for
 * log lines (gwd_log_wait) instead of counting them at once. */

/* Resident memory may grow this much over a case (allocator caches, the log
 * buffer); a leak per connection or an unbounded queue grows far more. A
 * wrapper such as valgrind has its own, larger, overhead. */
static long rss_slack_kb(void) { return gwd_wrapped() ? 65536 : 8192; }

typedef struct figures {
  int fds;
  long rss_kb;
} figures;

static figures measure(gwd_fixture *f) {
  figures m = {gwd_proc_fd_count(f->proc.pid), gwd_proc_rss_kb(f->proc.pid)};
  assert_true(m.fds > 0 && m.rss_kb > 0);
  return m;
}

/* After a case: every client fd is gone again (waiting for the daemon to
 * finish its closes), memory stayed bounded, and a new client is served. */
static void check_recovered(gwd_fixture *f, const char *name, figures before, int port, const char *probe) {
  int fds = gwd_wait_fd_count(f->proc.pid, before.fds, GWD_TIMEOUT_MS);
  long rss = gwd_proc_rss_kb(f->proc.pid);
  printf("hostile %s: fds %d -> %d, VmRSS %ld -> %ld kB\n", name, before.fds, fds, before.rss_kb, rss);
  assert_true(gwd_alive(&f->proc));
  assert_int_equal(fds, before.fds);
  assert_true(rss <= before.rss_kb + rss_slack_kb());
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  assert_true(gwd_roundtrip(c, probe));
  close(c);
  assert_int_equal(gwd_wait_fd_count(f->proc.pid, before.fds, GWD_TIMEOUT_MS), before.fds);
}

static void raise_nofile(rlim_t want) {
  struct rlimit files;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &files), 0);
  if (files.rlim_cur >= want) return;
  files.rlim_cur = files.rlim_max < want ? files.rlim_max : want;
  (void)setrlimit(RLIMIT_NOFILE, &files);
}

/* A non-blocking connect to 127.0.0.1:port from `from` (NULL: any). The
 * connection completes in the kernel's backlog whether or not the daemon
 * accepts it. Returns the fd or -1. */
static int connect_nb(int port, const char *from) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  if (from) {
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, from, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      close(fd);
      return -1;
    }
  }
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

enum { PENDING = 0, SERVED = 1, REFUSED = 2 };

/* Sends one byte on each of n connecting sockets and sorts them by what comes
 * back: the byte (served), or EOF or a reset without it (refused), within
 * the deadline. Returns the slowest answer in ms through *slowest. */
static void classify(int *fds, int *state, int n, int timeout_ms, int *slowest) {
  struct pollfd *p = calloc((size_t)n, sizeof *p);
  int *sent = calloc((size_t)n, sizeof *sent);
  assert_true(p && sent);
  int64_t start = gwt_now_ms(), end = start + timeout_ms;
  int left = n;
  for (int i = 0; i < n; ++i) state[i] = PENDING;
  while (left > 0 && gwt_now_ms() < end) {
    for (int i = 0; i < n; ++i) {
      p[i].fd = state[i] == PENDING ? fds[i] : -1;
      p[i].events = sent[i] ? POLLIN : POLLOUT;
      p[i].revents = 0;
    }
    if (poll(p, (nfds_t)n, 20) < 0 && errno != EINTR) fail_msg("poll: %s", strerror(errno));
    for (int i = 0; i < n; ++i) {
      if (state[i] != PENDING || !p[i].revents) continue;
      if (!sent[i]) {
        ssize_t w = send(fds[i], "x", 1, MSG_NOSIGNAL);
        if (w == 1) {
          sent[i] = 1;
          continue;
        }
        if (errno == EAGAIN) continue;
        state[i] = REFUSED; /* reset before the byte went out */
      } else {
        char c;
        ssize_t r = recv(fds[i], &c, 1, 0);
        if (r == 1 && c == 'x')
          state[i] = SERVED;
        else if (r == 0 || (r < 0 && errno != EAGAIN))
          state[i] = REFUSED;
        else
          continue;
      }
      --left;
      int took = (int)(gwt_now_ms() - start);
      if (slowest && took > *slowest) *slowest = took;
    }
  }
  free(p);
  free(sent);
}

static int count_state(const int *state, int n, int which) {
  int k = 0;
  for (int i = 0; i < n; ++i) k += state[i] == which;
  return k;
}

static int start_echo_route(gwd_fixture *f, const char *extra) {
  int port = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n\n"
           "[[route]]\nname = \"h\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\n%s",
           port, extra);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  return port;
}

/* 5000 connections against max_clients = 100: 100 are served and held, the
 * other 4900 come in 28 waves of 175 and are all refused promptly (closed
 * without an answer); none is ever served while the 100 are open. */
static void test_flood_max_clients(void **state) {
  gwd_fixture *f = *state;
  raise_nofile(4096);
  int port = start_echo_route(f, "max_clients = 100\nmax_clients_per_ip = 0\nbacklog = 1024\n");
  figures before = measure(f);
  int64_t start = gwt_now_ms();
  int held[100], held_state[100], slowest = 0;
  for (int i = 0; i < 100; ++i) assert_true((held[i] = connect_nb(port, NULL)) >= 0);
  classify(held, held_state, 100, GWD_TIMEOUT_MS, &slowest);
  assert_int_equal(count_state(held_state, 100, SERVED), 100);
  figures full = measure(f);
  int served = 0, refused = 0, pending = 0;
  slowest = 0;
  for (int wave = 0; wave < 4900 / 175; ++wave) {
    int fds[175], st[175];
    for (int i = 0; i < 175; ++i) assert_true((fds[i] = connect_nb(port, NULL)) >= 0);
    classify(fds, st, 175, GWD_TIMEOUT_MS, &slowest);
    served += count_state(st, 175, SERVED);
    refused += count_state(st, 175, REFUSED);
    pending += count_state(st, 175, PENDING);
    for (int i = 0; i < 175; ++i) close(fds[i]);
    if (served || pending) break;
  }
  int64_t took = gwt_now_ms() - start;
  printf(
      "hostile flood: 100 served and held (daemon fds %d), %d refused, %d served beyond the limit, %d unanswered; "
      "slowest refusal %d ms; %lld ms in all\n",
      full.fds, refused, served, pending, slowest, (long long)took);
  assert_int_equal(served, 0);
  assert_int_equal(pending, 0);
  assert_int_equal(refused, 4900);
  assert_true(gwd_log_wait(&f->proc, "max_clients is reached", 4900, GWD_TIMEOUT_MS));
  /* The held clients are still served after the flood. */
  for (int i = 0; i < 100; ++i) {
    gwd_sock_timeouts(held[i], GWD_TIMEOUT_MS);
    int flags = fcntl(held[i], F_GETFL);
    fcntl(held[i], F_SETFL, flags & ~O_NONBLOCK);
    assert_true(gwd_roundtrip(held[i], "still here"));
    close(held[i]);
  }
  check_recovered(f, "flood", before, port, "after the flood");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* One address at its max_clients_per_ip is refused while two other
 * addresses are served. */
static void test_per_ip_limit(void **state) {
  gwd_fixture *f = *state;
  int port = start_echo_route(f, "max_clients = 100\nmax_clients_per_ip = 3\n");
  figures before = measure(f);
  const char *from[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};
  int fds[3][3];
  for (int a = 0; a < 3; ++a)
    for (int i = 0; i < 3; ++i) {
      fds[a][i] = gwt_connect_from("127.0.0.1", port, from[a]);
      assert_true(fds[a][i] >= 0);
      gwd_sock_timeouts(fds[a][i], GWD_TIMEOUT_MS);
      if (a == 0) assert_true(gwd_roundtrip(fds[a][i], "one"));
    }
  /* 127.0.0.1 is full: its next clients are refused ... */
  int extra[5], st[5];
  for (int i = 0; i < 5; ++i) assert_true((extra[i] = connect_nb(port, "127.0.0.1")) >= 0);
  classify(extra, st, 5, GWD_TIMEOUT_MS, NULL);
  assert_int_equal(count_state(st, 5, REFUSED), 5);
  /* ... while 127.0.0.2 and 127.0.0.3 are served, each up to its own 3. */
  for (int a = 1; a < 3; ++a)
    for (int i = 0; i < 3; ++i) assert_true(gwd_roundtrip(fds[a][i], "other address"));
  int over = connect_nb(port, "127.0.0.2"), over_state;
  classify(&over, &over_state, 1, GWD_TIMEOUT_MS, NULL);
  assert_int_equal(over_state, REFUSED);
  close(over);
  assert_true(gwd_log_wait(&f->proc, "max_clients_per_ip is reached for this address", 6, GWD_TIMEOUT_MS));
  for (int i = 0; i < 5; ++i) close(extra[i]);
  for (int a = 0; a < 3; ++a)
    for (int i = 0; i < 3; ++i) {
      assert_true(gwd_roundtrip(fds[a][i], "after"));
      close(fds[a][i]);
    }
  printf("hostile per-ip: 5+1 refused at the limit, 3+3+3 served from three addresses\n");
  check_recovered(f, "per-ip", before, port, "after the per-ip limit");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* gatewayd with RLIMIT_NOFILE 64 and 200 clients at once: it serves what its
 * fds allow, sheds the rest at once (closed, not left in the backlog), keeps
 * serving those it has, and serves new clients once the load is gone. */
/* 1 if the gatewayd binary contains UBSan's vptr check. */
static int gatewayd_has_ubsan_vptr(void) {
  FILE *bin = fopen(gwd_binary(), "rb");
  if (!bin) return 0;
  static const char needle[] = "__ubsan_handle_dynamic_type_cache_miss";
  static char buf[1 << 16];
  size_t keep = 0, n;
  int found = 0;
  while (!found && (n = fread(buf + keep, 1, sizeof buf - keep, bin)) > 0) {
    n += keep;
    found = memmem(buf, n, needle, sizeof needle - 1) != NULL;
    keep = sizeof needle - 1;
    memmove(buf, buf + n - keep, keep);
  }
  fclose(bin);
  return found;
}

static void test_fd_limit(void **state) {
  gwd_fixture *f = *state;
  int port = gwd_port();
  char conf[512];
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n\n"
           "[[route]]\nname = \"h\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\n"
           "max_clients = 1000\nmax_clients_per_ip = 0\nbacklog = 512\n",
           port);
  gwd_spawn_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.rlimit_nofile = 64;
  /* valgrind keeps fds of its own at the top of the limit: give it room. */
  if (gwd_wrapped()) opts.rlimit_nofile = 64 + 32;
  gwd_start_conf(&f->proc, &f->dir, conf, &opts);
  /* Measured before any client, as in the other cases: the warm-up
   * client's fd may still be closing when the flood starts. */
  figures before = measure(f);
  if (gatewayd_has_ubsan_vptr()) {
    /* UBSan's vptr check verifies a type it has not seen at a call site
     * by writing the object's memory into a pipe() of its own: with every
     * fd in use that pipe fails and it reports a bogus "invalid vptr" on
     * a live Connection (ASan shows it allocated, never freed) and aborts.
     * One client served first puts Connection's type in UBSan's cache, so
     * the flood below runs the same code, checked, without that pipe. */
    int warm = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(warm >= 0);
    assert_true(gwd_roundtrip(warm, "warm"));
    close(warm);
  }
  int fds[200], st[200];
  for (int i = 0; i < 200; ++i) assert_true((fds[i] = connect_nb(port, NULL)) >= 0);
  classify(fds, st, 200, gwd_scaled_ms(10000), NULL);
  int served = count_state(st, 200, SERVED), refused = count_state(st, 200, REFUSED),
      pending = count_state(st, 200, PENDING);
  int at_limit = gwd_proc_fd_count(f->proc.pid);
  printf("hostile nofile 64: 200 clients: %d served, %d shed, %d unanswered; daemon fds %d at the peak\n", served,
         refused, pending, at_limit);
  assert_int_equal(pending, 0);
  assert_true(served > 0 && served < opts.rlimit_nofile);
  assert_int_equal(served + refused, 200);
  assert_true(gwd_log_wait(&f->proc, "out of file descriptors", 1, GWD_TIMEOUT_MS));
  /* Those it took are still served. */
  for (int i = 0; i < 200; ++i) {
    if (st[i] == SERVED) {
      int flags = fcntl(fds[i], F_GETFL);
      fcntl(fds[i], F_SETFL, flags & ~O_NONBLOCK);
      gwd_sock_timeouts(fds[i], GWD_TIMEOUT_MS);
      assert_true(gwd_roundtrip(fds[i], "kept"));
    }
    close(fds[i]);
  }
  check_recovered(f, "nofile", before, port, "after the fd limit");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* Sends as fast as the daemon takes it, never reading, until nothing more
 * goes for 500 ms (or 64 MiB, or the deadline); returns the bytes sent and
 * the daemon's peak VmRSS in *peak_kb. */
static uint64_t push_until_blocked(gwd_fixture *f, int fd, long *peak_kb) {
  static unsigned char chunk[65536];
  memset(chunk, 'z', sizeof chunk);
  uint64_t total = 0;
  int64_t last_progress = gwt_now_ms(), end = last_progress + gwd_scaled_ms(20000);
  *peak_kb = 0;
  while (total < (64u << 20) && gwt_now_ms() < end) {
    ssize_t w = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      total += (uint64_t)w;
      last_progress = gwt_now_ms();
    } else if (w < 0 && errno != EAGAIN) {
      break; /* closed by the daemon */
    } else {
      long rss = gwd_proc_rss_kb(f->proc.pid);
      if (rss > *peak_kb) *peak_kb = rss;
      if (gwt_now_ms() - last_progress > 500) break;
      struct pollfd p = {fd, POLLOUT, 0};
      (void)poll(&p, 1, 20);
    }
  }
  return total;
}

/* A client that sends without ever reading, on an echo route and on a route
 * to a tcp echo backend: the daemon's memory stays bounded (backpressure
 * stops it reading once max_output is queued), and the idle timeout closes
 * the stalled client in the end. */
static void never_reader(gwd_fixture *f, int forward) {
  int port = gwd_port();
  char conf[1024], backend[128] = "echo";
  if (forward) {
    f->backend.mode = GWD_BACKEND_ECHO;
    assert_int_equal(gwd_backend_tcp(&f->backend), 0);
    f->backend_running = 1;
    snprintf(backend, sizeof backend, "tcp://127.0.0.1:%d", f->backend.port);
  }
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n\n"
           "[[route]]\nname = \"h\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"%s\"\nidle_timeout = \"1s\"\n",
           port, backend);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  figures before = measure(f);
  int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(c >= 0);
  long peak = 0;
  uint64_t sent = push_until_blocked(f, c, &peak);
  printf("hostile never-reader (%s): %llu bytes taken before backpressure held, daemon VmRSS %ld -> peak %ld kB\n",
         forward ? "tcp backend" : "echo", (unsigned long long)sent, before.rss_kb, peak);
  /* Kernel buffers on both sides hold a few MiB; the daemon at most
   * max_output (1 MiB) per direction. Unbounded growth would take all. */
  assert_true(sent < (64u << 20));
  assert_true(peak <= before.rss_kb + rss_slack_kb());
  /* Stalled both ways, the client counts as idle and is closed. */
  assert_true(gwd_log_wait(&f->proc, ": idle for 1000 ms", 1, gwd_scaled_ms(10000)));
  size_t discarded = 0;
  int rc = gwt_wait_eof(NULL, c, gwd_scaled_ms(20000), &discarded);
  assert_true(rc == 0 || rc == 1);
  close(c);
  check_recovered(f, forward ? "never-reader-forward" : "never-reader-echo", before, port, "reads now");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

static void test_never_reader_echo(void **state) { never_reader(*state, 0); }

static void test_never_reader_forward(void **state) { never_reader(*state, 1); }

/* frame_timeout on a line route: a client trickling one byte every 200 ms
 * never completes its line and is closed, although it is never idle; a
 * client sending whole lines at the same pace stays. */
static void test_frame_timeout(void **state) {
  gwd_fixture *f = *state;
  int port = start_echo_route(f, "framing = \"line\"\nframe_timeout = \"500ms\"\nidle_timeout = \"60s\"\n");
  figures before = measure(f);
  int slow = gwd_connect_retry(port, GWD_TIMEOUT_MS), good = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(slow >= 0 && good >= 0);
  int64_t start = gwt_now_ms(), closed_after = -1;
  int bytes = 0;
  for (int i = 0; i < 50 && closed_after < 0; ++i) {
    if (send(slow, "a", 1, MSG_NOSIGNAL) == 1) ++bytes;
    assert_true(gwd_roundtrip(good, "whole line\n"));
    struct pollfd p = {slow, POLLIN, 0};
    if (poll(&p, 1, 200) == 1) {
      char buf[64];
      ssize_t r = recv(slow, buf, sizeof buf, 0);
      assert_true(r <= 0); /* an unfinished line is never echoed */
      closed_after = gwt_now_ms() - start;
    }
  }
  printf("hostile frame_timeout 500ms: a line trickled one byte per 200 ms closed after %lld ms (%d bytes)\n",
         (long long)closed_after, bytes);
  assert_true(closed_after >= 0);
  assert_true(gwd_log_wait(&f->proc, "frame not complete within frame_timeout", 1, GWD_TIMEOUT_MS));
  assert_true(gwd_roundtrip(good, "still served\n"));
  close(slow);
  close(good);
  check_recovered(f, "frame_timeout", before, port, "probe\n");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* Expects `fd` to be closed by the daemon without an answer. */
static void expect_closed(int fd) {
  size_t got = 0;
  int rc = gwt_wait_eof(NULL, fd, GWD_TIMEOUT_MS, &got);
  assert_true(rc == 0 || rc == 1);
  assert_int_equal(got, 0);
}

/* Lying length prefixes, a line longer than max_frame and a frame cut short
 * by EOF: each closes only its own client; a good client on every route is
 * served before and after. */
static void test_bad_frames(void **state) {
  gwd_fixture *f = *state;
  int p16 = gwd_port(), p32 = gwd_port(), pline = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n\n"
           "[[route]]\nname = \"u16\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\nframing = \"u16be\"\nmax_frame = "
           "100\n\n"
           "[[route]]\nname = \"u32\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\nframing = \"u32be\"\nmax_frame = "
           "100\n\n"
           "[[route]]\nname = \"line\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\nframing = \"line\"\nmax_frame = "
           "100\n",
           p16, p32, pline);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  figures before = measure(f);
  int g16 = gwd_connect_retry(p16, GWD_TIMEOUT_MS), g32 = gwd_connect_retry(p32, GWD_TIMEOUT_MS),
      gline = gwd_connect_retry(pline, GWD_TIMEOUT_MS);
  assert_true(g16 >= 0 && g32 >= 0 && gline >= 0);
  const char ok16[] = {0, 2, 'o', 'k', 0}, ok32[] = {0, 0, 0, 2, 'o', 'k', 0};
  unsigned char back[8];
  assert_int_equal(gwt_write_all(NULL, g16, ok16, 4), 0);
  assert_int_equal(gwt_read_exact(NULL, g16, back, 4, GWD_TIMEOUT_MS), 4);
  assert_memory_equal(back, ok16, 4);
  assert_int_equal(gwt_write_all(NULL, g32, ok32, 6), 0);
  assert_int_equal(gwt_read_exact(NULL, g32, back, 6, GWD_TIMEOUT_MS), 6);
  assert_memory_equal(back, ok32, 6);
  assert_true(gwd_roundtrip(gline, "good line\n"));

  /* u16be claiming 65535 bytes (max_frame 100): refused from the prefix. */
  int b = gwd_connect_retry(p16, GWD_TIMEOUT_MS);
  assert_int_equal(gwt_write_all(NULL, b,
                                 "\xff\xff"
                                 "abc",
                                 5),
                   0);
  expect_closed(b);
  close(b);
  /* u32be claiming 4 GiB. */
  b = gwd_connect_retry(p32, GWD_TIMEOUT_MS);
  assert_int_equal(gwt_write_all(NULL, b,
                                 "\xff\xff\xff\xff"
                                 "abc",
                                 7),
                   0);
  expect_closed(b);
  close(b);
  /* A line of 200 bytes on a route whose max_frame is 100. */
  b = gwd_connect_retry(pline, GWD_TIMEOUT_MS);
  char longline[201];
  memset(longline, 'L', 200);
  longline[200] = '\0';
  assert_int_equal(gwt_write_all(NULL, b, longline, 200), 0);
  expect_closed(b);
  close(b);
  /* A u16be frame that claims 50 bytes and ends after 10: no message. */
  b = gwd_connect_retry(p16, GWD_TIMEOUT_MS);
  assert_int_equal(gwt_write_all(NULL, b,
                                 "\x00\x32"
                                 "0123456789",
                                 12),
                   0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_closed(b);
  close(b);
  assert_true(gwd_log_wait(&f->proc, "frame larger than max_frame", 3, GWD_TIMEOUT_MS));
  assert_int_equal(gwd_log_count(&f->proc, "frame larger than max_frame"), 3);

  /* The good clients never noticed. */
  assert_int_equal(gwt_write_all(NULL, g16, ok16, 4), 0);
  assert_int_equal(gwt_read_exact(NULL, g16, back, 4, GWD_TIMEOUT_MS), 4);
  assert_memory_equal(back, ok16, 4);
  assert_int_equal(gwt_write_all(NULL, g32, ok32, 6), 0);
  assert_int_equal(gwt_read_exact(NULL, g32, back, 6, GWD_TIMEOUT_MS), 6);
  assert_memory_equal(back, ok32, 6);
  assert_true(gwd_roundtrip(gline, "good line again\n"));
  close(g16);
  close(g32);
  close(gline);
  printf("hostile frames: 3 oversized and 1 truncated frame closed their own clients only\n");
  check_recovered(f, "frames", before, pline, "probe\n");
  assert_int_equal(gwd_stop(&f->proc), 0);
}

/* A client outside `allow` is refused before anything reaches the backend:
 * the backend (the test's) never sees a connection for it, while an allowed
 * client right after is forwarded (the backend's first and only one). */
static void test_allow_refuses_before_backend(void **state) {
  gwd_fixture *f = *state;
  f->backend.mode = GWD_BACKEND_ECHO;
  assert_int_equal(gwd_backend_tcp(&f->backend), 0);
  f->backend_running = 1;
  int port = gwd_port();
  char conf[1024];
  snprintf(conf, sizeof conf,
           "[service]\nlog_level = \"info\"\n\n"
           "[[route]]\nname = \"h\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"tcp://127.0.0.1:%d\"\n"
           "allow = [\"127.0.0.2/32\", \"10.0.0.0/8\"]\n",
           port, f->backend.port);
  gwd_start_conf(&f->proc, &f->dir, conf, NULL);
  figures before = measure(f);
  for (int i = 0; i < 3; ++i) {
    int c = gwt_connect_from("127.0.0.1", port, i == 2 ? "127.0.0.3" : "127.0.0.1");
    assert_true(c >= 0);
    int peer = gwt_local_port(c);
    (void)send(c, "secret", 6, MSG_NOSIGNAL);
    expect_closed(c);
    close(c);
    char line[128];
    snprintf(line, sizeof line, "refused %s:%d: not in the allow list", i == 2 ? "127.0.0.3" : "127.0.0.1", peer);
    assert_true(gwd_log_wait(&f->proc, line, 1, GWD_TIMEOUT_MS));
  }
  assert_int_equal(gwd_backend_accepted(&f->backend), 0);
  int ok = gwt_connect_from("127.0.0.1", port, "127.0.0.2");
  assert_true(ok >= 0);
  gwd_sock_timeouts(ok, GWD_TIMEOUT_MS);
  assert_true(gwd_roundtrip(ok, "allowed"));
  close(ok);
  assert_true(gwd_backend_wait_finished(&f->backend, 1, GWD_TIMEOUT_MS));
  /* The only connection the backend ever had is the allowed client's. */
  assert_int_equal(gwd_backend_accepted(&f->backend), 1);
  assert_int_equal(f->backend.rx[0].bytes, 7);
  printf("hostile allow: 3 clients outside the list refused, backend connections 0; the allowed one forwarded\n");
  int fds = gwd_wait_fd_count(f->proc.pid, before.fds, GWD_TIMEOUT_MS);
  printf("hostile allow: fds %d -> %d\n", before.fds, fds);
  assert_int_equal(fds, before.fds);
  assert_int_equal(gwd_stop(&f->proc), 0);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  const struct CMUnitTest tests[] = {
      GWD_TEST(test_flood_max_clients),
      GWD_TEST(test_per_ip_limit),
      GWD_TEST(test_fd_limit),
      GWD_TEST(test_never_reader_echo),
      GWD_TEST(test_never_reader_forward),
      GWD_TEST(test_frame_timeout),
      GWD_TEST(test_bad_frames),
      GWD_TEST(test_allow_refuses_before_backend),
  };
  return cmocka_run_group_tests_name("daemon_hostile", tests, NULL, NULL);
}
