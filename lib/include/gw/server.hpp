// SPDX-License-Identifier: MIT
// Server: one event loop, its listeners and the stop sequence.
#pragma once
#include <atomic>
#include <memory>
#include <string_view>
#include <vector>

#include "gw/event_loop.hpp"
#include "gw/listener.hpp"
#include "gw/log.hpp"
#include "gw/stats.hpp"

namespace gw {

struct ServerConfig {
  unsigned max_clients = 0;        ///< across all listeners; 0 = unlimited
  uint64_t stop_timeout_ms = 5000; ///< flush deadline for graceful stops and closes
  Logger logger;
};

/// Owns the loop, the listeners and (through them) every connection.
/// Threading: stop() and stats() are thread-safe, and loop().post()/wake();
/// everything else is for the loop thread.
class Server {
 public:
  enum class State { running, stopping, stopped };

  static int create(std::unique_ptr<Server> &out, const ServerConfig &config);
  /// Closes every connection at once (on_close with CloseReason::stopping).
  ~Server();

  /// Binds `address` (see parse_listen_address) and listens. Returns 0 or a
  /// negative code; *out is owned by the server.
  int listen(Listener *&out, std::string_view address, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);
  /// The same for an address parsed already (the daemon's config stores one):
  /// what was checked is what is bound, without a second parse.
  int listen(Listener *&out, ListenAddress where, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);
  /// Takes over a listening SOCK_STREAM socket; on success the server owns fd.
  /// On failure fd is untouched: open, the same socket, its flags restored,
  /// and still the caller's to close.
  int adopt(Listener *&out, int fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);

  /// Takes `listener` (one of this server's) out of service for good: a route
  /// a reload removed, or a listener a failed reload had just created. Its
  /// listening socket and spare fd are closed now; its connections stay and
  /// keep the rules and handler they were accepted with. The server frees the
  /// Listener once its last connection has closed, in a deferred step
  /// (EventLoop::defer), never while one of its callbacks runs; one with no
  /// connections is freed at the end of the current batch. Ownership: the
  /// caller must drop its pointer now (read client_count() before calling);
  /// retiring twice is a no-op. Until freed it stays in listeners(), with
  /// accepting() false and retired() true, and takes part in stop().
  /// Loop thread only.
  void retire(Listener &listener);

  /// Runs the loop on the calling thread until the server has stopped.
  int run();
  /// Handles what is ready without blocking: 0 while running, 1 once stopped.
  int dispatch_ready();
  /// Graceful stop (see Connection::close). Thread-safe, idempotent.
  void stop();
  /// Immediate stop: every connection closes now. Loop thread only.
  void stop_now();

  State state() const noexcept { return state_; }
  EventLoop &loop() noexcept { return *loop_; }
  const Logger &logger() const noexcept { return config_.logger; }
  /// For reloads. Loop thread only.
  void set_log_level(LogLevel level) noexcept { config_.logger.max_level = level; }
  const ServerConfig &config() const noexcept { return config_; }
  const Stats &stats() const noexcept { return stats_; }
  const std::vector<std::unique_ptr<Listener>> &listeners() const noexcept { return listeners_; }

 private:
  friend class Listener;
  friend class Connection;
  explicit Server(const ServerConfig &config);

  int add_listener(Listener *&out, Fd &&fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);
  void admit(Listener &listener, Fd fd, const SocketAddress &peer);
  void refuse(Listener &listener, Fd fd, const SocketAddress &peer, const char *why);
  void begin_stop();
  void on_closing_timer();
  void arm_closing_timer();
  void check_stopped() noexcept;
  void free_idle_retired() noexcept;
  Connection::List &closing() noexcept { return closing_; }

  ServerConfig config_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<Listener>> listeners_;  // retired ones included, until freed
  std::vector<Listener *> retired_;  // retired, still serving clients; owned by listeners_
  Connection::List closing_;  // flushing before close; front = earliest deadline
  std::unique_ptr<Timer> closing_timer_;
  std::unique_ptr<Timer> stop_deadline_timer_;
  Stats stats_;
  std::atomic<State> state_{State::running};
  std::atomic<bool> stop_requested_{false};
  uint64_t next_connection_id_ = 1;
};

}  // namespace gw
