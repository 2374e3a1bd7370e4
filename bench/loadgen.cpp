// SPDX-License-Identifier: MIT
// loadgen: the benchmark suite's load generator and backends (bench/run.sh).
//
// One single-threaded epoll loop drives many TCP connections, so that every
// peer (proxy) is measured with the same client and the same backend:
//
//   loadgen serve echo|sink|source [--port P]     backend; prints "port=P"
//   loadgen stream HOST:PORT [opts]               write to a sink (bytes/s)
//   loadgen source HOST:PORT [opts]               read from a source (bytes/s)
//   loadgen pingpong HOST:PORT [opts]             messages echoed (req/s, latency)
//   loadgen churn HOST:PORT [opts]                connect, one request, close
//   loadgen idle HOST:PORT [opts]                 hold N connections open
//   loadgen proc PID                              CPU and memory of a process tree
//   loadgen firstbyte HOST:PORT [--timeout S]     first connect to first echoed byte
//
// Options: --clients N, --size BYTES, --seconds S, --warmup S, --rate MSGS_PER_S
// (pingpong open loop: latency counted from each message's scheduled time),
// --watch PID (CPU time of that process and its descendants over the measured
// interval), --ready FILE (idle: the result line is also written there once
// every connection is established), --inflight N (idle, churn: connects at
// once). Results are one line of key=value pairs on stdout.
//
// Threading: none; everything runs on the one loop. Ownership: every socket
// belongs to one Fd; a connection slot owns its Fd.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace {

