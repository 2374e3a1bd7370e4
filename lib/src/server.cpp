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

int set_int_option(int fd, int level, int name, int value) noexcept {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

}  // namespace

Server::Server(const ServerConfig &config) : config_(config) {}

int Server::create(std::unique_ptr<Server> &out, const ServerConfig &config) {
  std::unique_ptr<Server> server(new Server(config));
  if (int rc = EventLoop::create(server->loop_)) return rc;
  server->closing_timer_ = std::make_unique<Timer>(*server->loop_, [s = server.get()] { s->on_closing_timer(); });
  out = std::move(server);
  return 0;
}

Server::~Server() {
  stop_now();
  loop_->drain_posted();  // accepted posts run exactly once, also when the loop never ran again
  loop_->run_deferred();
  closing_timer_.reset();
  stop_deadline_timer_.reset();
  listeners_.clear();
}

int Server::listen(Listener *&out, std::string_view address, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler) {
  ListenAddress where;
  if (int rc = parse_listen_address(address, where)) return rc;
  return listen(out, where, config, std::move(handler));
}

int Server::listen(Listener *&out, ListenAddress where, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler) {
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

int Server::adopt(Listener *&out, int fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler) {
  if (state_ != State::running) return err::ESTATE;
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) return -EBADF;
  int type = 0;
  socklen_t length = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) return errno == ENOTSOCK ? -ENOTSOCK : -errno;
  if (type != SOCK_STREAM) return err::ENOTSTREAM;
  int listening = 0;
  length = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0) return -errno;
  if (!listening) return err::ENOTLISTENING;
  int status_flags = ::fcntl(fd, F_GETFL);
  int fd_flags = ::fcntl(fd, F_GETFD);
  if (status_flags < 0 || fd_flags < 0) return -errno;
  if (::fcntl(fd, F_SETFL, status_flags | O_NONBLOCK) != 0) return -errno;
  if (::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) != 0) {
    int error = errno;
    ::fcntl(fd, F_SETFL, status_flags);
    return -error;
  }
  // The server owns the fd only once add_listener() has succeeded. On failure
  // it is still the caller's, who will close it: it must stay open, be the
  // same socket and get its flags back, or the caller's close would hit
  // whatever file reused the number.
  Fd owned(fd);
  int rc = add_listener(out, std::move(owned), config, std::move(handler));
  if (rc != 0) {
    owned.release();
    ::fcntl(fd, F_SETFD, fd_flags);
    ::fcntl(fd, F_SETFL, status_flags);
  }
  return rc;
}

// Moves from `fd` only on success: on failure the caller's Fd still owns it
// (listen() then closes its own socket, adopt() hands it back to its caller).
// So everything that can fail (getsockname, allocations, epoll_ctl) happens
// before the listener takes the fd, and nothing after it can fail.
int Server::add_listener(Listener *&out, Fd &&fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler) {
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
    listener.reset(new Listener(*this, Fd(), local, std::move(copy), std::move(handler)));
    listeners_.reserve(listeners_.size() + 1);  // the push_back below cannot throw
  } catch (const std::bad_alloc &) {
    return -ENOMEM;
  }
  if (int rc = loop_->add(fd.get(), EPOLLIN, listener.get())) return rc;
  listener->fd_ = std::move(fd);
  config_.logger.log(LogLevel::info, "%s: listening on %s", listener->config_->name.c_str(), where.c_str());
  out = listener.get();
  listeners_.push_back(std::move(listener));
  return 0;
}

void Server::retire(Listener &listener) {
  if (listener.retired_ || &listener.server_ != this) return;
  listener.retired_ = true;
  listener.stop_accepting();
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
    if (listener->stats_.clients.load(std::memory_order_relaxed) != 0) {
      ++i;
      continue;
    }
    retired_[i] = retired_.back();
    retired_.pop_back();
    config_.logger.log(LogLevel::info, "%s: retired listener freed (no clients left)", listener->config_->name.c_str());
    loop_->defer([this, listener] {
      auto owned = std::find_if(listeners_.begin(), listeners_.end(), [&](const auto &l) { return l.get() == listener; });
      if (owned != listeners_.end()) listeners_.erase(owned);
    });
  }
}

void Server::refuse(Listener &listener, Fd fd, const SocketAddress &peer, const char *why) {
  fd.reset();
  Stats::add(listener.stats_.refused, 1);
  Stats::add(stats_.refused, 1);
  config_.logger.log(LogLevel::info, "%s: refused %s: %s", listener.config_->name.c_str(), peer.to_string().c_str(), why);
}

