/* SPDX-License-Identifier: MIT */
/* See daemon_harness.h. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *g_binary;
/* GWD_WRAPPER split into words, in front of gatewayd's argv (NULL-terminated). */
static char *g_wrapper[16];
static int g_wrapper_words;

void gwd_init(int argc, char **argv) {
  if (argc < 2 || argv[1][0] != '/') {
    fprintf(stderr, "usage: %s /path/to/gatewayd\n", argv[0]);
    exit(2);
  }
  g_binary = argv[1];
  signal(SIGPIPE, SIG_IGN);
  const char *wrapper = getenv("GWD_WRAPPER");
  if (wrapper && *wrapper) {
    char *copy = strdup(wrapper);
    for (char *word = strtok(copy, " "); word && g_wrapper_words < 15; word = strtok(NULL, " "))
      g_wrapper[g_wrapper_words++] = word;
    g_wrapper[g_wrapper_words] = NULL;
  }
}

int gwd_scaled_ms(int ms) {
  const char *scale = getenv("GWD_TIME_SCALE");
  int factor = scale && *scale ? atoi(scale) : 1;
  return ms * (factor > 0 ? factor : 1);
}

int gwd_timeout_ms(void) { return gwd_scaled_ms(5000); }

int gwd_wrapped(void) { return g_wrapper_words > 0; }

/* argv for gatewayd with GWD_WRAPPER's words in front; the wrapper's first
 * word is looked up in PATH here, since gwd_spawn wants an absolute path. */
static int wrap_argv(char **out, int cap, char *const args[]) {
  static char resolved[512];
  int n = 0;
  for (int i = 0; i < g_wrapper_words && n < cap - 1; ++i) out[n++] = g_wrapper[i];
  if (n && out[0][0] != '/') {
    const char *path = getenv("PATH");
    char *dirs = strdup(path ? path : "/usr/bin:/bin");
    for (char *dir = strtok(dirs, ":"); dir; dir = strtok(NULL, ":")) {
      snprintf(resolved, sizeof resolved, "%s/%s", dir, out[0]);
      if (access(resolved, X_OK) == 0) {
        out[0] = resolved;
        break;
      }
    }
    free(dirs);
  }
  out[n++] = (char *)g_binary;
  for (int i = 0; args && args[i] && n < cap - 1; ++i) out[n++] = args[i];
  out[n] = NULL;
  return n;
}

const char *gwd_binary(void) { return g_binary; }

void gwd_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* ---- directory ---- */

