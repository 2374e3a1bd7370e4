// SPDX-License-Identifier: MIT
// The core's forwarder, tested in C++ against the library itself: bytes pass
// intact both ways, a bulk flow switches to splice() (and only a bulk flow),
// and `splice = false` keeps every byte in user space.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdint>
#include <cstring>
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

struct Fixture {
  std::unique_ptr<gw::Server> server;
  std::shared_ptr<gw::EchoHandler> echo = std::make_shared<gw::EchoHandler>();
  std::shared_ptr<gw::Forwarder> forwarder;
  gw::Listener *backend = nullptr;
  gw::Listener *front = nullptr;

  explicit Fixture(bool splice, gw::Framing framing = gw::Framing::raw, size_t max_frame = 65536,
                   uint64_t frame_timeout_ms = 0) {
    gw::ServerConfig config;
    config.logger.max_level = gw::LogLevel::error;
    assert_int_equal(gw::Server::create(server, config), 0);
    assert_int_equal(server->listen(backend, "127.0.0.1:0", gw::ListenerConfig{}, echo), 0);
    gw::SocketAddress to = backend->local_address();
    forwarder = std::make_shared<gw::Forwarder>(to, "tcp://" + to.to_string());
    gw::ListenerConfig front_config;
    front_config.splice = splice;
    front_config.framing = framing;
    front_config.max_frame = max_frame;
    front_config.frame_timeout_ms = frame_timeout_ms;
    assert_int_equal(server->listen(front, "127.0.0.1:0", front_config, forwarder), 0);
  }
};

using gwc::connect_to;

// Reads exactly `length` bytes, each wait bounded: a lost byte fails, not hangs.
void read_exactly(int fd, uint8_t *data, size_t length) {
  size_t done = 0;
  while (done < length) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) fail_msg("timed out after %zu of %zu bytes", done, length);
    ssize_t n = read(fd, data + done, length - done);
    if (n <= 0) fail_msg("read returned %zd after %zu of %zu bytes", n, done, length);
    done += static_cast<size_t>(n);
  }
}

std::vector<uint8_t> pattern(size_t length) {
  std::vector<uint8_t> data(length);
  uint32_t x = 2463534242u;  // xorshift: no repeating period a bug could hide in
  for (auto &byte : data) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    byte = static_cast<uint8_t>(x);
  }
  return data;
}

// Sends `payload` through the forwarder to the echo backend and checks that
// the same bytes come back, then that the client sees EOF after its own.
void round_trip(Fixture &f, const std::vector<uint8_t> &payload, size_t chunk) {
  std::thread loop([&] { f.server->run(); });
  int fd = connect_to(f.front->port());
  std::thread writer([&] {
    for (size_t sent = 0; sent < payload.size();) {
      size_t n = std::min(chunk, payload.size() - sent);
      ssize_t w = write(fd, payload.data() + sent, n);
      if (w <= 0) return;
      sent += static_cast<size_t>(w);
    }
    shutdown(fd, SHUT_WR);
  });
  std::vector<uint8_t> back(payload.size());
  read_exactly(fd, back.data(), back.size());
  writer.join();
  uint8_t extra;
  pollfd p{fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 5000), 1);
  assert_int_equal(read(fd, &extra, 1), 0);  // half-close went through and came back
  close(fd);
  f.server->stop();
  loop.join();
  assert_true(back == payload);
}

void bulk_flow_is_spliced(void **) {
  Fixture f(true);
  auto payload = pattern(8 << 20);
  round_trip(f, payload, 1 << 20);
  assert_int_equal(f.front->stats().bytes_in.load(), payload.size());
  assert_int_equal(f.front->stats().bytes_out.load(), payload.size());
  // Both directions of a bulk flow leave user space; the first bytes (before
  // the flow proved bulk) were copied, so less than everything, but most.
  uint64_t spliced = f.front->stats().bytes_spliced.load();
  assert_true(spliced > payload.size());
  assert_true(spliced <= 2 * payload.size());
}

void splice_can_be_turned_off(void **) {
  Fixture f(false);
  auto payload = pattern(8 << 20);
  round_trip(f, payload, 1 << 20);
  assert_int_equal(f.front->stats().bytes_out.load(), payload.size());
  assert_int_equal(f.front->stats().bytes_spliced.load(), 0);
}

void small_exchanges_stay_buffered(void **) {
  Fixture f(true);
  std::thread loop([&] { f.server->run(); });
  int fd = connect_to(f.front->port());
  for (int i = 0; i < 200; ++i) {
    uint8_t request[32], answer[32];
    for (auto &byte : request) byte = static_cast<uint8_t>(i);
    assert_int_equal(write(fd, request, sizeof request), sizeof request);
    read_exactly(fd, answer, sizeof answer);
    assert_memory_equal(request, answer, sizeof request);
  }
  close(fd);
  f.server->stop();
  loop.join();
  assert_int_equal(f.front->stats().bytes_in.load(), 200 * 32);
  assert_int_equal(f.front->stats().bytes_spliced.load(), 0);
}

