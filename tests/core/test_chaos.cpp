// SPDX-License-Identifier: MIT
// Chaos test of the forwarder: hundreds of flows through a gw::Server with a
// Forwarder, to a backend that this test runs itself, with clients and
// backends that misbehave at random (slow or stalled readers, bulk or trickle
// senders, half-closes, resets, clients that go idle past idle_timeout), two
// reloads (Listener::reconfigure) while flows are in flight, and a graceful
// stop while the last ones still run.
//
// What must hold, for every flow and each direction: the bytes that arrive
// are an exact prefix of the bytes sent (nothing corrupted, reordered or
// duplicated); a flow in which nobody reset and nobody went idle arrives
// complete, with both EOFs, and the server closes it as "peer closed"; a flow
// that lost bytes did so only because one of its ends reset or because the
// server logged a close for another reason. Every accepted connection is
// closed exactly once, with a log line naming it.
//
//   GW_CHAOS_SEED=N   replays one run's random plans (printed at the start)
//   GW_CHAOS_FLOWS=N  number of flows (default 300)
// The interleaving of threads is not replayed, only the plans.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"
#include "gw/forwarder.hpp"
#include "gw/server.hpp"

namespace {

constexpr uint64_t kIdleTimeoutMs = 3000;
constexpr uint64_t kStopTimeoutMs = 15000;
constexpr int kConcurrency = 64;
constexpr int64_t kDeadlineMs = 50000;  // the whole run; ctest allows 60 s

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// Byte i of stream `seed`: eight bytes per 64-bit mix, so a chunk is cheap to
// make and to check, and no offset repeats another's value pattern.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void fill(uint8_t *out, size_t length, uint64_t offset, uint64_t seed) {
  for (size_t i = 0; i < length;) {
    uint64_t at = offset + i;
    uint64_t word = mix(seed * 0x100000001b3ull + (at >> 3));
    for (unsigned b = static_cast<unsigned>(at & 7); b < 8 && i < length; ++b, ++i)
      out[i] = static_cast<uint8_t>(word >> (8 * b));
  }
}

// What the server reported, by client port (the client's local port is the
// connection's peer port). Ports come round again within a run, so each port
// keeps its connections in the order they opened: the k-th flow that had
// port P is the k-th connection from P. Also the idle closes the log
// announced per port, and every log line.
struct Record {
  std::mutex mutex;
  std::map<int, std::vector<uint64_t>> opened;              // port -> connection ids in open order
  std::map<uint64_t, std::vector<gw::CloseReason>> closes;  // connection id -> reasons
  std::map<int, int> idle_closing;                          // port -> idle closes announced in the log
  std::vector<std::string> lines;
  int opens = 0;

  static void sink(gw::LogLevel, const char *line, void *user) {
    auto *self = static_cast<Record *>(user);
    std::lock_guard<std::mutex> lock(self->mutex);
    self->lines.emplace_back(line);
    // "NAME: closing 127.0.0.1:PORT: idle for N ms"
    if (const char *p = std::strstr(line, ": closing 127.0.0.1:")) {
      if (std::strstr(p, ": idle for ")) self->idle_closing[std::atoi(p + std::strlen(": closing 127.0.0.1:"))]++;
    }
  }
  int idle_logged(int port) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = idle_closing.find(port);
    return it == idle_closing.end() ? 0 : it->second;
  }
  int opens_from(int port) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = opened.find(port);
    return it == opened.end() ? 0 : static_cast<int>(it->second.size());
  }
  // The close reasons of the nth connection from `port`.
  std::vector<gw::CloseReason> reasons(int port, int nth) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = opened.find(port);
    if (it == opened.end() || static_cast<int>(it->second.size()) <= nth) return {};
    auto found = closes.find(it->second[static_cast<size_t>(nth)]);
    return found == closes.end() ? std::vector<gw::CloseReason>{} : found->second;
  }
  bool closed(int port, int nth) { return !reasons(port, nth).empty(); }
};

