// SPDX-License-Identifier: MIT
#include "gw/listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "gw/server.hpp"

namespace gw {

size_t Listener::IpHash::operator()(const IpKey &key) const noexcept {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (uint8_t byte : key) hash = (hash ^ byte) * 1099511628211ull;
  return static_cast<size_t>(hash);
}

Listener::Listener(Server &server, Fd fd, const SocketAddress &local, ListenerConfig config,
                   std::shared_ptr<ConnectionHandler> handler)
    : server_(server),
      fd_(std::move(fd)),
      spare_(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
      local_(local),
      config_(std::make_shared<const ListenerConfig>(std::move(config))),
      handler_(std::move(handler)),
      retry_timer_(server.loop(), [this] {
        if (!spare_) spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (fd_) server_.loop().modify(fd_.get(), EPOLLIN, this);
      }),
      idle_timer_(server.loop(), [this] { on_idle_timer(); }) {}

Listener::~Listener() {
  if (fd_) server_.loop().remove(fd_.get());
}

void Listener::stop_accepting() noexcept {
  // The spare only serves accept() (shed_one): without the listening socket it
  // would be an fd held for nothing, one per removed route and reload.
  spare_.reset();
  retry_timer_.stop();
  if (!fd_) return;
  server_.loop().remove(fd_.get());
  fd_.reset();
}

void Listener::reconfigure(ListenerConfig config, std::shared_ptr<ConnectionHandler> handler) {
  if (config.name.empty()) config.name = config_->name;
  config_ = std::make_shared<const ListenerConfig>(std::move(config));
  handler_ = std::move(handler);
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
      server_.admit(*this, Fd(fd), peer);
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
      case ENETUNREACH:
        continue;  // errors of that one client (accept(2)): the listener is fine
      case EMFILE:
      case ENFILE:
        shed_one();
        continue;
      default:
        // ENOBUFS, ENOMEM and the unexpected: back off instead of spinning on
        // a level-triggered fd that stays readable.
        server_.logger().log(LogLevel::error, "%s: accept failed: %s; retrying in 100 ms", config_->name.c_str(),
                             std::strerror(errno));
        pause_accepting(100);
        return;
    }
  }
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
                           config_->name.c_str());
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
    Stats::add(stats_.refused, 1);
    Stats::add(server_.stats_.refused, 1);
  }
  spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (say) {
    last_shed_log_ms_ = now;
    server_.logger().log(LogLevel::warning,
                         "%s: out of file descriptors (%s): refusing new clients; raise LimitNOFILE= or lower max_clients",
                         config_->name.c_str(), std::strerror(EMFILE));
  }
}

void Listener::pause_accepting(uint64_t retry_ms) noexcept {
  if (!fd_) return;
  server_.loop().modify(fd_.get(), 0, this);
  retry_timer_.start(retry_ms);
}

bool Listener::admit_limits(const IpKey &ip, const char *&why) const noexcept {
  if (!config_->allow.empty()) {
    bool allowed = false;
    for (const Cidr &cidr : config_->allow) allowed = allowed || cidr.contains(ip);
    if (!allowed) {
      why = "not in the allow list";
      return false;
    }
  }
  if (server_.config().max_clients && server_.stats_.clients.load(std::memory_order_relaxed) >= server_.config().max_clients) {
    why = "the server's max_clients is reached";
    return false;
  }
  if (config_->max_clients && connections_.size() >= config_->max_clients) {
    why = "max_clients is reached";
    return false;
  }
  if (config_->max_clients_per_ip) {
    auto it = per_ip_.find(ip);
    if (it != per_ip_.end() && it->second >= config_->max_clients_per_ip) {
      why = "max_clients_per_ip is reached for this address";
      return false;
    }
  }
  return true;
}

void Listener::touch(Connection &conn) noexcept {
  conn.last_active_ms_ = EventLoop::now_ms();
  if (config_->idle_timeout_ms) connections_.splice(connections_.end(), connections_, conn.position_);
}

void Listener::arm_idle_timer() {
  if (!config_->idle_timeout_ms || idle_timer_.active() || connections_.empty()) return;
  uint64_t deadline = connections_.front()->last_active_ms_ + config_->idle_timeout_ms;
  uint64_t now = EventLoop::now_ms();
  idle_timer_.start(deadline > now ? deadline - now : 0);
}

void Listener::on_idle_timer() {
  uint64_t now = EventLoop::now_ms();
  // The list is in order of last activity, so the sweep stops at the first
  // client that is still active; close() moves each expired one out of it.
  while (!connections_.empty()) {
    Connection &oldest = *connections_.front();
    if (now - oldest.last_active_ms_ < config_->idle_timeout_ms) break;
    server_.logger().log(LogLevel::info, "%s: closing %s: idle for %llu ms", config_->name.c_str(),
                         oldest.peer_.to_string().c_str(), static_cast<unsigned long long>(config_->idle_timeout_ms));
    oldest.close(CloseReason::idle);
  }
  arm_idle_timer();
}

int Listener::broadcast(const void *data, size_t length) {
  int delivered = 0;
  std::vector<Connection *> full;  // closed after the walk, which close() would disturb
  for (auto &conn : connections_) {
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
                         config_->name.c_str(), conn->peer_.to_string().c_str());
    conn->close(CloseReason::limit);
  }
  return delivered;
}

}  // namespace gw