// This process's connected sockets whose local (peer = false) or remote
// (peer = true) port is `port`. The gateway's own sockets are reachable from
// the test only this way: through /proc/self/fd, since it runs in-process.
std::vector<int> connected_sockets_on(int port, bool peer) {
  std::vector<int> found;
  DIR *dir = opendir("/proc/self/fd");
  assert_non_null(dir);
  while (dirent *entry = readdir(dir)) {
    int fd = atoi(entry->d_name);
    sockaddr_in local{}, remote{};
    socklen_t local_length = sizeof local, remote_length = sizeof remote;
    if (entry->d_name[0] == '.' || fd == dirfd(dir)) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &local_length) != 0 || local.sin_family != AF_INET)
      continue;
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&remote), &remote_length) != 0) continue;  // a listener
    if (ntohs(peer ? remote.sin_port : local.sin_port) == port) found.push_back(fd);
  }
  closedir(dir);
  return found;
}

int nodelay_of(int fd) {
  int on = -1;
  socklen_t length = sizeof on;
  assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &length), 0);
  return on;
}

// A client's small writes reach the backend as they come: both of the
// gateway's sockets of a forwarded client are TCP_NODELAY. Without it on the
// backend's side, a request written in two parts waited for the backend's
// delayed ACK of the first (40 ms a request). The accepted sockets take it
// from the listener after the first client, so three clients are checked.
void both_sockets_of_a_client_send_without_nagle(void **) {
  Fixture f(true);
  std::thread loop([&] { f.server->run(); });
  int clients[3];
  for (int &fd : clients) {
    fd = connect_to(f.front->port());
    uint8_t byte = 'x';
    assert_int_equal(write(fd, &byte, 1), 1);
    read_exactly(fd, &byte, 1);  // the backend is connected now
  }
  std::vector<int> accepted = connected_sockets_on(f.front->port(), false);
  std::vector<int> outgoing = connected_sockets_on(f.backend->port(), true);
  assert_int_equal(accepted.size(), 3);
  assert_int_equal(outgoing.size(), 3);
  for (int fd : accepted) assert_int_equal(nodelay_of(fd), 1);
  for (int fd : outgoing) assert_int_equal(nodelay_of(fd), 1);
  for (int fd : clients) close(fd);
  f.server->stop();
  loop.join();
}

// Framed routes check each message and pass it on exactly as framed: the
// echo backend's answer is byte for byte what the client sent, and a bulk
// framed flow never leaves user space (splice would skip the checks).
void framed_messages_pass_as_sent(void **) {
  Fixture f(true, gw::Framing::u32be, 70000);
  std::vector<uint8_t> payload;
  auto body = pattern(60000);
  for (int i = 0; i < 140; ++i) {  // 140 frames of 60000 bytes: 8.4 MB, bulk
    uint8_t header[4] = {0, 0, 0xea, 0x60};
    payload.insert(payload.end(), header, header + 4);
    payload.insert(payload.end(), body.begin(), body.end());
  }
  round_trip(f, payload, 1 << 20);
  assert_int_equal(f.front->stats().bytes_out.load(), payload.size());
  assert_int_equal(f.front->stats().bytes_spliced.load(), 0);
}

void last_line_without_newline_stays_so(void **) {
  Fixture f(true, gw::Framing::line);
  const char text[] = "first\n\nthird line\ntail without newline";
  std::vector<uint8_t> payload(text, text + sizeof text - 1);
  round_trip(f, payload, 5);
}

void oversized_frame_closes_the_client(void **) {
  Fixture f(true, gw::Framing::u16be, 8);
  std::thread loop([&] { f.server->run(); });
  int fd = connect_to(f.front->port());
  const uint8_t ok[] = {0, 3, 'a', 'b', 'c'};
  assert_int_equal(write(fd, ok, sizeof ok), sizeof ok);
  uint8_t back[sizeof ok];
  read_exactly(fd, back, sizeof back);
  assert_memory_equal(ok, back, sizeof ok);
  const uint8_t too_big[] = {0, 9};  // the prefix alone is enough to refuse
  assert_int_equal(write(fd, too_big, sizeof too_big), sizeof too_big);
  pollfd p{fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 5000), 1);
  uint8_t byte;
  assert_int_equal(read(fd, &byte, 1), 0);
  close(fd);
  f.server->stop();
  loop.join();
  assert_int_equal(f.front->stats().bytes_out.load(), sizeof ok);
}