// The one owner of a file descriptor; closes it when destroyed.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd &&other) noexcept : fd_(other.release()) {}
  Fd &operator=(Fd &&other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] void die(const char *what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Latencies in nanoseconds in logarithmic buckets, as HdrHistogram does: 32
// sub-buckets per power of two, so a percentile is within about 3 % of the
// true value whatever its magnitude, in constant memory.
class Histogram {
 public:
  void record(double seconds) {
    auto ns = std::uint64_t(seconds > 0 ? seconds * 1e9 : 0) + 1;
    ++counts_[index(ns)];
    ++total_;
  }
  std::uint64_t total() const { return total_; }
  void clear() { *this = Histogram(); }
  // The upper bound of the bucket holding quantile q, in microseconds.
  double percentile_us(double q) const {
    if (total_ == 0) return NAN;
    auto rank = std::uint64_t(std::ceil(q * double(total_)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank && counts_[i]) return double(upper(i)) / 1e3;
    }
    return NAN;
  }

 private:
  static constexpr int kSubBits = 5;
  static constexpr int kBuckets = 64 << kSubBits;
  static int index(std::uint64_t ns) {
    int exp = 63 - __builtin_clzll(ns);
    if (exp < kSubBits) return int(ns);
    auto sub = int((ns >> (exp - kSubBits)) & ((1u << kSubBits) - 1));
    return ((exp - kSubBits + 1) << kSubBits) + sub;
  }
  static std::uint64_t upper(int i) {
    if (i < (1 << kSubBits)) return std::uint64_t(i);
    int exp = (i >> kSubBits) + kSubBits - 1;
    std::uint64_t sub = std::uint64_t(i & ((1 << kSubBits) - 1));
    return ((std::uint64_t(1) << kSubBits | sub) + 1) << (exp - kSubBits);
  }
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t total_ = 0;
};

// ---- processes: CPU time and memory of a process and its descendants --------

struct ProcSample {
  double cpu_s = 0;  // on CPU, user and system, reaped children included
  // The same time split as the kernel's tick sampling splits it (utime and
  // stime, reaped children included): only whole ticks, so it is kept as a
  // share of cpu_s, good over a run of many ticks.
  double user_ticks = 0, system_ticks = 0;
  long rss_kb = 0;
  long pss_kb = 0;
  long private_kb = 0;            // USS: pages no other process maps, what running it costs a board
  long anon_kb = 0, file_kb = 0;  // RSS split: private heap and stacks, and mapped files (code, libraries)
  int procs = 0;
};

bool read_file(const std::string &path, std::string &out) {
  FILE *f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  char buf[4096];
  out.clear();
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return true;
}

long status_kb(const std::string &text, const char *key) {
  auto at = text.find(key);
  return at == std::string::npos ? 0 : std::strtol(text.c_str() + at + std::strlen(key), nullptr, 10);
}

struct ProcTicks {
  double stand_in = 0;          // reaped children's ticks, and a zombie's own (schedstat has none of them)
  double user = 0, system = 0;  // all of the process's user and system ticks, children's too
};

// Every process's parent, and its CPU ticks (see ProcTicks).
void scan_procs(std::map<int, int> &parent, std::map<int, ProcTicks> &ticks) {
  DIR *d = opendir("/proc");
  if (!d) die("/proc");
  while (dirent *e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    std::string stat;
    if (pid <= 0 || !read_file("/proc/" + std::to_string(pid) + "/stat", stat)) continue;
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    // After the command: state ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime stime cutime cstime (proc(5), fields 3-17).
    int ppid = 0;
    unsigned long utime = 0, stime = 0;
    long cutime = 0, cstime = 0;
    char state = 0;
    if (std::sscanf(stat.c_str() + close_paren + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld",
                    &state, &ppid, &utime, &stime, &cutime, &cstime) != 6)
      continue;
    parent[pid] = ppid;
    // A zombie has no threads left to read schedstat from, and its parent
    // has not yet added its time to cutime: its own ticks stand in.
    ticks[pid] = {double(cutime + cstime) + (state == 'Z' ? double(utime + stime) : 0), double(utime + cutime),
                  double(stime + cstime)};
  }
  closedir(d);
}

// The CPU time of a live process's threads in nanoseconds (schedstat): a
// process's utime and stime are whole clock ticks, and a peer that forks a
// process per connection (socat) spends less than one tick in each.
double live_cpu_s(int pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR *d = opendir(dir.c_str());
  if (!d) return 0;
  double total = 0;
  while (dirent *e = readdir(d)) {
    std::string text;
    if (e->d_name[0] != '.' && read_file(dir + "/" + e->d_name + "/schedstat", text))
      total += std::strtod(text.c_str(), nullptr) / 1e9;
  }
  closedir(d);
  return total;
}

// The share of CPU time spent in user space between two samples of one tree,
// by the kernel's tick sampling; nan when no tick fell in between.
double user_share(const ProcSample &from, const ProcSample &to) {
  double user = to.user_ticks - from.user_ticks, all = user + to.system_ticks - from.system_ticks;
  return all > 0 ? user / all : std::nan("");
}

ProcSample sample_tree(int root) {
  std::map<int, int> parent;
  std::map<int, ProcTicks> ticks;
  scan_procs(parent, ticks);
  ProcSample s;
  double hz = double(sysconf(_SC_CLK_TCK));
  for (auto &[pid, ppid] : parent) {
    bool in_tree = false;
    for (int p = pid, hops = 0; p > 1 && hops < 64; p = parent.count(p) ? parent[p] : 0, ++hops)
      if (p == root) in_tree = true;
    if (!in_tree) continue;
    std::string text;
    ++s.procs;
    s.cpu_s += ticks[pid].stand_in / hz + live_cpu_s(pid);
    s.user_ticks += ticks[pid].user;
    s.system_ticks += ticks[pid].system;
    if (read_file("/proc/" + std::to_string(pid) + "/status", text)) {
      s.rss_kb += status_kb(text, "VmRSS:");
      s.anon_kb += status_kb(text, "RssAnon:");
      s.file_kb += status_kb(text, "RssFile:");
    }
    if (read_file("/proc/" + std::to_string(pid) + "/smaps_rollup", text)) {
      s.pss_kb += status_kb(text, "\nPss:");
      s.private_kb += status_kb(text, "\nPrivate_Clean:") + status_kb(text, "\nPrivate_Dirty:");
    }
  }
  return s;
}

// ---- options ----------------------------------------------------------------

struct Options {
  std::string mode, target;
  int clients = 1;
  std::size_t size = 64;
  double seconds = 3, warmup = 0.5, rate = 0, timeout = 10;
  int watch = 0, inflight = 64, port = 0;
  std::string ready;
};

Options parse(int argc, char **argv) {
  Options o;
  if (argc < 3) {
    std::fprintf(stderr, "usage: loadgen MODE TARGET [options] (see the comment at the top of bench/loadgen.cpp)\n");
    std::exit(2);
  }
  o.mode = argv[1];
  o.target = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const char *v = argv[i + 1];
    if (k == "--clients")
      o.clients = std::atoi(v);
    else if (k == "--size")
      o.size = std::size_t(std::atol(v));
    else if (k == "--seconds")
      o.seconds = std::atof(v);
    else if (k == "--warmup")
      o.warmup = std::atof(v);
    else if (k == "--rate")
      o.rate = std::atof(v);
    else if (k == "--timeout")
      o.timeout = std::atof(v);
    else if (k == "--watch")
      o.watch = std::atoi(v);
    else if (k == "--inflight")
      o.inflight = std::atoi(v);
    else if (k == "--port")
      o.port = std::atoi(v);
    else if (k == "--ready")
      o.ready = v;
    else {
      std::fprintf(stderr, "loadgen: unknown option '%s'\n", k.c_str());
      std::exit(2);
    }
  }
  if (o.size == 0) o.size = 1;
  return o;
}

