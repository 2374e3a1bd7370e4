// SPDX-License-Identifier: MIT
// Listener: one listening socket, which only accepts, and the clients it accepted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gw/address.hpp"
#include "gw/connection.hpp"
#include "gw/event_loop.hpp"
#include "gw/fd.hpp"
#include "gw/framing.hpp"
#include "gw/stats.hpp"

namespace gw {

/// What a listener's clients get. Every field has a working default.
struct ListenerConfig {
  std::string name;  ///< shown in log lines ("route echo"); defaults to the address
  int backlog = 128;
  Framing framing = Framing::raw;
  size_t max_frame = 65536;
  unsigned max_clients = 0;         ///< 0 = unlimited
  unsigned max_clients_per_ip = 0;  ///< 0 = unlimited
  uint64_t idle_timeout_ms = 0;     ///< 0 = never
  /// A frame that has begun must be complete within this time, or the client
  /// is closed (CloseReason::idle): one byte a second cannot hold a frame, and
  /// its buffer, open forever. Framed listeners only; 0 = no deadline.
  uint64_t frame_timeout_ms = 0;
  bool keepalive = false;
  unsigned keepalive_idle_s = 0, keepalive_interval_s = 0, keepalive_count = 0;
  size_t high_water = 64 * 1024;
  size_t low_water = 16 * 1024;
  size_t max_output = 1024 * 1024;
  bool splice = true;  ///< forwarders may switch bulk flows to splice()
  std::vector<Cidr> allow;  ///< empty: everyone
};

/// Receives a listener's connection events, on the loop thread. Not owned by
/// the listener: it must outlive it. A handler may call anything on any
/// connection, the listener or the server from inside these calls.
class ConnectionHandler {
 public:
  virtual void on_open(Connection &) {}
  virtual void on_message(Connection &, const uint8_t * /*data*/, size_t /*length*/) {}
  virtual void on_close(Connection &, CloseReason) {}
  virtual void on_drain(Connection &) {}
  /// The peer shut down its sending side (EOF). Return false (the default) to
  /// close gracefully with CloseReason::peer; return true to keep the
  /// connection open for output (a proxy that must still deliver the other
  /// side's answer), and call close() later.
  virtual bool on_peer_eof(Connection &) { return false; }
  /// The server is stopping gracefully. Return false (the default) to close
  /// the connection now (flushing its output); return true to let it finish
  /// on its own (a proxied exchange in flight) until the stop deadline.
  virtual bool on_stop(Connection &) { return false; }

 protected:
  ~ConnectionHandler() = default;
};

/// Owns the listening socket, a spare fd for EMFILE, and its open connections
/// (in order of last activity, which makes the idle sweep O(expired)).
/// Created by Server::listen()/adopt(), owned by the Server. Loop thread only,
/// except stats().
class Listener final : IoHandler {
 public:
  ~Listener();

  /// What new connections get. Each connection keeps the configuration and
  /// handler it was accepted with, so reconfigure() never changes the rules
  /// under an established client.
  const ListenerConfig &config() const noexcept { return *config_; }
  ConnectionHandler &handler() const noexcept { return *handler_; }
  Server &server() const noexcept { return server_; }
  const Stats &stats() const noexcept { return stats_; }
  const SocketAddress &local_address() const noexcept { return local_; }
  int port() const noexcept { return local_.port(); }
  bool accepting() const noexcept { return static_cast<bool>(fd_); }
  size_t client_count() const noexcept { return connections_.size(); }

  /// Queues one framed message on every open connection. A connection whose
  /// queue cannot take it is closed with CloseReason::limit. Returns how many
  /// connections got it.
  int broadcast(const void *data, size_t length);

  /// Closes the listening socket and the spare fd (both only serve accept());
  /// open connections stay. For stops; a listener that is done for good is
  /// handed to Server::retire(), which calls this.
  void stop_accepting() noexcept;
  /// True once Server::retire() took this listener out of service.
  bool retired() const noexcept { return retired_; }

  /// Replaces the configuration and handler for connections accepted from now
  /// on (a reload). Limits and the idle timeout apply to every client at once.
  void reconfigure(ListenerConfig config, std::shared_ptr<ConnectionHandler> handler);

 private:
  friend class Server;
  friend class Connection;
  Listener(Server &server, Fd fd, const SocketAddress &local, ListenerConfig config,
           std::shared_ptr<ConnectionHandler> handler);

  void on_io(uint32_t events) override;
  void shed_one() noexcept;
  void pause_accepting(uint64_t retry_ms) noexcept;
  void on_idle_timer();
  void arm_idle_timer();
  void touch(Connection &conn) noexcept;
  bool admit_limits(const IpKey &ip, const char *&why) const noexcept;

  struct IpHash {
    size_t operator()(const IpKey &key) const noexcept;
  };

  Server &server_;
  Fd fd_;
  Fd spare_;  // /dev/null, given up to accept-and-close one client when out of fds
  SocketAddress local_;
  std::shared_ptr<const ListenerConfig> config_;
  std::shared_ptr<ConnectionHandler> handler_;
  Stats stats_;
  Connection::List connections_;  // open ones; front = least recently active
  std::unordered_map<IpKey, unsigned, IpHash> per_ip_;
  Timer retry_timer_;
  Timer idle_timer_;
  uint64_t last_shed_log_ms_ = 0;
  bool retired_ = false;  // set by Server::retire(); freed by the server after its last client
};

}  // namespace gw