// A Forwarder with a recorder in front: the Forwarder class is final, so this
// handler passes every event on and notes the close reasons. A reload installs
// a new one; the test drops its own reference, so the old one lives only as
// long as the connections that still use it (ASan sees a premature free).
class RecordingForwarder final : public gw::ConnectionHandler {
 public:
  RecordingForwarder(gw::SocketAddress backend, Record &record)
      : forwarder_(backend, "tcp://" + backend.to_string()), record_(record) {}
  void on_open(gw::Connection &conn) override {
    {
      std::lock_guard<std::mutex> lock(record_.mutex);
      ++record_.opens;
      record_.opened[conn.peer().port()].push_back(conn.id());
    }
    forwarder_.on_open(conn);
  }
  void on_message(gw::Connection &conn, const uint8_t *data, size_t length) override {
    forwarder_.on_message(conn, data, length);
  }
  bool on_peer_eof(gw::Connection &conn) override { return forwarder_.on_peer_eof(conn); }
  void on_drain(gw::Connection &conn) override { forwarder_.on_drain(conn); }
  bool on_stop(gw::Connection &conn) override { return forwarder_.on_stop(conn); }
  void on_close(gw::Connection &conn, gw::CloseReason reason) override {
    {
      std::lock_guard<std::mutex> lock(record_.mutex);
      record_.closes[conn.id()].push_back(reason);
    }
    forwarder_.on_close(conn, reason);
  }

 private:
  gw::Forwarder forwarder_;
  Record &record_;
};

enum class Fate { normal, reset, idle };

// One end of a flow (the client, or the backend's accepted socket): what it
// sends, how it reads, how it ends, and what it saw.
struct Side {
  // plan
  uint64_t send_total = 0;
  uint64_t send_seed = 0, recv_seed = 0;
  bool trickle = false;  // small writes with pauses (else as much as fits)
  size_t read_chunk = 256 * 1024;
  int read_pause_ms = 0;  // a slow reader pauses after each read
  int64_t stall_at = -1;  // ms after start: stop reading for stall_ms
  int stall_ms = 0;
  int rcvbuf = 0;  // > 0: a small receive buffer, so that backpressure reaches the server at once
  Fate fate = Fate::normal;
  uint64_t fate_at = 0;              // reset: after this many bytes moved; idle: after this many sent
  uint64_t idle_after_received = 0;  // idle: and after this many received (mid-download)
  // progress
  int fd = -1;
  int64_t started = 0, next_send = 0, next_read = 0;
  uint64_t sent = 0, received = 0;
  bool shut = false, eof = false, error = false, closed = false;
  bool did_reset = false, idle = false, idle_done = false;
  bool idle_before_shut = false;  // went quiet without its FIN: only the server can end the flow
  uint64_t mismatch_at = UINT64_MAX;
};

struct Flow {
  int id = 0;
  Side client, backend;
  int port = 0;                // the client's local port
  int nth = 0;                 // earlier flows that had the same port (see Record)
  int idle_logged_before = 0;  // idle closes the log had announced for that port before this flow
  bool launched = false, backend_seen = false;
  bool clean() const { return client.fate == Fate::normal && backend.fate == Fate::normal; }
};

// A backend connection that has not yet sent the 8-byte flow id.
struct Pending {
  int fd;
  uint8_t header[8];
  size_t have = 0;
};

void make_side(Side &side, std::mt19937_64 &rng, bool is_client) {
  auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  unsigned kind = static_cast<unsigned>(pick(0, 99));
  if (kind < 35) {
    side.send_total = pick(128 * 1024, 1536 * 1024);  // bulk: turns the flow to splice
  } else if (kind < 60) {
    side.trickle = true;
    side.send_total = pick(1, 6000);
  } else if (kind < 85) {
    side.send_total = pick(1, 60000);
  }  // else nothing at all
  unsigned reader = static_cast<unsigned>(pick(0, 99));
  if (reader < 15) {
    side.read_chunk = pick(512, 8192);
    side.read_pause_ms = static_cast<int>(pick(2, 12));
  } else if (reader < 30) {
    side.stall_at = static_cast<int64_t>(pick(0, 500));
    side.stall_ms = static_cast<int>(pick(100, 700));
  }
  // Loopback buffers grow to megabytes: without a small receive buffer, a
  // client that stops reading would fill only the kernel, never the
  // server's pipes and queues.
  // Clients only: set before connect(), it sizes the window from the start;
  // shrinking an accepted socket's buffer below the window it announced
  // makes the kernel drop segments and back off for many seconds.
  unsigned small = static_cast<unsigned>(pick(0, 99));
  int rcvbuf = static_cast<int>(pick(8192, 65536));
  if (is_client && small < 30) side.rcvbuf = rcvbuf;
  unsigned fate = static_cast<unsigned>(pick(0, 99));
  if (fate < 12) {
    side.fate = Fate::reset;
    side.fate_at = pick(0, 200000);
  } else if (is_client && fate < 22) {
    side.fate = Fate::idle;
    side.fate_at = side.send_total ? pick(0, side.send_total - 1) : 0;
  }
}