void gwd_dir_make(gwd_dir *d) {
  snprintf(d->path, sizeof d->path, "/tmp/gwd-test.XXXXXX");
  assert_non_null(mkdtemp(d->path));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void gwd_dir_remove(gwd_dir *d) {
  if (d->path[0] && !getenv("GWD_KEEP")) (void)nftw(d->path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  d->path[0] = '\0';
}

void gwd_dir_file(const gwd_dir *d, const char *name, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/%s", d->path, name);
  assert_true(n > 0 && (size_t)n < cap);
}

void gwd_dir_write(const gwd_dir *d, const char *name, const char *text, char *out, size_t cap) {
  char path[512];
  gwd_dir_file(d, name, path, sizeof path);
  /* Write to a temp name and rename: a reload never sees half a file. */
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(rename(tmp, path), 0);
  if (out) {
    assert_true(strlen(path) < cap);
    strcpy(out, path);
  }
}

/* ---- ports ---- */

int gwd_listen_tcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int gwd_port(void) {
  /* 20000..32767, below Linux's ephemeral range; a window of 40 ports per
   * process id, walked in order. */
  static int next = -1;
  if (next < 0) next = (int)(((unsigned)getpid() * 40u) % 12760u);
  for (int tries = 0; tries < 400; ++tries) {
    int port = 20000 + (next++ % 12760);
    int fd = gwd_listen_tcp(port);
    if (fd >= 0) {
      close(fd);
      return port;
    }
  }
  fail_msg("no free port");
  return -1;
}

/* ---- processes ---- */

static int env_skip(const char *e) {
  static const char *const drop[] = {"NOTIFY_SOCKET=", "LISTEN_", "WATCHDOG_", NULL};
  for (int i = 0; drop[i]; ++i)
    if (strncmp(e, drop[i], strlen(drop[i])) == 0) return 1;
  return 0;
}

/* Async-signal-safe: "PREFIX<pid>" into buf. */
static void put_pid(char *buf, const char *prefix, pid_t pid) {
  size_t n = 0;
  while (prefix[n]) {
    buf[n] = prefix[n];
    ++n;
  }
  char digits[24];
  int k = 0;
  unsigned long v = (unsigned long)pid;
  do {
    digits[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) buf[n++] = digits[--k];
  buf[n] = '\0';
}

int gwd_spawn(gwd_proc *p, const gwd_dir *d, const char *tag, char *const argv[], const gwd_spawn_opts *opts) {
  static const gwd_spawn_opts none;
  if (!opts) opts = &none;
  memset(p, 0, sizeof *p);
  p->pid = -1;
  char name[64];
  snprintf(name, sizeof name, "%s.out", tag);
  gwd_dir_file(d, name, p->out_path, sizeof p->out_path);
  snprintf(name, sizeof name, "%s.err", tag);
  gwd_dir_file(d, name, p->err_path, sizeof p->err_path);

  /* Everything the child needs is prepared here: after fork only
   * async-signal-safe calls (the test has threads). */
  size_t count = 0;
  while (environ[count]) ++count;
  char **envp = calloc(count + GWD_MAX_ENV + 8, sizeof *envp);
  assert_non_null(envp);
  size_t e = 0;
  for (size_t i = 0; i < count; ++i)
    if (!env_skip(environ[i])) envp[e++] = environ[i];
  for (int i = 0; i < GWD_MAX_ENV && opts->env[i]; ++i) envp[e++] = (char *)opts->env[i];
  static char listen_fds[32], listen_pid[48], listen_names[512], watchdog_pid[48];
  int with_listen = opts->listen_names || opts->listen_no_names;
  if (with_listen) {
    snprintf(listen_fds, sizeof listen_fds, "LISTEN_FDS=%d", opts->nfds);
    envp[e++] = listen_fds;
    envp[e++] = listen_pid;
    if (opts->listen_names) {
      snprintf(listen_names, sizeof listen_names, "LISTEN_FDNAMES=%s", opts->listen_names);
      envp[e++] = listen_names;
    }
  }
  if (opts->watchdog_pid) envp[e++] = watchdog_pid;
  envp[e] = NULL;

  int out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(out >= 0 && err >= 0 && devnull >= 0);
  /* The fds to pass, moved above anything dup2 will overwrite. */
  int moved[GWD_MAX_FDS];
  for (int i = 0; i < opts->nfds; ++i) {
    moved[i] = fcntl(opts->fds[i], F_DUPFD_CLOEXEC, 100);
    assert_true(moved[i] >= 100);
  }
  int hi_out = fcntl(out, F_DUPFD_CLOEXEC, 100), hi_err = fcntl(err, F_DUPFD_CLOEXEC, 100),
      hi_null = fcntl(devnull, F_DUPFD_CLOEXEC, 100);
  assert_true(hi_out >= 100 && hi_err >= 100 && hi_null >= 100);
  close(out);
  close(err);
  close(devnull);

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pid_t self = getpid();
    put_pid(listen_pid, "LISTEN_PID=", self);
    put_pid(watchdog_pid, "WATCHDOG_PID=", self);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (opts->rlimit_nofile > 0) {
      struct rlimit files = {(rlim_t)opts->rlimit_nofile, (rlim_t)opts->rlimit_nofile};
      if (setrlimit(RLIMIT_NOFILE, &files) != 0) _exit(126);
    }
    if (dup2(hi_null, 0) < 0 || dup2(hi_out, 1) < 0 || dup2(hi_err, 2) < 0) _exit(126);
    for (int i = 0; i < opts->nfds; ++i)
      if (dup2(moved[i], 3 + i) < 0) _exit(126);
    /* Nothing else of the test's reaches the daemon (a client socket it
     * held would keep a connection open). */
    if (syscall(SYS_close_range, 3 + opts->nfds, ~0U, 0) != 0) {
      for (int fd = 3 + opts->nfds; fd < 4096; ++fd) close(fd);
    }
    execve(argv[0], argv, envp);
    _exit(127);
  }
  for (int i = 0; i < opts->nfds; ++i) close(moved[i]);
  close(hi_out);
  close(hi_err);
  close(hi_null);
  free(envp);
  p->pid = pid;
  return 0;
}

int gwd_start(gwd_proc *p, const gwd_dir *d, const char *config, const gwd_spawn_opts *opts) {
  char *args[] = {"--config", (char *)config, NULL};
  char *argv[40];
  wrap_argv(argv, 40, args);
  return gwd_spawn(p, d, "gatewayd", argv, opts);
}

void gwd_start_conf(gwd_proc *p, const gwd_dir *d, const char *text, const gwd_spawn_opts *opts) {
  char conf[512];
  gwd_dir_write(d, "gateway.conf", text, conf, sizeof conf);
  assert_int_equal(gwd_start(p, d, conf, opts), 0);
  assert_true(gwd_wait_ready(p));
}

int gwd_stop(gwd_proc *p) {
  gwd_signal(p, SIGTERM);
  return gwd_wait_exit(p, GWD_TIMEOUT_MS);
}

int gwd_run(const gwd_dir *d, const char *tag, char *const args[], gwd_proc *p) {
  char *argv[40];
  char *limited[16];
  int n = 0;
  for (int i = 0; args && args[i] && n < 14; ++i) limited[n++] = args[i];
  limited[n] = NULL;
  wrap_argv(argv, 40, limited);
  if (gwd_spawn(p, d, tag, argv, NULL) != 0) return -1;
  return gwd_wait_exit(p, GWD_TIMEOUT_MS);
}

static int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int gwd_wait_exit(gwd_proc *p, int timeout_ms) {
  if (p->pid <= 0) return -1;
  if (p->exited) return decode(p->status);
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    pid_t r = waitpid(p->pid, &p->status, WNOHANG);
    if (r == p->pid) {
      p->exited = 1;
      return decode(p->status);
    }
    if (gwt_now_ms() > end) return -1;
    gwd_sleep_ms(5);
  }
}

int gwd_alive(gwd_proc *p) {
  if (p->pid <= 0 || p->exited) return 0;
  pid_t r = waitpid(p->pid, &p->status, WNOHANG);
  if (r == p->pid) {
    p->exited = 1;
    return 0;
  }
  return 1;
}

void gwd_signal(gwd_proc *p, int sig) {
  if (gwd_alive(p)) (void)kill(p->pid, sig);
}

void gwd_kill(gwd_proc *p) {
  if (p->pid > 0 && !p->exited) {
    (void)kill(p->pid, SIGKILL);
    (void)waitpid(p->pid, &p->status, 0);
    p->exited = 1;
  }
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return strdup("");
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

char *gwd_read_err(const gwd_proc *p) { return slurp(p->err_path); }

char *gwd_read_out(const gwd_proc *p) { return slurp(p->out_path); }

int gwd_log_count(const gwd_proc *p, const char *needle) {
  char *text = gwd_read_err(p);
  int n = 0;
  for (const char *s = text; (s = strstr(s, needle)) != NULL; s += strlen(needle)) ++n;
  free(text);
  return n;
}

int gwd_log_wait(const gwd_proc *p, const char *needle, int count, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    if (gwd_log_count(p, needle) >= count) return 1;
    if (gwt_now_ms() > end) return 0;
    gwd_sleep_ms(5);
  }
}

int gwd_wait_ready(gwd_proc *p) {
  int64_t end = gwt_now_ms() + GWD_TIMEOUT_MS;
  for (;;) {
    if (gwd_log_count(p, "<6>ready: ") >= 1) return 1;
    if (!gwd_alive(p) || gwt_now_ms() > end) {
      char *err = gwd_read_err(p);
      print_error("gatewayd not ready; stderr:\n%s\n", err);
      free(err);
      return 0;
    }
    gwd_sleep_ms(5);
  }
}

/* ---- process figures ---- */

int gwd_proc_fd_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *dir = opendir(path);
  if (!dir) return -1;
  int n = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL)
    if (entry->d_name[0] != '.') ++n;
  closedir(dir);
  return n;
}