void Server::admit(Listener &listener, Fd fd, const SocketAddress &peer) {
  IpKey ip = ip_key(peer);
  const char *why = nullptr;
  if (state_ != State::running) return refuse(listener, std::move(fd), peer, "the server is stopping");
  if (!listener.admit_limits(ip, why)) return refuse(listener, std::move(fd), peer, why);
  const ListenerConfig &config = *listener.config_;
  // Small request/answer exchanges are the common case on a gateway: do not
  // let Nagle hold back the answer.
  set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  if (config.keepalive) {
    set_int_option(fd.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
    if (config.keepalive_idle_s) set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(config.keepalive_idle_s));
    if (config.keepalive_interval_s)
      set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(config.keepalive_interval_s));
    if (config.keepalive_count) set_int_option(fd.get(), IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(config.keepalive_count));
  }
  int raw_fd = fd.get();
  std::unique_ptr<Connection> owned(new Connection(listener, std::move(fd), peer, next_connection_id_++));
  Connection &conn = *owned;
  if (int rc = loop_->add(raw_fd, EPOLLIN, &conn)) {
    config_.logger.log(LogLevel::error, "%s: cannot watch %s: %s", config.name.c_str(), peer.to_string().c_str(),
                       std::strerror(-rc));
    Stats::add(listener.stats_.refused, 1);
    Stats::add(stats_.refused, 1);
    return;
  }
  conn.interest_ = EPOLLIN;
  conn.last_active_ms_ = EventLoop::now_ms();
  listener.connections_.push_back(std::move(owned));
  conn.position_ = std::prev(listener.connections_.end());
  ++listener.per_ip_[ip];
  Stats::add(listener.stats_.clients, 1);
  Stats::add(listener.stats_.accepted, 1);
  Stats::add(stats_.clients, 1);
  Stats::add(stats_.accepted, 1);
  config_.logger.log(LogLevel::info, "%s: %s connected", config.name.c_str(), peer.to_string().c_str());
  listener.arm_idle_timer();
  conn.handler().on_open(conn);
}

void Server::arm_closing_timer() {
  if (closing_.empty() || closing_timer_->active()) return;
  uint64_t deadline = closing_.front()->close_deadline_ms_;
  uint64_t now = EventLoop::now_ms();
  closing_timer_->start(deadline > now ? deadline - now : 0);
}

void Server::on_closing_timer() {
  uint64_t now = EventLoop::now_ms();
  while (!closing_.empty() && closing_.front()->close_deadline_ms_ <= now) {
    Connection &conn = *closing_.front();
    conn.finish(conn.reason_);
  }
  arm_closing_timer();
}

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
                     static_cast<unsigned long long>(stats_.clients.load()));
  std::vector<Connection *> closing_now;
  for (auto &listener : listeners_) {
    for (auto &conn : listener->connections_)
      if (!conn->handler().on_stop(*conn)) closing_now.push_back(conn.get());
  }
  for (Connection *conn : closing_now) conn->close(CloseReason::stopping);
  // Whatever still runs at the deadline is cut: a stop is bounded.
  stop_deadline_timer_ = std::make_unique<Timer>(*loop_, [this] { stop_now(); });
  stop_deadline_timer_->start(config_.stop_timeout_ms);
  check_stopped();
}

void Server::stop_now() {
  // A read-modify-write (acquire), also when already stopped: every stop()
  // from another thread that returned before this point is then ordered
  // before it, so the owner may tear the server down right after (what
  // ThreadSanitizer checks, and what gw_server_destroy() relies on).
  stop_requested_.exchange(true, std::memory_order_acq_rel);
  if (state_ == State::stopped) return;
  state_ = State::stopping;
  for (auto &listener : listeners_) {
    listener->stop_accepting();
    while (!listener->connections_.empty()) listener->connections_.front()->finish(CloseReason::stopping);
  }
  while (!closing_.empty()) closing_.front()->finish(CloseReason::stopping);
  check_stopped();
}

void Server::check_stopped() noexcept {
  free_idle_retired();
  if (state_ != State::stopping || !closing_.empty()) return;
  for (auto &listener : listeners_)
    if (!listener->connections_.empty()) return;
  state_ = State::stopped;
  // From now on posts are refused; the ones accepted until here run before
  // run() or dispatch_ready() returns (drain_posted), or in the destructor.
  loop_->close_posts();
  closing_timer_->stop();
  if (stop_deadline_timer_) stop_deadline_timer_->stop();
  config_.logger.log(LogLevel::info, "stopped");
  loop_->wake();
}

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