sockaddr_in parse_addr(const std::string &hostport) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos || inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "loadgen: '%s' is not IPv4-ADDRESS:PORT\n", hostport.c_str());
    std::exit(2);
  }
  a.sin_port = htons(std::uint16_t(std::atoi(hostport.c_str() + colon + 1)));
  return a;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A non-blocking connect; the socket is the caller's once it returns.
Fd start_connect(const sockaddr_in &to) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) die("socket");
  set_nodelay(fd.get());
  if (connect(fd.get(), reinterpret_cast<const sockaddr *>(&to), sizeof to) < 0 && errno != EINPROGRESS) return Fd();
  return fd;
}

void raise_fd_limit() {
  rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

char g_buf[1 << 16];

// ---- backends ---------------------------------------------------------------

// One accepted connection of a backend: bytes read but not yet echoed.
struct ServerConn {
  Fd fd;
  std::vector<char> pending;
};

// Echo: writes back what it reads; stops reading while its write would block.
void serve_echo(ServerConn &c) {
  for (;;) {
    while (!c.pending.empty()) {
      ssize_t n = send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
      if (n < 0) return;
      c.pending.erase(c.pending.begin(), c.pending.begin() + n);
    }
    ssize_t n = read(c.fd.get(), g_buf, sizeof g_buf);
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) c.fd.reset();
      return;
    }
    ssize_t w = send(c.fd.get(), g_buf, std::size_t(n), MSG_NOSIGNAL);
    if (w < 0) w = 0;
    c.pending.assign(g_buf + w, g_buf + n);
  }
}

void serve_conn(const std::string &kind, ServerConn &c) {
  if (kind == "echo") return serve_echo(c);
  if (kind == "sink") {
    ssize_t n;
    while ((n = read(c.fd.get(), g_buf, sizeof g_buf)) > 0) {}
    if (n == 0 || errno != EAGAIN) c.fd.reset();
    return;
  }
  while (send(c.fd.get(), g_buf, sizeof g_buf, MSG_NOSIGNAL) > 0) {}
  if (errno != EAGAIN) c.fd.reset();
}

Fd listen_on(int port) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = parse_addr("127.0.0.1:" + std::to_string(port));
  if (bind(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a) < 0) die("bind");
  if (listen(fd.get(), 65535) < 0) die("listen");
  socklen_t len = sizeof a;
  getsockname(fd.get(), reinterpret_cast<sockaddr *>(&a), &len);
  std::printf("port=%d\n", ntohs(a.sin_port));
  std::fflush(stdout);
  return fd;
}