long gwd_proc_rss_kb(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

int gwd_wait_fd_count(pid_t pid, int count, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    int n = gwd_proc_fd_count(pid);
    if (n == count || gwt_now_ms() > end) return n;
    gwd_sleep_ms(10);
  }
}

/* ---- fixture ---- */

int gwd_setup(void **state) {
  gwd_fixture *f = calloc(1, sizeof *f);
  gwd_dir_make(&f->dir);
  f->proc.pid = -1;
  f->notify.fd = -1;
  *state = f;
  return 0;
}

int gwd_setup_notify(void **state) {
  gwd_setup(state);
  gwd_fixture *f = *state;
  gwd_notify_open(&f->notify, &f->dir);
  return 0;
}

int gwd_teardown(void **state) {
  gwd_fixture *f = *state;
  gwd_kill(&f->proc);
  if (f->backend_running) gwd_backend_stop(&f->backend);
  gwd_notify_close(&f->notify);
  gwd_dir_remove(&f->dir);
  free(f);
  return 0;
}

/* ---- notify ---- */

void gwd_notify_open(gwd_notify *n, const gwd_dir *d) {
  memset(n, 0, sizeof *n);
  gwd_dir_file(d, "notify", n->path, sizeof n->path);
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  assert_true(n->fd >= 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  assert_true(strlen(n->path) < sizeof a.sun_path);
  strcpy(a.sun_path, n->path);
  assert_int_equal(bind(n->fd, (struct sockaddr *)&a, sizeof a), 0);
  snprintf(n->env, sizeof n->env, "NOTIFY_SOCKET=%s", n->path);
}

void gwd_notify_close(gwd_notify *n) {
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
}

void gwd_notify_poll(gwd_notify *n) {
  char buf[4096];
  for (;;) {
    ssize_t r = recv(n->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (r < 0) return;
    if (n->log_len + (size_t)r + 8 >= sizeof n->log) return; /* full: enough for any test */
    memcpy(n->log + n->log_len, buf, (size_t)r);
    n->log_len += (size_t)r;
    memcpy(n->log + n->log_len, "\n--\n", 4);
    n->log_len += 4;
    n->log[n->log_len] = '\0';
    n->datagrams++;
  }
}

static int line_matches(const char *s, size_t len, const char *line) {
  size_t l = strlen(line);
  if (l && line[l - 1] == '=') return len >= l && strncmp(s, line, l) == 0;
  return len == l && strncmp(s, line, l) == 0;
}

/* Walks lines; returns the datagram index of the count-th match or -1. */
static int scan(gwd_notify *n, const char *line, int count, int *total) {
  int seen = 0, dgram = 0, found = -1;
  const char *s = n->log, *end = n->log + n->log_len;
  while (s < end) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
    if (len == 2 && strncmp(s, "--", 2) == 0)
      ++dgram;
    else if (line_matches(s, len, line) && ++seen == count && found < 0)
      found = dgram;
    s += len + 1;
  }
  if (total) *total = seen;
  return found;
}

int gwd_notify_count(gwd_notify *n, const char *line) {
  gwd_notify_poll(n);
  int total = 0;
  (void)scan(n, line, 0, &total);
  return total;
}

int gwd_notify_index(gwd_notify *n, const char *line, int count) {
  gwd_notify_poll(n);
  return scan(n, line, count, NULL);
}

int gwd_notify_wait(gwd_notify *n, const char *line, int count, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    if (gwd_notify_count(n, line) >= count) return 1;
    int64_t left = end - gwt_now_ms();
    if (left <= 0) return 0;
    struct pollfd pfd = {n->fd, POLLIN, 0};
    (void)poll(&pfd, 1, left > 50 ? 50 : (int)left);
  }
}

