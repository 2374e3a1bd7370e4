// SPDX-License-Identifier: MIT
// SplicePipe (lib/src/splice_pipe.hpp) on its own: what it believes about
// its pipe must be what the kernel made. The forwarder's interest in a
// socket follows room(): a pipe that thinks it has room when the kernel's is
// full asks epoll for a readable socket that splice() then refuses, again
// and again (a busy loop for as long as the other side is slow).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"
#include "splice_pipe.hpp"

namespace {

// A connected loopback pair: `reader` (non-blocking) has `bytes` waiting.
// Drained into, `reader` sends to `writer`, whose receive buffer takes it.
struct LoadedSocket {
  int listen_fd = -1, writer = -1, reader = -1;

  explicit LoadedSocket(size_t bytes) {
    int port = 0;
    listen_fd = gwc::listen_loopback(1, 0, &port);
    writer = gwc::connect_to(port);
    reader = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(reader >= 0);
    if (!bytes) return;
    // Loopback's receive buffer takes this much without a reader.
    std::vector<uint8_t> data(bytes, 0x5a);
    assert_int_equal(send(writer, data.data(), bytes, MSG_NOSIGNAL), static_cast<ssize_t>(bytes));
    pollfd p{reader, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 5000), 1);
  }
  ~LoadedSocket() {
    close(reader);
    close(writer);
    close(listen_fd);
  }
};

// Fills `pipe` from `socket` while it says it has room; the socket holds
// more than the pipe takes. A refusal must leave room() at 0: a pipe that
// still claims room after the kernel said full would have the forwarder
// wait for a readable socket that splice() then refuses again, at once.
void fill_while_room(gw::SplicePipe &pipe, int socket) {
  for (int fills = 0; pipe.room(); ++fills) {
    if (fills == 1000) fail_msg("1000 fills and still room() = %zu", pipe.room());
    ssize_t n = pipe.fill_from(socket);
    if (n == -EAGAIN && pipe.room())
      fail_msg("splice refused with room() = %zu and held() = %zu: the pipe is fuller than it thinks", pipe.room(),
               pipe.held());
    assert_true(n > 0 || n == -EAGAIN);
  }
  assert_true(pipe.held() > 0);
}

// Drains `pipe` into `socket` (a reader takes it): room() comes back.
void drain_all(gw::SplicePipe &pipe, int socket) {
  while (pipe.held()) assert_true(pipe.drain_to(socket) > 0);
  assert_true(pipe.room() > 0);
}

// Over the pipe quota the kernel makes pipes of two slots (F_GETPIPE_SZ:
// 8 KiB; a slot holds one piece of a socket buffer, 12 KiB in two here) and
// refuses to grow them: the pipe must not count on Linux's default 64 KiB.
void pipe_over_the_quota_knows_when_it_is_full(void **) {
  gwc::PipeQuotaSpent spent;
  LoadedSocket from(96 * 1024), to(0);
  gw::SplicePipe pipe;
  assert_int_equal(pipe.open(1024 * 1024), 0);
  fill_while_room(pipe, from.reader);
  drain_all(pipe, to.reader);
}

// Under the quota a pipe opens at 256 KiB, and a fill that does not fill it
// leaves the rest as room.
void pipe_under_the_quota_opens_at_256_kib(void **) {
  LoadedSocket socket(96 * 1024);
  gw::SplicePipe pipe;
  assert_int_equal(pipe.open(1024 * 1024), 0);
  assert_int_equal(pipe.room(), 256 * 1024);
  ssize_t n = pipe.fill_from(socket.reader);
  assert_int_equal(n, 96 * 1024);
  assert_int_equal(pipe.room(), 160 * 1024);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pipe_under_the_quota_opens_at_256_kib),
      // Last: a failed assertion would leave the quota spent (cmocka's
      // longjmp skips the destructor).
      cmocka_unit_test(pipe_over_the_quota_knows_when_it_is_full),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