// A server of its own (not the fixture's) that logs errors only.
std::unique_ptr<gw::Server> quiet_server() {
  gw::ServerConfig config;
  config.logger.max_level = gw::LogLevel::error;
  std::unique_ptr<gw::Server> server;
  assert_int_equal(gw::Server::create(server, config), 0);
  return server;
}

// A forwarder to 127.0.0.1:port.
std::shared_ptr<gw::Forwarder> forwarder_to(int port) {
  gw::SocketAddress to;
  assert_int_equal(gw::parse_ip_port("127.0.0.1:" + std::to_string(port), to), 0);
  return std::make_shared<gw::Forwarder>(to, "tcp://" + to.to_string());
}

// A backend that sends `payload` to its one client as fast as it takes it,
// then closes. Runs on its own thread; bounded by the client's reading.
struct Source {
  int listen_fd = -1;
  int port = 0;
  std::thread thread;

  explicit Source(const std::vector<uint8_t> &payload) {
    listen_fd = gwc::listen_loopback(4, 0, &port);
    thread = std::thread([this, &payload] {
      int fd = accept(listen_fd, nullptr, nullptr);
      if (fd < 0) return;
      for (size_t sent = 0; sent < payload.size();) {
        ssize_t n = send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the gateway closed its side: the test is over
        sent += static_cast<size_t>(n);
      }
      close(fd);
    });
  }
  ~Source() {
    thread.join();
    close(listen_fd);
  }
};

// Regression: a spliced download whose client stops reading is closed by the
// idle timeout with the to-client pipe full (256 KiB). The bytes in the pipe
// used to be read back into the loop's 64 KiB scratch buffer in one read():
// a heap overflow (ASan: WRITE of ~108 KiB). Now they come back in pieces
// and still reach the client, so what it reads is an unbroken prefix.
void spliced_close_hands_back_a_full_pipe(void **) {
  auto payload = pattern(16 << 20);
  Source source(payload);
  std::unique_ptr<gw::Server> server = quiet_server();
  auto forwarder = forwarder_to(source.port);
  gw::ListenerConfig front_config;
  front_config.idle_timeout_ms = 300;
  gw::Listener *front = nullptr;
  assert_int_equal(server->listen(front, "127.0.0.1:0", front_config, forwarder), 0);
  std::thread loop([&] { server->run(); });

  int fd = connect_to(front->port());
  std::vector<uint8_t> got(payload.size());
  read_exactly(fd, got.data(), 256 * 1024);  // bulk: the link splices
  // Fall silent until the idle timeout has closed the client; then read
  // everything that was still on its way, up to the EOF.
  size_t done = 256 * 1024;
  usleep(1500 * 1000);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) fail_msg("no EOF after %zu bytes", done);
    ssize_t n = read(fd, got.data() + done, got.size() - done);
    if (n < 0) fail_msg("read failed after %zu bytes: %s", done, strerror(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  server->stop();
  loop.join();
  assert_true(front->stats().bytes_spliced.load() > 0);
  assert_true(done < payload.size());  // the idle timeout cut the download
  assert_int_equal(done, front->stats().bytes_out.load());
  assert_memory_equal(got.data(), payload.data(), done);
}

// FNV-1a over a byte stream, in order: a lost, doubled or reordered piece
// changes it.
struct Fnv {
  uint64_t hash = 14695981039346656037ull;
  uint64_t length = 0;
  void add(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) hash = (hash ^ data[i]) * 1099511628211ull;
    length += n;
  }
};

// A backend that reads its one client slowly, to the EOF: pieces of varying
// size and, every 2 MiB, a pause that lets the gateway's pipe fill and its
// client stall. Runs on its own thread; every wait is bounded (5 s), so a
// stalled flow ends the read instead of hanging the test.
struct SlowSink {
  int listen_fd = -1;
  int port = 0;
  Fnv got;
  bool timed_out = false;
  std::thread thread;

  SlowSink() {
    listen_fd = gwc::listen_loopback(4, 0, &port);
    thread = std::thread([this] { serve(); });
  }
  void serve() {
    int fd = accept(listen_fd, nullptr, nullptr);
    if (fd < 0) return;
    std::vector<uint8_t> piece(96 * 1024);
    uint64_t next_pause = 2 << 20;
    for (size_t turn = 0;; ++turn) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 5000) != 1) {
        timed_out = true;
        break;
      }
      size_t want = 1024 + (turn * 7919) % (piece.size() - 1024);  // 1 KiB to 96 KiB
      ssize_t n = read(fd, piece.data(), want);
      if (n <= 0) break;
      got.add(piece.data(), static_cast<size_t>(n));
      if (got.length >= next_pause) {
        usleep(20 * 1000);
        next_pause += 2 << 20;
      }
    }
    close(fd);
  }
  ~SlowSink() {
    if (thread.joinable()) thread.join();
    close(listen_fd);
  }
};