/* ---- patterns ---- */

unsigned char gwd_pattern(uint64_t i, unsigned seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  return (unsigned char)(x ^ (x >> 17));
}

void gwd_fill(unsigned char *buf, size_t len, uint64_t offset, unsigned seed) {
  for (size_t i = 0; i < len; ++i) buf[i] = gwd_pattern(offset + i, seed);
}

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

uint64_t gwd_fnv_pattern(uint64_t len, unsigned seed) {
  uint64_t h = FNV_OFFSET;
  for (uint64_t i = 0; i < len; ++i) {
    h ^= gwd_pattern(i, seed);
    h *= FNV_PRIME;
  }
  return h;
}

void gwd_recv_stream(int fd, int seed, int timeout_ms, gwd_rx *rx) {
  gwd_recv_stream_slow(fd, seed, timeout_ms, 0, 0, rx);
}

void gwd_recv_stream_slow(int fd, int seed, int timeout_ms, size_t chunk, unsigned delay_us, gwd_rx *rx) {
  memset(rx, 0, sizeof *rx);
  rx->fnv = FNV_OFFSET;
  rx->first_mismatch = -1;
  static __thread unsigned char buf[65536];
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    int64_t left = end - gwt_now_ms();
    if (left <= 0) {
      rx->eof = 0;
      return;
    }
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    size_t want = chunk && chunk < sizeof buf ? chunk : sizeof buf;
    ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
    if (n > 0 && delay_us) usleep(delay_us);
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        rx->fnv ^= buf[i];
        rx->fnv *= FNV_PRIME;
        if (seed >= 0 && buf[i] != gwd_pattern(rx->bytes + (uint64_t)i, (unsigned)seed)) {
          if (rx->first_mismatch < 0) rx->first_mismatch = (int64_t)(rx->bytes + (uint64_t)i);
          rx->mismatches++;
        }
      }
      rx->bytes += (uint64_t)n;
      continue;
    }
    if (n == 0) {
      rx->eof = 1;
      return;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    rx->eof = -1;
    rx->err = errno;
    return;
  }
}

