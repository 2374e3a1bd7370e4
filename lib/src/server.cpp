// SPDX-License-Identifier: MIT
#include "gw/server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "gw/errors.hpp"
#include "socket_options.hpp"

namespace gw {
namespace {

int somaxconn() noexcept {
  int value = -1;
  if (FILE *file = std::fopen("/proc/sys/net/core/somaxconn", "re")) {
    if (std::fscanf(file, "%d", &value) != 1) value = -1;
    std::fclose(file);
  }
  return value;
}

}  // namespace

Server::Server(const ServerConfig &config) : config_(config) {}

int Server::create(std::unique_ptr<Server> &out, const ServerConfig &config) {
  std::unique_ptr<Server> server(new Server(config));
  if (int rc = EventLoop::create(server->loop_)) return rc;
  out = std::move(server);
  return 0;
}

Server::~Server() {
  // The owner may destroy the server on the thread that joined the loop
  // thread (run() on a thread of its own): the loop is not running any more,
  // so the destroying thread takes it over for the teardown.
  loop_->bind_to_current_thread();
  stop_now();
  loop_->drain_posted();  // accepted posts run exactly once, also when the loop never ran again
  loop_->run_deferred();
  stop_deadline_timer_.reset();
  listeners_.clear();
}

int Server::listen(Listener *&out, std::string_view address, const ListenerConfig &config,
                   std::shared_ptr<ConnectionHandler> handler) {
  ListenAddress where;
  if (int rc = parse_listen_address(address, where)) return rc;
  return listen(out, where, config, std::move(handler));
}

int Server::listen(Listener *&out, ListenAddress where, const ListenerConfig &config,
                   std::shared_ptr<ConnectionHandler> handler) {
  loop_->assert_in_loop_thread("Server::listen");
  if (state_ != State::running) return err::ESTATE;
  if (config.backlog < 1) return -EINVAL;
  const std::string shown = where.to_string();
  SocketAddress &bind_to = where.address;
  Fd fd(::socket(bind_to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd && where.dual_stack && errno == EAFNOSUPPORT) {
    // ":PORT" on a host without IPv6: every IPv4 address is what was asked for.
    int port = bind_to.port();
    bind_to = SocketAddress{};
    auto *v4 = reinterpret_cast<sockaddr_in *>(&bind_to.storage);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_ANY);
    v4->sin_port = htons(static_cast<uint16_t>(port));
    bind_to.length = sizeof(sockaddr_in);
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  }
  if (!fd) return -errno;
  // Restarting must not wait for TIME_WAIT of the previous run's clients.
  if (int rc = set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1)) return rc;
  if (bind_to.family() == AF_INET6) {
    // Set explicitly both ways: the kernel default (net.ipv6.bindv6only) varies.
    if (int rc = set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, where.dual_stack ? 0 : 1)) return rc;
  }
  if (::bind(fd.get(), bind_to.get(), bind_to.length) != 0) {
    int error = errno;
    config_.logger.log(LogLevel::error, "cannot bind %s: %s", shown.c_str(), std::strerror(error));
    return -error;
  }
  int limit = somaxconn();
  if (limit > 0 && config.backlog > limit) {
    config_.logger.log(LogLevel::warning,
                       "%s: backlog %d exceeds net.core.somaxconn (%d); the kernel uses %d (raise it with sysctl)",
                       shown.c_str(), config.backlog, limit, limit);
  }
  if (::listen(fd.get(), config.backlog) != 0) return -errno;
  return add_listener(out, std::move(fd), config, std::move(handler));
}