void limit_slow_streams(Flow &flow) {
  // A slow reader gets at most 256 KiB, so that it is done in about 2 s.
  if (flow.client.read_pause_ms && flow.backend.send_total > 256 * 1024) flow.backend.send_total = 256 * 1024;
  if (flow.backend.read_pause_ms && flow.client.send_total > 256 * 1024) flow.client.send_total = 256 * 1024;
  // An idle client goes quiet before it has sent everything (never after its
  // shutdown, which would end the flow normally).
  if (flow.client.fate == Fate::idle && flow.client.fate_at >= flow.client.send_total)
    flow.client.fate_at = flow.client.send_total ? flow.client.send_total - 1 : 0;
  // It may also go quiet in the middle of a download, once that is spliced:
  // the server then closes a spliced link whose pipe to the client is full.
  // The server's socket buffer takes megabytes first, so that download must
  // be bigger than any other (only what fits is ever moved).
  if (flow.client.fate == Fate::idle && flow.backend.fate == Fate::normal && !flow.client.read_pause_ms &&
      mix(flow.client.send_seed) % 5 < 2)
    flow.backend.send_total = 8u << 20;
  if (flow.client.fate == Fate::idle && flow.backend.send_total)
    flow.client.idle_after_received = mix(flow.client.send_seed) % flow.backend.send_total;
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void reset_close(Side &side) {
  linger l{1, 0};
  setsockopt(side.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(side.fd);
  side.fd = -1;
  side.closed = true;
}

void plain_close(Side &side) {
  close(side.fd);
  side.fd = -1;
  side.closed = true;
}

struct Totals {
  uint64_t up = 0, down = 0;
};

// Moves one side's bytes as its plan says, after poll() reported `revents`.
void drive(Side &side, short revents, int64_t now, std::vector<uint8_t> &buffer, std::vector<uint8_t> &expect,
           Totals &totals, bool upstream_receiver) {
  if (side.closed) return;
  bool can_read = !side.eof && !side.idle && !(side.read_pause_ms && now < side.next_read) &&
                  !(side.stall_at >= 0 && now >= side.started + side.stall_at &&
                    now < side.started + side.stall_at + side.stall_ms);
  if (side.idle && (revents & (POLLHUP | POLLERR))) {
    // The server closed or reset the idle client: that is what it waits for.
    side.idle = false;
    side.idle_done = true;
  }
  if (side.idle_done) can_read = !side.eof;
  if ((revents & (POLLIN | POLLHUP | POLLERR)) && can_read) {
    size_t want = std::min(side.read_chunk, buffer.size());
    ssize_t n = recv(side.fd, buffer.data(), want, MSG_DONTWAIT);
    if (n > 0) {
      size_t got = static_cast<size_t>(n);
      fill(expect.data(), got, side.received, side.recv_seed);
      if (side.mismatch_at == UINT64_MAX && std::memcmp(buffer.data(), expect.data(), got) != 0) {
        for (size_t i = 0; i < got; ++i)
          if (buffer[i] != expect[i]) {
            side.mismatch_at = side.received + i;
            break;
          }
      }
      side.received += got;
      (upstream_receiver ? totals.up : totals.down) += got;
      if (side.read_pause_ms) side.next_read = now + side.read_pause_ms;
    } else if (n == 0) {
      side.eof = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      side.error = true;
      plain_close(side);
      return;
    }
  }
  if (side.fate == Fate::reset && side.sent + side.received >= side.fate_at) {
    side.did_reset = true;
    reset_close(side);
    return;
  }
  if (side.fate == Fate::idle && !side.idle && !side.idle_done && side.sent >= side.fate_at &&
      side.received >= side.idle_after_received) {
    side.idle = true;
    side.idle_before_shut = !side.shut;
  }
  bool can_send =
      !side.idle && !side.idle_done && side.sent < side.send_total && !(side.trickle && now < side.next_send);
  if ((revents & POLLOUT) && can_send) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(side.send_total - side.sent, buffer.size()));
    if (side.trickle) want = std::min<size_t>(want, 1 + static_cast<size_t>(mix(side.sent ^ side.send_seed) % 300));
    fill(buffer.data(), want, side.sent, side.send_seed);
    ssize_t n = send(side.fd, buffer.data(), want, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      side.sent += static_cast<uint64_t>(n);
      if (side.trickle) side.next_send = now + 5 + static_cast<int64_t>(mix(side.sent) % 25);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      side.error = true;
      plain_close(side);
      return;
    }
  }
  if (side.fate == Fate::idle && !side.idle && !side.idle_done && side.sent >= side.fate_at &&
      side.received >= side.idle_after_received) {
    side.idle = true;
    side.idle_before_shut = !side.shut;
  }
  if (!side.idle && !side.idle_done && !side.shut && side.sent == side.send_total) {
    shutdown(side.fd, SHUT_WR);
    side.shut = true;
  }
  if ((side.shut || side.idle_done) && side.eof) plain_close(side);
}