int gwd_send_stream(int fd, uint64_t len, unsigned seed, size_t chunk, unsigned delay_us, int shut_wr, int timeout_ms) {
  if (!chunk) chunk = 65536;
  unsigned char *buf = malloc(chunk);
  assert_non_null(buf);
  int64_t end = gwt_now_ms() + timeout_ms;
  uint64_t sent = 0;
  int rc = 0;
  while (sent < len && rc == 0) {
    size_t n = len - sent < chunk ? (size_t)(len - sent) : chunk;
    gwd_fill(buf, n, sent, seed);
    size_t off = 0;
    while (off < n) {
      ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        off += (size_t)w;
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
        int64_t left = end - gwt_now_ms();
        if (left <= 0) {
          rc = -1;
          break;
        }
        struct pollfd pfd = {fd, POLLOUT, 0};
        (void)poll(&pfd, 1, (int)left);
        continue;
      }
      rc = -1;
      break;
    }
    sent += off;
    if (delay_us && sent < len) usleep(delay_us);
  }
  free(buf);
  if (rc == 0 && shut_wr && shutdown(fd, SHUT_WR) != 0) rc = -1;
  return rc;
}

static void *sender_main(void *arg) {
  gwd_sender *s = arg;
  s->rc = gwd_send_stream(s->fd, s->len, s->seed, s->chunk, s->delay_us, s->shut_wr, s->timeout_ms);
  return NULL;
}

void gwd_sender_start(gwd_sender *s, int fd, uint64_t len, unsigned seed, int shut_wr) {
  s->fd = fd;
  s->len = len;
  s->seed = seed;
  s->shut_wr = shut_wr;
  if (!s->timeout_ms) s->timeout_ms = 20000;
  s->rc = -2;
  assert_int_equal(pthread_create(&s->th, NULL, sender_main, s), 0);
}

int gwd_sender_join(gwd_sender *s) {
  pthread_join(s->th, NULL);
  return s->rc;
}

/* ---- backends ---- */

typedef struct conn_arg {
  gwd_backend *b;
  int idx;
} conn_arg;

static void *backend_conn(void *arg) {
  conn_arg *ca = arg;
  gwd_backend *b = ca->b;
  int idx = ca->idx;
  free(ca);
  int fd = b->conn_fd[idx];
  gwd_rx rx;
  int send_rc = 0;
  if (b->mode == GWD_BACKEND_ECHO) {
    memset(&rx, 0, sizeof rx);
    rx.first_mismatch = -1;
    rx.fnv = FNV_OFFSET;
    unsigned char buf[65536];
    int64_t end = gwt_now_ms() + 30000;
    for (;;) {
      struct pollfd pfd = {fd, POLLIN, 0};
      int64_t left = end - gwt_now_ms();
      if (left <= 0 || __atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) break;
      if (poll(&pfd, 1, left > 100 ? 100 : (int)left) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        rx.bytes += (uint64_t)n;
        for (ssize_t i = 0; i < n; ++i) {
          rx.fnv ^= buf[i];
          rx.fnv *= FNV_PRIME;
        }
        if (gwt_write_all(NULL, fd, buf, (size_t)n) != 0) {
          send_rc = -1;
          break;
        }
        continue;
      }
      if (n == 0) {
        rx.eof = 1;
        shutdown(fd, SHUT_WR);
        break;
      }
      if (errno == EAGAIN || errno == EINTR) continue;
      rx.eof = -1;
      rx.err = errno;
      break;
    }
  } else {
    gwd_sender s;
    memset(&s, 0, sizeof s);
    s.chunk = b->send_chunk;
    s.delay_us = b->send_delay_us;
    s.timeout_ms = 30000;
    gwd_sender_start(&s, fd, b->send_len, b->send_seed, b->shut_after_send);
    gwd_recv_stream_slow(fd, b->recv_seed, 30000, b->recv_chunk, b->recv_delay_us, &rx);
    send_rc = gwd_sender_join(&s);
    if (b->reply && rx.eof == 1 && gwt_write_all(NULL, fd, b->reply, strlen(b->reply)) != 0) send_rc = -1;
    shutdown(fd, SHUT_WR);
  }
  pthread_mutex_lock(&b->mu);
  b->rx[idx] = rx;
  b->send_rc[idx] = send_rc;
  b->conn_fd[idx] = -1;
  b->finished++;
  pthread_mutex_unlock(&b->mu);
  close(fd);
  return NULL;
}

