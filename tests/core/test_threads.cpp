// SPDX-License-Identifier: MIT
// The core's threading checks (EventLoop::assert_in_loop_thread): with
// GW_CHECK_THREADS on, a loop-thread-only entry point called from another
// thread aborts and names itself on stderr. Each case runs in a forked child,
// which is the only way to watch a process abort; the thread-safe stop() from
// another thread must not abort. With the checks compiled out there is
// nothing to observe, and every case says it is skipped.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "core_helpers.hpp"

#include "gw/server.hpp"

namespace {

struct QuietHandler final : gw::ConnectionHandler {};

// What a child sets up on its main thread, which is then the loop thread: a
// server, one listener with one accepted client, and a timer.
struct Child {
  std::unique_ptr<gw::Server> server;
  gw::Listener *listener = nullptr;
  std::unique_ptr<gw::Timer> timer;
  int client = -1;

  bool set_up() {
    gw::ServerConfig config;
    config.logger.max_level = gw::LogLevel::error;
    if (gw::Server::create(server, config) != 0) return false;
    if (server->listen(listener, "127.0.0.1:0", gw::ListenerConfig{}, std::make_shared<QuietHandler>()) != 0)
      return false;
    timer = std::make_unique<gw::Timer>(server->loop(), [] {});
    client = gwc::connect_to(listener->port());
    for (int i = 0; i < 1000 && listener->client_count() == 0; ++i) {
      server->dispatch_ready();
      usleep(1000);
    }
    return listener->client_count() == 1;
  }
  gw::Connection &connection() { return *listener->open_clients().front(); }
};

struct Outcome {
  int status = 0;
  std::string stderr_text;
};

// Forks a child that sets up a Child, runs `call` on a second thread and, if
// that returns, tears down on its main thread and exits 0. Returns how the
// child ended and what it wrote to stderr. Unused without GW_CHECK_THREADS.
[[maybe_unused]] Outcome run_in_child(const std::function<void(Child &)> &call) {
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  std::fflush(nullptr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);  // an expected abort must not write a core file
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    Child child;
    if (!child.set_up()) _exit(3);
    std::thread other([&] { call(child); });
    other.join();
    close(child.client);
    child.timer.reset();
    child.server.reset();
    _exit(0);
  }
  close(pipe_fds[1]);
  Outcome outcome;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) outcome.stderr_text.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  assert_int_equal(waitpid(pid, &outcome.status, 0), pid);
  return outcome;
}

void expect_abort_naming(const char *where, const std::function<void(Child &)> &call) {
#if GW_CHECK_THREADS
  Outcome outcome = run_in_child(call);
  if (!WIFSIGNALED(outcome.status) || WTERMSIG(outcome.status) != SIGABRT ||
      outcome.stderr_text.find(where) == std::string::npos) {
    std::fprintf(stderr, "%s off the loop thread: status %#x, stderr: %s\n", where, outcome.status,
                 outcome.stderr_text.c_str());
    fail();
  }
#else
  (void)where;
  (void)call;
  skip();  // built without GW_CHECK_THREADS: the checks are compiled out
#endif
}

void server_stop_now_aborts(void **) {
  expect_abort_naming("Server::stop_now", [](Child &c) { c.server->stop_now(); });
}

void server_listen_aborts(void **) {
  expect_abort_naming("Server::listen", [](Child &c) {
    gw::Listener *out = nullptr;
    c.server->listen(out, "127.0.0.1:0", gw::ListenerConfig{}, std::make_shared<QuietHandler>());
  });
}

void listener_broadcast_aborts(void **) {
  expect_abort_naming("Listener::broadcast", [](Child &c) { c.listener->broadcast("x", 1); });
}

void connection_send_aborts(void **) {
  expect_abort_naming("Connection::send", [](Child &c) { c.connection().send("x", 1); });
}

void connection_close_aborts(void **) {
  expect_abort_naming("Connection::close", [](Child &c) { c.connection().close(); });
}

void timer_start_aborts(void **) {
  expect_abort_naming("Timer::start", [](Child &c) { c.timer->start(10); });
}

void event_loop_drain_posted_aborts(void **) {
  expect_abort_naming("EventLoop::drain_posted", [](Child &c) { c.server->loop().drain_posted(); });
}

// The thread-safe entry points pass the check: stop() and post() from another
// thread, and the statistics.
void thread_safe_calls_do_not_abort(void **) {
#if GW_CHECK_THREADS
  Outcome outcome = run_in_child([](Child &c) {
    (void)c.server->stats().clients.load();
    (void)c.listener->stats().accepted.load();
    c.server->loop().post([] {});
    c.server->loop().wake();
    c.server->stop();
  });
  if (!WIFEXITED(outcome.status) || WEXITSTATUS(outcome.status) != 0) {
    std::fprintf(stderr, "thread-safe calls: status %#x, stderr: %s\n", outcome.status, outcome.stderr_text.c_str());
    fail();
  }
#else
  skip();  // built without GW_CHECK_THREADS: the checks are compiled out
#endif
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(server_stop_now_aborts),         cmocka_unit_test(server_listen_aborts),
      cmocka_unit_test(listener_broadcast_aborts),      cmocka_unit_test(connection_send_aborts),
      cmocka_unit_test(connection_close_aborts),        cmocka_unit_test(timer_start_aborts),
      cmocka_unit_test(event_loop_drain_posted_aborts), cmocka_unit_test(thread_safe_calls_do_not_abort),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