int serve(const Options &o) {
  const std::string &kind = o.target;
  if (kind != "echo" && kind != "sink" && kind != "source") {
    std::fprintf(stderr, "loadgen: serve echo|sink|source, not '%s'\n", kind.c_str());
    return 2;
  }
  Fd lfd = listen_on(o.port);
  Fd ep(epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{EPOLLIN, {}};
  ev.data.ptr = nullptr;
  epoll_ctl(ep.get(), EPOLL_CTL_ADD, lfd.get(), &ev);
  std::vector<epoll_event> events(1024);
  while (!g_stop) {
    int n = epoll_wait(ep.get(), events.data(), int(events.size()), 200);
    for (int i = 0; i < n; ++i) {
      auto *c = static_cast<ServerConn *>(events[i].data.ptr);
      if (c) {
        serve_conn(kind, *c);
        if (!c->fd.valid()) delete c;
        continue;
      }
      for (int cfd; (cfd = accept4(lfd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
        set_nodelay(cfd);
        auto *conn = new ServerConn{Fd(cfd), {}};
        epoll_event cev{EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, {}};
        cev.data.ptr = conn;
        epoll_ctl(ep.get(), EPOLL_CTL_ADD, cfd, &cev);
      }
    }
  }
  return 0;
}

// ---- clients ----------------------------------------------------------------

// One client connection: what it still has to send and the start times of the
// messages whose echo is not yet whole. `generation` tells a stale epoll event
// of a closed connection from one of the connection reopened in its slot.
struct Client {
  Fd fd;
  bool connected = false, done = false, answered = false;
  std::uint32_t generation = 0;
  std::uint64_t sent = 0;
  std::size_t to_send = 0, received = 0;
  std::deque<double> started;
  double connect_start = 0, next_due = 0;
};

class Run {
 public:
  explicit Run(const Options &o) : o_(o), to_(parse_addr(o.target)), ep_(epoll_create1(EPOLL_CLOEXEC)) {}
  int main();

 private:
  void open(std::size_t i);
  void on_event(std::size_t i, std::uint32_t events);
  void on_connected(std::size_t i, std::uint32_t events);
  void pump(Client &c);
  bool write_some(Client &c);
  int read_some(Client &c);
  void complete(Client &c);
  void fail(std::size_t i);
  void reopen_failed();
  void schedule(double now);
  void start_measuring(double now);
  void print(double now);
  bool idle_settled() const { return established_ + failures_ >= std::uint64_t(o_.clients); }
  void run_idle_step(double start, double now, double &end, bool &printed);

  const Options &o_;
  sockaddr_in to_;
  Fd ep_;
  std::vector<Client> clients_;
  std::vector<std::size_t> to_reopen_, again_;
  Histogram hist_;
  std::uint64_t messages_ = 0, bytes_ = 0, failures_ = 0, established_ = 0;
  int connecting_ = 0;
  std::size_t next_open_ = 0, answered_ = 0;
  double measure_start_ = 0;
  ProcSample cpu_start_;
  bool measuring_ = false;
};

void Run::open(std::size_t i) {
  Client &c = clients_[i];
  std::uint32_t generation = c.generation + 1;
  c = Client();
  c.generation = generation;
  c.connect_start = now_s();
  c.fd = start_connect(to_);
  if (!c.fd.valid()) return fail(i);
  ++connecting_;
  epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, {}};
  ev.data.u64 = (std::uint64_t(generation) << 32) | i;
  epoll_ctl(ep_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
}

// A connection that could not connect or broke: counted, and (except in idle
// mode, which holds what it got) reopened on the next turn of the loop.
void Run::fail(std::size_t i) {
  Client &c = clients_[i];
  if (c.fd.valid() && !c.connected) --connecting_;
  c.fd.reset();
  c.done = true;
  if (measuring_ || o_.mode == "idle") ++failures_;
  if (o_.mode != "idle") to_reopen_.push_back(i);
}

void Run::reopen_failed() {
  std::vector<std::size_t> slots;
  slots.swap(to_reopen_);
  for (std::size_t i : slots) open(i);
}

void Run::complete(Client &c) {
  double started = c.started.front();
  c.started.pop_front();
  if (!c.answered) {
    c.answered = true;
    ++answered_;
  }
  if (measuring_) {
    hist_.record(now_s() - started);
    ++messages_;
  }
  if (o_.mode == "idle" && !c.done) {
    c.done = true;
    ++established_;
  }
}

// Writes until the socket is full or the message is out. A stream client
// stops after a few writes and is queued to go on after the next epoll_wait,
// so that a consumer as fast as the writer does not keep the loop from its
// clock and its other clients.
bool Run::write_some(Client &c) {
  bool stream = o_.mode == "stream";
  for (int writes = 0; stream || c.to_send > 0; ++writes) {
    if (stream && writes == 16) {
      again_.push_back(std::size_t(&c - clients_.data()));
      return true;
    }
    std::size_t want = stream ? sizeof g_buf : std::min(c.to_send, sizeof g_buf);
    ssize_t n = send(c.fd.get(), g_buf, want, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN;
    if (!stream) c.to_send -= std::size_t(n);
    if (measuring_ && stream) bytes_ += std::uint64_t(n);
  }
  return true;
}

// Reads what there is and completes each message whose echo is now whole.
// Returns the number of messages completed, or -1 when the connection ended.
int Run::read_some(Client &c) {
  int completed = 0;
  for (;;) {
    ssize_t n = read(c.fd.get(), g_buf, sizeof g_buf);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? completed : -1;
    if (o_.mode == "source") {
      if (measuring_) bytes_ += std::uint64_t(n);
      continue;
    }
    c.received += std::size_t(n);
    for (; c.received >= o_.size && !c.started.empty(); ++completed) {
      c.received -= o_.size;
      complete(c);
    }
  }
}

// A closed loop sends the next message once the previous echo is whole; churn
// and idle send one message per connection (churn's latency counts from the
// connect). The open loop's messages come from schedule().
void Run::pump(Client &c) {
  if (g_stop || !c.started.empty() || c.to_send) return;
  bool closed_loop = o_.mode == "pingpong" && o_.rate <= 0;
  bool first = (o_.mode == "churn" || o_.mode == "idle") && c.sent == 0;
  if (!closed_loop && !first) return;
  c.started.push_back(o_.mode == "churn" ? c.connect_start : now_s());
  c.to_send = o_.size;
  ++c.sent;
}

void Run::on_connected(std::size_t i, std::uint32_t events) {
  Client &c = clients_[i];
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err || (events & (EPOLLERR | EPOLLHUP))) return fail(i);
  if (!(events & EPOLLOUT)) return;
  c.connected = true;
  --connecting_;
}

void Run::on_event(std::size_t i, std::uint32_t events) {
  Client &c = clients_[i];
  if (!c.connected) on_connected(i, events);
  if (!c.connected) return;
  pump(c);
  if (!write_some(c)) return fail(i);
  int completed = read_some(c);
  if (completed < 0) return fail(i);
  if (o_.mode == "churn" && c.sent && c.started.empty()) {
    c.fd.reset();  // the echo is whole: close, and connect again
    if (!g_stop) open(i);
    return;
  }
  if (completed > 0) {
    pump(c);
    if (!write_some(c)) return fail(i);
  }
}

// Open loop: every client gets its share of the rate at fixed intervals.
void Run::schedule(double now) {
  double interval = double(o_.clients) / o_.rate;
  for (std::size_t i = 0; i < clients_.size(); ++i) {
    Client &c = clients_[i];
    if (!c.connected || !c.fd.valid()) continue;
    if (c.next_due == 0) c.next_due = now;
    bool queued = false;
    for (; c.next_due <= now; c.next_due += interval, queued = true) {
      c.started.push_back(c.next_due);
      c.to_send += o_.size;
    }
    if (queued && !write_some(c)) fail(i);
  }
}

void Run::start_measuring(double now) {
  measuring_ = true;
  measure_start_ = now;
  hist_.clear();
  messages_ = bytes_ = failures_ = 0;
  if (o_.watch) cpu_start_ = sample_tree(o_.watch);
}

void Run::print(double now) {
  double secs = now - measure_start_;
  char line[1024];
  int n = std::snprintf(line, sizeof line,
                        "mode=%s clients=%d size=%zu seconds=%.3f messages=%llu rps=%.1f bytes=%llu mbps=%.2f "
                        "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f failures=%llu",
                        o_.mode.c_str(), o_.clients, o_.size, secs, (unsigned long long)messages_,
                        double(messages_) / secs, (unsigned long long)bytes_, double(bytes_) / secs / 1e6,
                        hist_.percentile_us(0.5), hist_.percentile_us(0.99), hist_.percentile_us(0.999),
                        hist_.percentile_us(1.0), (unsigned long long)failures_);
  auto room = [&] { return sizeof line - std::size_t(n); };
  if (o_.mode == "idle") n += std::snprintf(line + n, room(), " established=%llu", (unsigned long long)established_);
  if (o_.watch) {
    ProcSample end = sample_tree(o_.watch);
    n += std::snprintf(line + n, room(), " cpu_s=%.3f procs=%d user_share=%.3f", end.cpu_s - cpu_start_.cpu_s,
                       end.procs, user_share(cpu_start_, end));
  }
  std::printf("%s\n", line);
  std::fflush(stdout);
  if (o_.ready.empty()) return;
  // Written whole, then renamed: the script polls for the file.
  if (FILE *f = std::fopen((o_.ready + ".tmp").c_str(), "w")) {
    std::fprintf(f, "%s\n", line);
    std::fclose(f);
    std::rename((o_.ready + ".tmp").c_str(), o_.ready.c_str());
  }
}

// Idle mode opens its connections a few at a time (a listen backlog is
// finite), reports once each one has its echo (or failed), then holds them
// for --seconds or until SIGTERM.
void Run::run_idle_step(double start, double now, double &end, bool &printed) {
  while (next_open_ < clients_.size() && connecting_ < o_.inflight) open(next_open_++);
  if (!printed && (idle_settled() || now > start + o_.timeout)) {
    measure_start_ = start;
    measuring_ = true;
    print(now);
    printed = true;
    end = now + o_.seconds;
  }
}

int Run::main() {
  clients_.resize(std::size_t(o_.clients));
  bool idle = o_.mode == "idle";
  if (!idle)
    for (; next_open_ < clients_.size(); ++next_open_) open(next_open_);
  std::vector<epoll_event> events(4096);
  double start = now_s(), end = start + o_.warmup + o_.seconds;
  bool printed = false;
  for (double now = start; !g_stop; now = now_s()) {
    if (idle) {
      run_idle_step(start, now, end, printed);
      if (printed && now >= end) break;
    } else {
      // The measurement starts after the warm-up once every client is
      // connected and, in ping-pong, has had an echo (a connect storm's SYNs
      // retried after 1 s by the client or the proxy would otherwise be in
      // the figures), or 5 s later at most.
      bool ready = o_.mode == "churn" || (connecting_ == 0 && (o_.mode != "pingpong" || answered_ >= clients_.size()));
      if (!measuring_ && now >= start + o_.warmup && (ready || now >= start + o_.warmup + 5)) {
        start_measuring(now);
        end = now + o_.seconds;
      }
      if (measuring_ && now >= end) break;
      if (o_.rate > 0) schedule(now);
    }
    int n = epoll_wait(ep_.get(), events.data(), int(events.size()), again_.empty() ? 1 : 0);
    std::vector<std::size_t> again;
    again.swap(again_);
    for (std::size_t slot : again)
      if (clients_[slot].fd.valid() && !write_some(clients_[slot])) fail(slot);
    for (int i = 0; i < n; ++i) {
      std::size_t slot = std::size_t(events[i].data.u64 & 0xffffffffu);
      if (clients_[slot].generation == std::uint32_t(events[i].data.u64 >> 32) && clients_[slot].fd.valid())
        on_event(slot, events[i].events);
    }
    reopen_failed();
  }
  if (!idle) print(now_s());
  return 0;
}

// The time from the first accepted connect to the first echoed byte: under
// socket activation the listening socket exists before the daemon runs, so a
// connect succeeds at once and the echo waits for the daemon's start-up.
int first_byte(const Options &o) {
  sockaddr_in to = parse_addr(o.target);
  double deadline = now_s() + o.timeout;
  for (;;) {
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    double t0 = now_s();
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&to), sizeof to) == 0) {
      char c = 'x';
      if (send(fd.get(), &c, 1, MSG_NOSIGNAL) != 1 || read(fd.get(), &c, 1) != 1) die("first byte");
      std::printf("first_byte_ms=%.3f\n", (now_s() - t0) * 1e3);
      return 0;
    }
    if (now_s() > deadline) die("connect");
    usleep(500);
  }
}

int proc(const Options &o) {
  ProcSample s = sample_tree(std::atoi(o.target.c_str()));
  std::printf(
      "cpu_s=%.3f rss_kb=%ld pss_kb=%ld private_kb=%ld procs=%d anon_kb=%ld file_kb=%ld user_ticks=%.0f "
      "system_ticks=%.0f\n",
      s.cpu_s, s.rss_kb, s.pss_kb, s.private_kb, s.procs, s.anon_kb, s.file_kb, s.user_ticks, s.system_ticks);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  raise_fd_limit();
  std::memset(g_buf, 'x', sizeof g_buf);
  if (o.mode == "serve") return serve(o);
  if (o.mode == "proc") return proc(o);
  if (o.mode == "firstbyte") return first_byte(o);
  if (o.mode == "stream" || o.mode == "source" || o.mode == "pingpong" || o.mode == "churn" || o.mode == "idle")
    return Run(o).main();
  std::fprintf(stderr, "loadgen: unknown mode '%s'\n", o.mode.c_str());
  return 2;
}