static void *backend_main(void *arg) {
  gwd_backend *b = arg;
  while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
    struct pollfd pfd = {b->lfd, POLLIN, 0};
    if (poll(&pfd, 1, 50) <= 0) continue;
    int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    gwd_sock_timeouts(fd, 10000);
    pthread_mutex_lock(&b->mu);
    int idx = b->accepted < GWD_BACKEND_MAX_CONNS ? b->accepted++ : -1;
    if (idx >= 0) b->conn_fd[idx] = fd;
    pthread_mutex_unlock(&b->mu);
    if (idx < 0) {
      close(fd);
      continue;
    }
    conn_arg *ca = malloc(sizeof *ca);
    ca->b = b;
    ca->idx = idx;
    if (pthread_create(&b->conn_th[idx], NULL, backend_conn, ca) != 0) abort();
  }
  return NULL;
}

static int backend_begin(gwd_backend *b) {
  pthread_mutex_init(&b->mu, NULL);
  __atomic_store_n(&b->stop, 0, __ATOMIC_RELEASE);
  b->accepted = b->finished = 0;
  for (int i = 0; i < GWD_BACKEND_MAX_CONNS; ++i) b->conn_fd[i] = -1;
  return pthread_create(&b->th, NULL, backend_main, b) == 0 ? 0 : -1;
}

int gwd_backend_tcp(gwd_backend *b) {
  b->family = AF_INET;
  b->port = gwd_port();
  b->lfd = gwd_listen_tcp(b->port);
  if (b->lfd < 0) return -1;
  return backend_begin(b);
}

int gwd_backend_unix(gwd_backend *b, const gwd_dir *d, const char *name) {
  b->family = AF_UNIX;
  gwd_dir_file(d, name, b->path, sizeof b->path);
  b->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (b->lfd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strcpy(a.sun_path, b->path);
  if (bind(b->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(b->lfd, 128) != 0) return -1;
  return backend_begin(b);
}

int gwd_backend_accepted(gwd_backend *b) {
  pthread_mutex_lock(&b->mu);
  int n = b->accepted;
  pthread_mutex_unlock(&b->mu);
  return n;
}

int gwd_backend_wait_finished(gwd_backend *b, int n, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    pthread_mutex_lock(&b->mu);
    int f = b->finished;
    pthread_mutex_unlock(&b->mu);
    if (f >= n) return 1;
    if (gwt_now_ms() > end) return 0;
    gwd_sleep_ms(5);
  }
}

void gwd_backend_stop(gwd_backend *b) {
  __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
  pthread_join(b->th, NULL);
  for (int i = 0; i < b->accepted; ++i) {
    pthread_mutex_lock(&b->mu);
    if (b->conn_fd[i] >= 0) shutdown(b->conn_fd[i], SHUT_RDWR); /* unblock it */
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->conn_th[i], NULL);
  }
  close(b->lfd);
  b->lfd = -1;
  if (b->family == AF_UNIX) unlink(b->path);
  pthread_mutex_destroy(&b->mu);
}

/* ---- misc ---- */

void gwd_sock_timeouts(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int gwd_connect_retry(int port, int timeout_ms) { return gwd_connect_host("127.0.0.1", port, timeout_ms); }

int gwd_connect_host(const char *host, int port, int timeout_ms) {
  int64_t end = gwt_now_ms() + timeout_ms;
  for (;;) {
    int fd = gwt_connect(host, port);
    if (fd >= 0) {
      gwd_sock_timeouts(fd, GWD_TIMEOUT_MS);
      return fd;
    }
    if (gwt_now_ms() > end) return -1;
    gwd_sleep_ms(10);
  }
}

int gwd_connect_unix(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strcpy(a.sun_path, path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  gwd_sock_timeouts(fd, GWD_TIMEOUT_MS);
  return fd;
}

int gwd_roundtrip(int fd, const char *msg) {
  size_t len = strlen(msg);
  char buf[1024];
  if (len >= sizeof buf || gwt_write_all(NULL, fd, msg, len) != 0) return 0;
  size_t got = gwt_read_exact(NULL, fd, buf, len, GWD_TIMEOUT_MS);
  return got == len && memcmp(buf, msg, len) == 0;
}

int gwd_have_ipv6(void) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}
