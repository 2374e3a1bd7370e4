// SPDX-License-Identifier: MIT
#include "gw/listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "gw/server.hpp"
#include "socket_options.hpp"

namespace gw {

size_t Listener::IpHash::operator()(const IpKey &key) const noexcept {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (uint8_t byte : key) hash = (hash ^ byte) * 1099511628211ull;
  return static_cast<size_t>(hash);
}

Listener::Listener(Server &server, ListenerOwner &owner, Counters &parent_counters, const SocketAddress &local,
                   ListenerConfig config, std::shared_ptr<ConnectionHandler> handler)
    : server_(server),
      owner_(owner),
      spare_(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
      local_(local),
      rules_(std::make_shared<const ListenerRules>(ListenerRules{std::move(config), std::move(handler)})),
      counters_(&parent_counters),
      retry_timer_(server.loop(),
                   [this] {
                     if (!spare_) spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
                     if (fd_) server_.loop().modify(fd_.get(), EPOLLIN, this);
                   }),
      idle_timer_(server.loop(), [this] { on_idle_timer(); }),
      closing_timer_(server.loop(), [this] { on_closing_timer(); }) {}

int Listener::create(std::unique_ptr<Listener> &out, Server &server, ListenerOwner &owner, Counters &parent_counters,
                     Fd &&fd, const SocketAddress &local, ListenerConfig config,
                     std::shared_ptr<ConnectionHandler> handler) {
  std::unique_ptr<Listener> listener(
      new Listener(server, owner, parent_counters, local, std::move(config), std::move(handler)));
  if (int rc = server.loop().add(fd.get(), EPOLLIN, listener.get())) return rc;
  if (is_tcp_family(local.family()))
    listener->nodelay_ =
        set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1) == 0 ? Nodelay::unknown : Nodelay::per_socket;
  listener->fd_ = std::move(fd);
  out = std::move(listener);
  return 0;
}

// Teardown: the owner frees its listeners on the loop thread, or on the
// thread that joined it (Server's destructor makes that the loop thread).
Listener::~Listener() {
  if (fd_) server_.loop().remove(fd_.get());
}

void Listener::check_thread(const char *where) const noexcept { server_.loop().assert_in_loop_thread(where); }

void Listener::stop_accepting() noexcept {
  check_thread("Listener::stop_accepting");
  // The spare only serves accept() (shed_one): without the listening socket it
  // would be an fd held for nothing, one per removed route and reload.
  spare_.reset();
  retry_timer_.stop();
  if (!fd_) return;
  server_.loop().remove(fd_.get());
  fd_.reset();
}

void Listener::retire() noexcept {
  check_thread("Listener::retire");
  retired_ = true;
  stop_accepting();
}

void Listener::reconfigure(ListenerConfig config, std::shared_ptr<ConnectionHandler> handler) {
  check_thread("Listener::reconfigure");
  if (config.name.empty()) config.name = rules_->config.name;
  rules_ = std::make_shared<const ListenerRules>(ListenerRules{std::move(config), std::move(handler)});
  idle_timer_.stop();
  arm_idle_timer();
}

void Listener::on_io(uint32_t) {
  // Bounded, so that a flood of connects cannot starve established clients.
  for (int i = 0; i < 64 && fd_; ++i) {
    SocketAddress peer;
    peer.length = sizeof peer.storage;
    int fd = ::accept4(fd_.get(), peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      give_nodelay(fd);
      owner_.on_accepted(*this, Fd(fd), peer);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
      case ECONNABORTED:  // the client gave up while in the backlog
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH: continue;  // errors of that one client (accept(2)): the listener is fine
      case EMFILE:
      case ENFILE: shed_one(); continue;
      default:
        // ENOBUFS, ENOMEM and the unexpected: back off instead of spinning on
        // a level-triggered fd that stays readable.
        server_.logger().log(LogLevel::error, "%s: accept failed: %s; retrying in 100 ms", config().name.c_str(),
                             std::strerror(errno));
        pause_accepting(100);
        return;
    }
  }
}

// Small request/answer exchanges are the common case on a gateway: Nagle
// must not hold back an answer (see Nodelay for how the option gets there).
void Listener::give_nodelay(int fd) noexcept {
  if (nodelay_ == Nodelay::none || nodelay_ == Nodelay::inherited) return;
  if (nodelay_ == Nodelay::unknown) {
    int on = 0;
    socklen_t length = sizeof on;
    bool inherited = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &length) == 0 && on != 0;
    nodelay_ = inherited ? Nodelay::inherited : Nodelay::per_socket;
    if (inherited) return;
  }
  set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

void Listener::shed_one() noexcept {
  uint64_t now = EventLoop::now_ms();
  bool say = now - last_shed_log_ms_ >= 1000;
  if (!spare_) {
    // No spare left (ENFILE, or it could not be reopened): stop watching the
    // listener for a moment, the pending clients wait in the backlog.
    if (say) {
      last_shed_log_ms_ = now;
      server_.logger().log(LogLevel::error, "%s: out of file descriptors; pausing accept for 100 ms",
                           config().name.c_str());
    }
    pause_accepting(100);
    return;
  }
  // Give the spare back, take the client, close it, take the spare again: the
  // client gets a prompt close instead of hanging in the backlog, and the
  // level-triggered listener does not wake us again and again for it.
  spare_.reset();
  int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    counters_.add(&Stats::refused);
  }
  spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (say) {
    last_shed_log_ms_ = now;
    server_.logger().log(
        LogLevel::warning,
        "%s: out of file descriptors (%s): refusing new clients; raise LimitNOFILE= or lower max_clients",
        config().name.c_str(), std::strerror(EMFILE));
  }
}