int Server::adopt(Listener *&out, Fd &&fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler) {
  loop_->assert_in_loop_thread("Server::adopt");
  if (state_ != State::running) return err::ESTATE;
  const int raw = fd.get();
  if (raw < 0 || ::fcntl(raw, F_GETFD) < 0) return -EBADF;
  int type = 0;
  socklen_t length = sizeof type;
  if (getsockopt(raw, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno == ENOTSOCK ? -ENOTSOCK : -errno;
  if (type != SOCK_STREAM) return err::ENOTSTREAM;
  int listening = 0;
  length = sizeof listening;
  if (getsockopt(raw, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) return -errno;
  if (!listening) return err::ENOTLISTENING;
  int status_flags = ::fcntl(raw, F_GETFL);
  int fd_flags = ::fcntl(raw, F_GETFD);
  if (status_flags < 0 || fd_flags < 0) return -errno;
  if (::fcntl(raw, F_SETFL, status_flags | O_NONBLOCK) != 0) return -errno;
  if (::fcntl(raw, F_SETFD, fd_flags | FD_CLOEXEC) != 0) {
    int error = errno;
    ::fcntl(raw, F_SETFL, status_flags);
    return -error;
  }
  // add_listener() moves from fd only on success. On failure it is still the
  // caller's, who will close it: it must stay open, be the same socket and
  // get its flags back, or the caller's close would hit whatever file reused
  // the number.
  int rc = add_listener(out, std::move(fd), config, std::move(handler));
  if (rc != 0) {
    ::fcntl(raw, F_SETFD, fd_flags);
    ::fcntl(raw, F_SETFL, status_flags);
  }
  return rc;
}

// Moves from `fd` only on success: on failure the caller's Fd still owns it
// (listen() then closes its own socket, adopt() hands it back to its caller).
// So everything that can fail (getsockname, allocations, epoll_ctl) happens
// before the listener takes the fd, and nothing after it can fail.
int Server::add_listener(Listener *&out, Fd &&fd, const ListenerConfig &config,
                         std::shared_ptr<ConnectionHandler> handler) {
  SocketAddress local;
  local.length = sizeof local.storage;
  if (getsockname(fd.get(), local.get(), &local.length) != 0) return -errno;
  std::unique_ptr<Listener> listener;
  std::string where;
  try {
    where = local.to_string();
    ListenerConfig copy = config;
    if (copy.name.empty()) copy.name = where;
    if (copy.low_water > copy.high_water) copy.low_water = copy.high_water;
    listeners_.reserve(listeners_.size() + 1);  // the push_back below cannot throw
    // Last: from the moment it succeeds the listener owns the fd.
    if (int rc = Listener::create(listener, *this, *this, counters_, std::move(fd), local, std::move(copy),
                                  std::move(handler)))
      return rc;
  } catch (const std::bad_alloc &) {
    return -ENOMEM;
  }
  config_.logger.log(LogLevel::info, "%s: listening on %s", listener->config().name.c_str(), where.c_str());
  out = listener.get();
  listeners_.push_back(std::move(listener));
  return 0;
}

void Server::retire(Listener &listener) {
  loop_->assert_in_loop_thread("Server::retire");
  if (listener.retired() || &listener.server() != this) return;
  listener.retire();
  retired_.push_back(&listener);
  free_idle_retired();
}

// Runs whenever a connection has finished (through check_stopped) and when a
// listener is retired: a retired listener whose last client is gone is freed
// after the batch, since the connection that just closed may still be on the
// stack with a reference to it.
void Server::free_idle_retired() noexcept {
  for (size_t i = 0; i < retired_.size();) {
    Listener *listener = retired_[i];
    // clients counts open and closing connections: the ones that still refer to it.
    if (listener->stats().clients.load(std::memory_order_relaxed) != 0) {
      ++i;
      continue;
    }
    retired_[i] = retired_.back();
    retired_.pop_back();
    config_.logger.log(LogLevel::info, "%s: retired listener freed (no clients left)", listener->config().name.c_str());
    loop_->defer([this, listener] {
      auto owned =
          std::find_if(listeners_.begin(), listeners_.end(), [&](const auto &l) { return l.get() == listener; });
      if (owned != listeners_.end()) listeners_.erase(owned);
    });
  }
}

// The listener's one sink for what it accepted: the server's part of the
// admission (its state, the listener's rules, socket options), then the
// listener takes the client in.
void Server::on_accepted(Listener &listener, Fd fd, const SocketAddress &peer) {
  if (state_ != State::running) return listener.refuse(std::move(fd), peer, "the server is stopping");
  if (const char *why = listener.refusal_reason(ip_key(peer))) return listener.refuse(std::move(fd), peer, why);
  const ListenerConfig &config = listener.config();
  // TCP_NODELAY is there already (Listener::give_nodelay). Keepalive stays
  // per socket: a reload may change it for new clients of the same listener.
  if (config.keepalive) {
    set_int_option(fd.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
    if (config.keepalive_idle_s)
      set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(config.keepalive_idle_s));
    if (config.keepalive_interval_s)
      set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(config.keepalive_interval_s));
    if (config.keepalive_count)
      set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(config.keepalive_count));
  }
  // On failure attach() leaves fd to us: closed when it goes out of scope.
  Connection *conn = listener.attach(std::move(fd), peer, next_connection_id_++);
  if (conn) conn->handler().on_open(*conn);
}

void Server::on_client_gone(Listener &) noexcept { check_stopped(); }

void Server::stop() {
  if (stop_requested_.exchange(true)) return;
  if (loop_->in_loop_thread()) {
    begin_stop();
    return;
  }
  // A refused post means the server has stopped already: nothing to do. A
  // post that could not be queued (no memory) must not eat the request.
  try {
    loop_->post([this] { begin_stop(); });
  } catch (...) {
    stop_requested_.store(false);
    throw;
  }
}

void Server::begin_stop() {
  if (state_ != State::running) return;
  state_ = State::stopping;
  // stop_requested_ is already set (only stop() calls this): no store here,
  // so that stop_now()'s read-modify-write stays chained to every stop().
  // Listeners close before the line is logged, so that whoever reads it (a
  // person, a test) can rely on no new client being accepted from then on.
  for (auto &listener : listeners_) listener->stop_accepting();
  config_.logger.log(LogLevel::info, "stopping: %llu clients to drain",
                     static_cast<unsigned long long>(stats().clients.load()));
  std::vector<Connection *> closing_now;
  for (auto &listener : listeners_) {
    for (auto &conn : listener->open_clients())
      if (!conn->handler().on_stop(*conn)) closing_now.push_back(conn.get());
  }
  for (Connection *conn : closing_now) conn->close(CloseReason::stopping);
  // Whatever still runs at the deadline is cut: a stop is bounded.
  stop_deadline_timer_ = std::make_unique<Timer>(*loop_, [this] { stop_now(); });
  stop_deadline_timer_->start(config_.stop_timeout_ms);
  check_stopped();
}

void Server::stop_now() {
  loop_->assert_in_loop_thread("Server::stop_now");
  // A read-modify-write (acquire), also when already stopped: every stop()
  // from another thread that returned before this point is then ordered
  // before it, so the owner may tear the server down right after (what
  // ThreadSanitizer checks, and what gw_server_destroy() relies on).
  stop_requested_.exchange(true, std::memory_order_acq_rel);
  if (state_ == State::stopped) return;
  state_ = State::stopping;
  // The open ones of every listener first, then the closing ones, as the
  // listeners report them (each connection leaves its list as it aborts).
  for (auto &listener : listeners_) {
    listener->stop_accepting();
    while (!listener->open_clients().empty()) listener->open_clients().front()->abort(CloseReason::stopping);
  }
  for (auto &listener : listeners_)
    while (!listener->closing_clients().empty()) listener->closing_clients().front()->abort(CloseReason::stopping);
  check_stopped();
}

void Server::check_stopped() noexcept {
  free_idle_retired();
  if (state_ != State::stopping) return;
  for (auto &listener : listeners_)
    if (!listener->open_clients().empty() || !listener->closing_clients().empty()) return;
  state_ = State::stopped;
  // From now on posts are refused; the ones accepted until here run before
  // run() or dispatch_ready() returns (drain_posted), or in the destructor.
  loop_->close_posts();
  if (stop_deadline_timer_) stop_deadline_timer_->stop();
  config_.logger.log(LogLevel::info, "stopped");
  loop_->wake();
}

// run() and dispatch_ready() do not check the thread: they make the calling
// thread the loop thread (an embedder dispatches from the thread it chooses).
int Server::run() {
  loop_->bind_to_current_thread();
  while (state_ != State::stopped) {
    int rc = loop_->dispatch(-1);
    if (rc < 0) return rc;
  }
  loop_->drain_posted();
  return 0;
}

int Server::dispatch_ready() {
  loop_->bind_to_current_thread();
  int rc = loop_->dispatch(0);
  if (rc < 0) return rc;
  if (state_ != State::stopped) return 0;
  loop_->drain_posted();
  return 1;
}

}  // namespace gw