short wanted_events(const Side &side, int64_t now) {
  if (side.idle) return 0;  // POLLHUP/POLLERR are reported anyway
  short events = 0;
  bool stalled =
      side.stall_at >= 0 && now >= side.started + side.stall_at && now < side.started + side.stall_at + side.stall_ms;
  if (!side.eof && (side.idle_done || (!stalled && !(side.read_pause_ms && now < side.next_read)))) events |= POLLIN;
  if (!side.idle_done && side.sent < side.send_total && !(side.trickle && now < side.next_send)) events |= POLLOUT;
  return events;
}

int connect_to(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int local_port(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
  return ntohs(address.sin_port);
}

uint64_t env_number(const char *name, uint64_t fallback) {
  const char *text = std::getenv(name);
  return text && *text ? std::strtoull(text, nullptr, 0) : fallback;
}

void chaos_flows(void **) {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 4096 && files.rlim_max >= 4096) {
    files.rlim_cur = 4096;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  uint64_t seed = env_number("GW_CHAOS_SEED",
                             static_cast<uint64_t>(std::random_device{}()) ^ static_cast<uint64_t>(now_ms()) << 20);
  int flows_wanted = static_cast<int>(env_number("GW_CHAOS_FLOWS", 300));
  std::printf("chaos: GW_CHAOS_SEED=%llu GW_CHAOS_FLOWS=%d (set both to replay these plans)\n",
              static_cast<unsigned long long>(seed), flows_wanted);
  std::fflush(stdout);
  std::mt19937_64 rng(seed);

  // The backend: a plain listening socket that this thread serves.
  int backend_port = 0;
  int backend_listener = gwc::listen_loopback(512, SOCK_NONBLOCK, &backend_port);
  gw::SocketAddress backend;
  backend.length = sizeof backend.storage;
  assert_int_equal(getsockname(backend_listener, backend.get(), &backend.length), 0);

  Record record;
  gw::ServerConfig server_config;
  server_config.stop_timeout_ms = kStopTimeoutMs;
  server_config.logger.max_level = gw::LogLevel::info;
  server_config.logger.sink = &Record::sink;
  server_config.logger.user_data = &record;
  std::unique_ptr<gw::Server> server;
  assert_int_equal(gw::Server::create(server, server_config), 0);
  gw::ListenerConfig front_config;
  front_config.name = "chaos";
  front_config.backlog = 256;
  front_config.idle_timeout_ms = kIdleTimeoutMs;
  gw::Listener *front = nullptr;
  assert_int_equal(
      server->listen(front, "127.0.0.1:0", front_config, std::make_shared<RecordingForwarder>(backend, record)), 0);
  int front_port = front->port();
  std::thread loop([&] { server->run(); });

  std::vector<Flow> flows(static_cast<size_t>(flows_wanted));
  for (int i = 0; i < flows_wanted; ++i) {
    Flow &flow = flows[static_cast<size_t>(i)];
    flow.id = i;
    make_side(flow.client, rng, true);
    make_side(flow.backend, rng, false);
    flow.client.send_seed = flow.backend.recv_seed = seed * 2 + static_cast<uint64_t>(i) * 2 + 1;
    flow.backend.send_seed = flow.client.recv_seed = seed * 2 + static_cast<uint64_t>(i) * 2 + 2;
    limit_slow_streams(flow);
  }

  std::vector<Pending> pending;
  std::vector<uint8_t> buffer(256 * 1024), expect(256 * 1024);
  Totals totals;
  int launched = 0, reloads = 0, orphans = 0;
  std::map<int, int> launches_from;  // client port -> flows launched from it
  bool stop_sent = false;
  int64_t start = now_ms();
  int64_t deadline = start + kDeadlineMs;

  auto flow_done = [&](Flow &flow) {
    if (!flow.launched || !flow.client.closed) return false;
    if (flow.backend_seen && !flow.backend.closed) return false;
    return record.closed(flow.port, flow.nth);
  };

  while (now_ms() < deadline) {
    int64_t now = now_ms();
    int active = 0;
    bool all_done = true;
    for (Flow &flow : flows) {
      bool done = flow_done(flow);
      if (flow.launched && !done) ++active;
      if (!done) all_done = false;
    }
    if (all_done && pending.empty() && server->state() == gw::Server::State::stopped) break;

    // Start flows up to the concurrency bound; reload twice on the way, and
    // ask for the graceful stop once the last flow is under way.
    while (launched < flows_wanted && active < kConcurrency) {
      Flow &flow = flows[static_cast<size_t>(launched)];
      int fd = connect_to(front_port, flow.client.rcvbuf);
      if (fd < 0) fail_msg("flow %d: connect: %s", flow.id, std::strerror(errno));
      uint8_t header[8];
      uint64_t id = static_cast<uint64_t>(flow.id);
      std::memcpy(header, &id, sizeof header);
      if (send(fd, header, sizeof header, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof header))
        fail_msg("flow %d: header: %s", flow.id, std::strerror(errno));
      set_nonblock(fd);
      flow.client.fd = fd;
      flow.port = local_port(fd);
      // The previous flow from this port has closed its client socket, but
      // the server may not have seen its connection yet: count launches.
      flow.nth = launches_from[flow.port]++;
      flow.idle_logged_before = record.idle_logged(flow.port);
      flow.client.started = now;
      flow.launched = true;
      ++launched;
      ++active;
      if (launched == flows_wanted / 3 || launched == 2 * flows_wanted / 3) {
        // A reload: new clients get other buffer limits and splice on or
        // off, and a new handler; the old one stays with its clients.
        gw::ListenerConfig next = front_config;
        next.splice = reloads % 2 == 1;
        next.high_water = reloads % 2 ? 64 * 1024 : 16 * 1024;
        next.low_water = reloads % 2 ? 16 * 1024 : 4 * 1024;
        next.max_output = reloads % 2 ? 1024 * 1024 : 128 * 1024;
        auto handler = std::make_shared<RecordingForwarder>(backend, record);
        server->loop().post([front, next, handler]() mutable { front->reconfigure(next, std::move(handler)); });
        server->loop().wake();
        ++reloads;
      }
    }
    if (launched == flows_wanted && !stop_sent) {
      server->stop();
      stop_sent = true;
    }

    // Idle clients wait until the log says the server is closing them, then
    // read what is left and close: the condition, not a guess at the time.
    for (Flow &flow : flows) {
      Side &c = flow.client;
      // A backend that reset makes the server close its client for that
      // reason instead, and a client that had sent its FIN before going
      // quiet may see its flow end normally once every byte is in its socket:
      // either way the idle client has nothing left to wait for.
      if (c.idle && !c.closed &&
          (record.idle_logged(flow.port) > flow.idle_logged_before || flow.backend.did_reset ||
           record.closed(flow.port, flow.nth))) {
        c.idle = false;
        c.idle_done = true;
      }
    }

    std::vector<pollfd> fds;
    std::vector<std::pair<Side *, bool>> owners;  // side, is it the backend
    fds.push_back({backend_listener, POLLIN, 0});
    owners.push_back({nullptr, false});
    for (Pending &p : pending) {
      fds.push_back({p.fd, POLLIN, 0});
      owners.push_back({nullptr, true});
    }
    for (Flow &flow : flows) {
      if (flow.launched && !flow.client.closed) {
        fds.push_back({flow.client.fd, wanted_events(flow.client, now), 0});
        owners.push_back({&flow.client, false});
      }
      if (flow.backend_seen && !flow.backend.closed) {
        fds.push_back({flow.backend.fd, wanted_events(flow.backend, now), 0});
        owners.push_back({&flow.backend, true});
      }
    }
    int ready = poll(fds.data(), fds.size(), 5);
    if (ready < 0 && errno != EINTR) fail_msg("poll: %s", std::strerror(errno));
    now = now_ms();

    // The flow ids of backend connections accepted earlier (their pollfds
    // follow the listener's), then the sides, then new backend connections.
    size_t polled_pending = pending.size();
    std::vector<Pending> still;
    for (size_t i = 0; i < polled_pending; ++i) {
      Pending p = pending[i];
      if (!(fds[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) {
        still.push_back(p);
        continue;
      }
      ssize_t n = recv(p.fd, p.header + p.have, sizeof p.header - p.have, MSG_DONTWAIT);
      if (n > 0) p.have += static_cast<size_t>(n);
      if (p.have == sizeof p.header) {
        uint64_t id;
        std::memcpy(&id, p.header, sizeof id);
        if (id >= flows.size() || flows[id].backend_seen)
          fail_msg("backend got a bad flow id %llu", static_cast<unsigned long long>(id));
        Flow &flow = flows[id];
        flow.backend_seen = true;
        flow.backend.fd = p.fd;
        flow.backend.started = now;
        continue;
      }
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close(p.fd);  // an orphan: its client went away before its id passed
        ++orphans;
        continue;
      }
      still.push_back(p);
    }
    for (size_t index = 1 + polled_pending; index < fds.size(); ++index) {
      Side *side = owners[index].first;
      if (side->closed || side->fd != fds[index].fd) continue;
      drive(*side, fds[index].revents, now, buffer, expect, totals, owners[index].second);
    }
    if (fds[0].revents & POLLIN) {
      for (int i = 0; i < 64; ++i) {
        int fd = accept4(backend_listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        still.push_back({fd, {}, 0});
      }
    }
    pending.swap(still);
  }
  int64_t elapsed = now_ms() - start;

  bool stopped = server->state() == gw::Server::State::stopped;
  if (!stopped) server->stop();
  loop.join();
  for (Pending &p : pending) close(p.fd);
  close(backend_listener);

  // ---- accounting ----
  std::string all_log;
  for (const std::string &line : record.lines) all_log += line + "\n";
  int dropped_flows = 0;
  int failures = 0, clean = 0, clean_exact = 0, disrupted = 0, idle = 0, resets = 0, bulk = 0;
  std::map<std::string, int> by_reason;
  auto complain = [&](const Flow &flow, const char *what) {
    if (++failures <= 20) {
      std::printf(
          "flow %d (port %d): %s\n  client: sent %llu/%llu recv %llu/%llu eof %d err %d fate %d reset %d idle %d/%d "
          "closed %d\n"
          "  backend: seen %d sent %llu/%llu recv %llu/%llu eof %d err %d fate %d reset %d closed %d\n",
          flow.id, flow.port, what, (unsigned long long)flow.client.sent, (unsigned long long)flow.client.send_total,
          (unsigned long long)flow.client.received, (unsigned long long)flow.backend.send_total, flow.client.eof,
          flow.client.error, static_cast<int>(flow.client.fate), flow.client.did_reset, flow.client.idle,
          flow.client.idle_done, flow.client.closed, flow.backend_seen, (unsigned long long)flow.backend.sent,
          (unsigned long long)flow.backend.send_total, (unsigned long long)flow.backend.received,
          (unsigned long long)flow.client.send_total, flow.backend.eof, flow.backend.error,
          static_cast<int>(flow.backend.fate), flow.backend.did_reset, flow.backend.closed);
    }
  };
  for (Flow &flow : flows) {
    Side &c = flow.client, &b = flow.backend;
    if (c.send_total >= 128 * 1024 || b.send_total >= 128 * 1024) ++bulk;
    if (c.mismatch_at != UINT64_MAX) complain(flow, "client received bytes that the backend did not send");
    if (b.mismatch_at != UINT64_MAX) complain(flow, "backend received bytes that the client did not send");
    if (b.received > c.sent || c.received > b.sent) complain(flow, "more bytes arrived than were sent");
    gw::CloseReason reason{};
    std::vector<gw::CloseReason> reasons = record.reasons(flow.port, flow.nth);
    if (reasons.size() != 1) {
      complain(flow, reasons.empty() ? "the server never closed it" : "the server closed it more than once");
      continue;
    }
    reason = reasons[0];
    by_reason[gw::close_reason_name(reason)]++;
    char line[128];
    std::snprintf(line, sizeof line, "chaos: 127.0.0.1:%d closed (%s)\n", flow.port, gw::close_reason_name(reason));
    if (all_log.find(line) == std::string::npos) complain(flow, "no log line for its close");
    if (!c.closed || (flow.backend_seen && !b.closed)) complain(flow, "an end was still open at the deadline");
    bool up_lost = b.received < c.sent, down_lost = c.received < b.sent;
    if (flow.clean()) {
      ++clean;
      if (reason != gw::CloseReason::peer)
        complain(flow, "a flow without resets or idleness did not end as 'peer closed'");
      if (!flow.backend_seen || up_lost || down_lost || c.sent != c.send_total || b.sent != b.send_total || !c.eof ||
          !b.eof || c.error || b.error)
        complain(flow, "a flow without resets or idleness is not byte-exact with both EOFs");
      else
        ++clean_exact;
      continue;
    }
    ++disrupted;
    if (c.fate == Fate::idle) ++idle;
    if (c.did_reset || b.did_reset) ++resets;
    if (c.idle_before_shut && b.fate == Fate::normal && reason != gw::CloseReason::idle)
      complain(flow, "an idle client was not closed for idleness");
    // Loss is accounted for by a reset of one of the ends or by a close the
    // server gave another reason than the peer's end.
    // A close that had to drop queued output says so in a warning of its own.
    char dropped[96];
    std::snprintf(dropped, sizeof dropped, "chaos: 127.0.0.1:%d: ", flow.port);
    bool dropped_logged = false;
    for (size_t at = all_log.find(dropped); at != std::string::npos && !dropped_logged;
         at = all_log.find(dropped, at + 1))
      dropped_logged = all_log.compare(all_log.find(' ', at + std::strlen(dropped)), 20, " queued bytes could ") == 0;
    if (dropped_logged) ++dropped_flows;
    bool explained = c.did_reset || b.did_reset || reason != gw::CloseReason::peer || dropped_logged;
    if ((up_lost || down_lost) && !explained) complain(flow, "bytes lost without a reset or a logged close");
  }
  {
    std::lock_guard<std::mutex> lock(record.mutex);
    if (record.opens != flows_wanted) {
      std::printf("the server opened %d connections for %d flows\n", record.opens, flows_wanted);
      ++failures;
    }
  }
  if (!stopped) {
    std::printf("the server had not stopped %lld ms after the start\n", (long long)elapsed);
    ++failures;
  }
  if (front->stats().clients.load() != 0 || server->stats().refused.load() != 0) {
    std::printf("after the stop: %llu clients open, %llu refused\n", (unsigned long long)front->stats().clients.load(),
                (unsigned long long)server->stats().refused.load());
    ++failures;
  }
  std::printf(
      "chaos: seed %llu, %d flows (%d bulk, %d clean and byte-exact of %d, %d disrupted: %d idle, %d reset), "
      "%d reloads, graceful stop, %d orphaned backend connections, %d closes that dropped queued output (logged); %.1f "
      "MB up, %.1f MB down, %.1f MB spliced, in %lld ms\n",
      static_cast<unsigned long long>(seed), flows_wanted, bulk, clean_exact, clean, disrupted, idle, resets, reloads,
      orphans, dropped_flows, totals.up / 1e6, totals.down / 1e6, server->stats().bytes_spliced.load() / 1e6,
      (long long)elapsed);
  std::printf("chaos: server close reasons:");
  for (auto &entry : by_reason) std::printf(" %s %d;", entry.first.c_str(), entry.second);
  std::printf("\n");
  if (failures) {
    std::printf("chaos: %d failures; replay the plans with GW_CHAOS_SEED=%llu GW_CHAOS_FLOWS=%d\n", failures,
                static_cast<unsigned long long>(seed), flows_wanted);
    if (std::getenv("GW_CHAOS_LOG")) std::printf("%s", all_log.c_str());
  }
  std::fflush(stdout);
  for (Flow &flow : flows) {
    if (flow.client.fd >= 0) close(flow.client.fd);
    if (flow.backend.fd >= 0) close(flow.backend.fd);
  }
  server.reset();
  assert_int_equal(failures, 0);
}

}  // namespace

int main() {
  // SIGPIPE keeps its default action (kill) on purpose: splice() has no
  // MSG_NOSIGNAL, and a spliced client that resets must not kill a program
  // that embeds the core without ignoring SIGPIPE (the forwarder blocks it on
  // its loop thread and takes back what splice raised). Every send() of the
  // test itself uses MSG_NOSIGNAL.
  const CMUnitTest tests[] = {
      cmocka_unit_test(chaos_flows),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