void Listener::pause_accepting(uint64_t retry_ms) noexcept {
  if (!fd_) return;
  server_.loop().modify(fd_.get(), 0, this);
  retry_timer_.start(retry_ms);
}

const char *Listener::refusal_reason(const IpKey &ip) const noexcept {
  if (!config().allow.empty()) {
    bool allowed = false;
    for (const Cidr &cidr : config().allow) allowed = allowed || cidr.contains(ip);
    if (!allowed) return "not in the allow list";
  }
  unsigned server_max = server_.config().max_clients;
  if (server_max && server_.stats().clients.load(std::memory_order_relaxed) >= server_max)
    return "the server's max_clients is reached";
  if (config().max_clients && open_.size() >= config().max_clients) return "max_clients is reached";
  if (config().max_clients_per_ip) {
    auto it = per_ip_.find(ip);
    if (it != per_ip_.end() && it->second >= config().max_clients_per_ip)
      return "max_clients_per_ip is reached for this address";
  }
  return nullptr;
}

void Listener::refuse(Fd fd, const SocketAddress &peer, const char *why) {
  check_thread("Listener::refuse");
  fd.reset();
  counters_.add(&Stats::refused);
  server_.logger().log(LogLevel::info, "%s: refused %s: %s", config().name.c_str(), peer.to_string().c_str(), why);
}

Connection *Listener::attach(Fd &&fd, const SocketAddress &peer, uint64_t id) {
  check_thread("Listener::attach");
  // The list node first (it may throw, with fd untouched): the connection
  // is created in place and keeps the node's position for its reports.
  open_.emplace_back();
  Position position = std::prev(open_.end());
  if (int rc = Connection::create(*position, *this, *this, position, std::move(fd), peer, id)) {
    open_.erase(position);
    server_.logger().log(LogLevel::error, "%s: cannot watch %s: %s", config().name.c_str(), peer.to_string().c_str(),
                         std::strerror(-rc));
    counters_.add(&Stats::refused);
    return nullptr;
  }
  ++per_ip_[ip_key(peer)];
  counters_.add(&Stats::clients);
  counters_.add(&Stats::accepted);
  server_.logger().log(LogLevel::info, "%s: %s connected", config().name.c_str(), peer.to_string().c_str());
  arm_idle_timer();
  return position->get();
}

void Listener::on_active(Connection &, Position position) noexcept {
  if (config().idle_timeout_ms) open_.splice(open_.end(), open_, position);
}

void Listener::on_closing(Connection &, Position position) {
  closing_.splice(closing_.end(), open_, position);
  arm_closing_timer();
}

void Listener::on_closed(Connection &conn, Position position, bool was_closing) {
  counters_.subtract(&Stats::clients);
  auto ip = per_ip_.find(ip_key(conn.peer()));
  if (ip != per_ip_.end() && --ip->second == 0) per_ip_.erase(ip);
  ConnectionList &list = was_closing ? closing_ : open_;
  Connection *self = position->release();
  list.erase(position);
  server_.loop().defer([self] { delete self; });
}

void Listener::after_close_reported() noexcept { owner_.on_client_gone(*this); }

void Listener::arm_closing_timer() {
  if (closing_.empty() || closing_timer_.active()) return;
  uint64_t deadline = closing_.front()->close_deadline_ms();
  uint64_t now = EventLoop::now_ms();
  closing_timer_.start(deadline > now ? deadline - now : 0);
}

void Listener::on_closing_timer() {
  uint64_t now = EventLoop::now_ms();
  while (!closing_.empty() && closing_.front()->close_deadline_ms() <= now) {
    Connection &conn = *closing_.front();
    conn.abort(conn.close_reason());
  }
  arm_closing_timer();
}

void Listener::arm_idle_timer() {
  if (!config().idle_timeout_ms || idle_timer_.active() || open_.empty()) return;
  uint64_t deadline = open_.front()->last_active_ms() + config().idle_timeout_ms;
  uint64_t now = EventLoop::now_ms();
  idle_timer_.start(deadline > now ? deadline - now : 0);
}

void Listener::on_idle_timer() {
  uint64_t now = EventLoop::now_ms();
  // The list is in order of last activity, so the sweep stops at the first
  // client that is still active; close() moves each expired one out of it.
  while (!open_.empty()) {
    Connection &oldest = *open_.front();
    if (now - oldest.last_active_ms() < config().idle_timeout_ms) break;
    server_.logger().log(LogLevel::info, "%s: closing %s: idle for %llu ms", config().name.c_str(),
                         oldest.peer().to_string().c_str(), static_cast<unsigned long long>(config().idle_timeout_ms));
    oldest.close(CloseReason::idle);
  }
  arm_idle_timer();
}

int Listener::broadcast(const void *data, size_t length) {
  check_thread("Listener::broadcast");
  int delivered = 0;
  std::vector<Connection *> full;  // closed after the walk, which close() would disturb
  for (auto &conn : open_) {
    int rc = conn->send_message(data, length);
    if (rc == 0)
      ++delivered;
    else if (rc == -EAGAIN)
      full.push_back(conn.get());
    else
      return rc;
  }
  for (Connection *conn : full) {
    server_.logger().log(LogLevel::warning, "%s: closing %s: it does not read fast enough for the broadcast",
                         config().name.c_str(), conn->peer().to_string().c_str());
    conn->close(CloseReason::limit);
  }
  return delivered;
}

}  // namespace gw