// `bytes` through a spliced route into a backend that reads slowly: every
// byte arrives once and in order (the hash of the stream), through pipes
// that fill and stall the client again and again.
void upload_to_a_slow_backend(size_t bytes) {
  auto payload = pattern(bytes);
  Fnv sent;
  sent.add(payload.data(), payload.size());
  SlowSink sink;
  std::unique_ptr<gw::Server> server = quiet_server();
  auto forwarder = forwarder_to(sink.port);
  gw::Listener *front = nullptr;
  assert_int_equal(server->listen(front, "127.0.0.1:0", gw::ListenerConfig{}, forwarder), 0);
  std::thread loop([&] { server->run(); });

  int fd = connect_to(front->port());
  for (size_t done = 0; done < payload.size();) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 5000) != 1) fail_msg("the gateway took nothing for 5 s after %zu bytes", done);
    size_t n = std::min<size_t>(1 << 20, payload.size() - done);
    ssize_t w = send(fd, payload.data() + done, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN) continue;
    if (w <= 0) fail_msg("write failed after %zu bytes: %s", done, strerror(errno));
    done += static_cast<size_t>(w);
  }
  shutdown(fd, SHUT_WR);
  sink.thread.join();  // the backend has read to the EOF (or timed out)
  close(fd);
  server->stop();
  loop.join();
  assert_false(sink.timed_out);
  assert_int_equal(sink.got.length, payload.size());
  assert_true(sink.got.hash == sent.hash);
  assert_true(front->stats().bytes_spliced.load() > payload.size() / 2);
}

// 64 MiB, through pipes that also grow.
void large_upload_reaches_a_slow_backend_intact(void **) { upload_to_a_slow_backend(64 << 20); }

// With the process over its pipe quota (a daemon whose pipes already hold
// fs.pipe-user-pages-soft) the pipes are 8 KiB and cannot grow: 16 MiB still
// arrive whole, spliced. (test_splice_pipe.cpp checks that such a pipe knows
// when it is full.)
void upload_with_the_pipe_quota_spent_arrives_intact(void **) {
  gwc::PipeQuotaSpent spent;
  upload_to_a_slow_backend(16 << 20);
}

// Waits up to `ms` for the peer's EOF, discarding what comes before it.
bool closed_within(int fd, int ms) {
  uint8_t sink[256];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) != 1) return false;
    ssize_t n = read(fd, sink, sizeof sink);
    if (n <= 0) return true;
  }
}

// frame_timeout: a frame that has begun must be complete in time. Whole
// lines pass however slowly they follow each other; a line that trickles in
// one byte at a time past the deadline closes its client, and only it.
void frame_timeout_closes_a_trickling_frame(void **) {
  Fixture f(true, gw::Framing::line, 65536, 300);
  std::thread loop([&] { f.server->run(); });
  int patient = connect_to(f.front->port());
  int trickler = connect_to(f.front->port());
  for (int i = 0; i < 3; ++i) {  // 3 lines, 200 ms apart: each is complete
    assert_int_equal(write(patient, "ok\n", 3), 3);
    uint8_t back[3];
    read_exactly(patient, back, sizeof back);
    assert_memory_equal(back, "ok\n", 3);
    usleep(200 * 1000);
  }
  bool closed = false;
  for (int i = 0; i < 20 && !closed; ++i) {  // one byte per 100 ms, never a '\n'
    if (write(trickler, "x", 1) != 1) break;
    pollfd p{trickler, POLLIN, 0};
    closed = poll(&p, 1, 100) == 1 && closed_within(trickler, 100);
  }
  assert_true(closed || closed_within(trickler, 3000));
  assert_int_equal(write(patient, "still\n", 6), 6);
  uint8_t back[6];
  read_exactly(patient, back, sizeof back);
  assert_memory_equal(back, "still\n", 6);
  close(patient);
  close(trickler);
  f.server->stop();
  loop.join();
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(bulk_flow_is_spliced),
      cmocka_unit_test(splice_can_be_turned_off),
      cmocka_unit_test(small_exchanges_stay_buffered),
      cmocka_unit_test(both_sockets_of_a_client_send_without_nagle),
      cmocka_unit_test(framed_messages_pass_as_sent),
      cmocka_unit_test(last_line_without_newline_stays_so),
      cmocka_unit_test(oversized_frame_closes_the_client),
      cmocka_unit_test(spliced_close_hands_back_a_full_pipe),
      cmocka_unit_test(large_upload_reaches_a_slow_backend_intact),
      cmocka_unit_test(frame_timeout_closes_a_trickling_frame),
      // Last: a failed assertion would leave the quota spent (cmocka's
      // longjmp skips the destructor).
      cmocka_unit_test(upload_with_the_pipe_quota_spent_arrives_intact),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
