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
  bool splice = true;       ///< forwarders may switch bulk flows to splice()
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

/// What a connection is accepted with and keeps to its end: its listener's
/// configuration and handler of the moment, so that a reload never changes
/// the rules under an established client. One per Listener::create() or
/// reconfigure(), shared (read-only) by every connection accepted meanwhile:
/// a connection holds one shared pointer for both.
struct ListenerRules {
  ListenerConfig config;
  std::shared_ptr<ConnectionHandler> handler;
};

class Listener;

/// The one a listener hands every accepted client to, and tells when one of
/// its clients is gone: its Server (muduo's Acceptor -> TcpServer seam). Not
/// owned by the listener: it owns the listener. Loop thread only.
class ListenerOwner {
 public:
  /// A socket accept4() returned: the owner admits it (Listener::attach) or
  /// refuses it (Listener::refuse). By value: it always takes the socket.
  virtual void on_accepted(Listener &listener, Fd fd, const SocketAddress &peer) = 0;
  /// A client of `listener` has closed and its on_close has returned.
  virtual void on_client_gone(Listener &listener) noexcept = 0;

 protected:
  ~ListenerOwner() = default;
};

/// Owns the listening socket, a spare fd for EMFILE, and its connections:
/// the open ones in order of last activity (which makes the idle sweep
/// O(expired)) and the closing ones in order of their close deadline, with the
/// per-IP counts and the counters (rolled up to the server's) that go with
/// them. Connections report to it through ConnectionOwner. Created by
/// Server::listen()/adopt() and owned by the Server, which it reports to
/// through ListenerOwner. Loop thread only, except stats(): every entry point
/// that acts checks it (EventLoop::assert_in_loop_thread).
class Listener final : IoHandler, ConnectionOwner {
 public:
  /// Makes a listener that accepts from `fd` (listening, non-blocking) and
  /// watches it. Moves from `fd` only on success (see Fd). `owner` and
  /// `parent_counters` (the server's) must outlive the listener. Returns 0 or
  /// a negated errno; throws std::bad_alloc with `fd` untouched.
  static int create(std::unique_ptr<Listener> &out, Server &server, ListenerOwner &owner, Counters &parent_counters,
                    Fd &&fd, const SocketAddress &local, ListenerConfig config,
                    std::shared_ptr<ConnectionHandler> handler);
  ~Listener();

  /// What new connections get. Each connection keeps the configuration and
  /// handler it was accepted with, so reconfigure() never changes the rules
  /// under an established client.
  const ListenerConfig &config() const noexcept { return rules_->config; }
  ConnectionHandler &handler() const noexcept { return *rules_->handler; }
  /// Both, shared: what a new connection keeps.
  std::shared_ptr<const ListenerRules> shared_rules() const noexcept { return rules_; }
  Server &server() const noexcept { return server_; }
  /// Thread-safe (relaxed atomics); `clients` counts open and closing ones.
  const Stats &stats() const noexcept { return counters_.stats(); }
  const SocketAddress &local_address() const noexcept { return local_; }
  int port() const noexcept { return local_.port(); }
  bool accepting() const noexcept { return static_cast<bool>(fd_); }
  /// Open connections.
  size_t client_count() const noexcept { return open_.size(); }
  /// The open connections, least recently active first, and the closing ones,
  /// earliest deadline first. Read-only: they change only through the
  /// connections' own calls (close, abort).
  const ConnectionList &open_clients() const noexcept { return open_; }
  const ConnectionList &closing_clients() const noexcept { return closing_; }

  /// Admission, for the owner's on_accepted: why a client from `ip` is
  /// refused by this listener's rules (allow list, max_clients,
  /// max_clients_per_ip) or the server's max_clients; nullptr when admitted.
  const char *refusal_reason(const IpKey &ip) const noexcept;
  /// Closes a client socket that is not admitted, counts and logs it.
  void refuse(Fd fd, const SocketAddress &peer, const char *why);
  /// Takes an admitted client socket into this listener: a Connection, open,
  /// read from now on, in the activity order, in the per-IP counts and the
  /// counters. Moves from `fd` only on success; returns nullptr (logged,
  /// counted as refused) when epoll refuses it. The owner then calls on_open.
  Connection *attach(Fd &&fd, const SocketAddress &peer, uint64_t id);

  /// Queues one framed message on every open connection. A connection whose
  /// queue cannot take it is closed with CloseReason::limit. Returns how many
  /// connections got it.
  int broadcast(const void *data, size_t length);

  /// Closes the listening socket and the spare fd (both only serve accept());
  /// open connections stay. For stops; a listener that is done for good is
  /// handed to Server::retire(), which calls this.
  void stop_accepting() noexcept;
  /// For Server::retire() only (call that: it also frees the listener): stops
  /// accepting for good and marks the listener retired.
  void retire() noexcept;
  /// True once Server::retire() took this listener out of service.
  bool retired() const noexcept { return retired_; }

  /// Replaces the configuration and handler for connections accepted from now
  /// on (a reload). Limits and the idle timeout apply to every client at once.
  void reconfigure(ListenerConfig config, std::shared_ptr<ConnectionHandler> handler);

 private:
  // No fd here: create() moves it in once watching it has succeeded.
  Listener(Server &server, ListenerOwner &owner, Counters &parent_counters, const SocketAddress &local,
           ListenerConfig config, std::shared_ptr<ConnectionHandler> handler);

  void check_thread(const char *where) const noexcept;
  void on_io(uint32_t events) override;
  void give_nodelay(int fd) noexcept;
  void shed_one() noexcept;
  void pause_accepting(uint64_t retry_ms) noexcept;
  void on_idle_timer();
  void arm_idle_timer();
  void on_closing_timer();
  void arm_closing_timer();

  // ConnectionOwner: what our connections report.
  void on_active(Connection &conn, Position position) noexcept override;
  void on_closing(Connection &conn, Position position) override;
  void on_closed(Connection &conn, Position position, bool was_closing) override;
  void after_close_reported() noexcept override;
  Counters &counters() noexcept override { return counters_; }

  struct IpHash {
    size_t operator()(const IpKey &key) const noexcept;
  };

  Server &server_;
  ListenerOwner &owner_;  // the same server, through its seam for listeners
  // How accepted TCP sockets get TCP_NODELAY. Linux copies it from the
  // listening socket, where create() sets it, which saves a system call per
  // client; the first client shows whether this kernel did (unknown until
  // then), and per_socket sets it on each one where not. none: not TCP.
  enum class Nodelay : uint8_t { none, unknown, inherited, per_socket };
  Nodelay nodelay_ = Nodelay::none;
  Fd fd_;
  Fd spare_;  // /dev/null, given up to accept-and-close one client when out of fds
  SocketAddress local_;
  std::shared_ptr<const ListenerRules> rules_;
  Counters counters_;                                   // ours, rolled up to the server's
  ConnectionList open_;                                 // front = least recently active
  ConnectionList closing_;                              // flushing before close; front = earliest deadline
  std::unordered_map<IpKey, unsigned, IpHash> per_ip_;  // open and closing clients
  Timer retry_timer_;
  Timer idle_timer_;
  Timer closing_timer_;
  uint64_t last_shed_log_ms_ = 0;
  bool retired_ = false;  // set by retire(); freed by the server after its last client
};

}  // namespace gw
