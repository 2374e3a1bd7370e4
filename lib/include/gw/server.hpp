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
  unsigned max_clients = 0;         ///< across all listeners; 0 = unlimited
  uint64_t stop_timeout_ms = 5000;  ///< flush deadline for graceful stops and closes
  Logger logger;
};

/// Owns the loop, the listeners and (through them) every connection. It is
/// each listener's ListenerOwner: it admits what they accept and hears when a
/// client is gone (to complete a stop, free a retired listener).
/// Threading: stop() and stats() are thread-safe, and loop().post()/wake();
/// run() and dispatch_ready() make the calling thread the loop thread;
/// everything else is for the loop thread, and checks it
/// (EventLoop::assert_in_loop_thread). The destructor may run on the thread
/// that joined the loop thread (it takes the loop over): never while the loop
/// runs elsewhere.
class Server final : ListenerOwner {
 public:
  enum class State { running, stopping, stopped };

  static int create(std::unique_ptr<Server> &out, const ServerConfig &config);
  /// Closes every connection at once (on_close with CloseReason::stopping).
  ~Server();

  /// Binds `address` (see parse_listen_address) and listens. Returns 0 or a
  /// negative code; *out is owned by the server.
  int listen(Listener *&out, std::string_view address, const ListenerConfig &config,
             std::shared_ptr<ConnectionHandler> handler);
  /// The same for an address parsed already (the daemon's config stores one):
  /// what was checked is what is bound, without a second parse.
  int listen(Listener *&out, ListenAddress where, const ListenerConfig &config,
             std::shared_ptr<ConnectionHandler> handler);
  /// Takes over a listening SOCK_STREAM socket; on success the server owns fd
  /// (moved from). On failure fd is not moved from and untouched: open, the
  /// same socket, its flags restored, and still the caller's to close.
  int adopt(Listener *&out, Fd &&fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);

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
  void set_log_level(LogLevel level) noexcept {
    loop_->assert_in_loop_thread("Server::set_log_level");
    config_.logger.max_level = level;
  }
  const ServerConfig &config() const noexcept { return config_; }
  /// Thread-safe (relaxed atomics): the sums of every listener's counters.
  const Stats &stats() const noexcept { return counters_.stats(); }
  const std::vector<std::unique_ptr<Listener>> &listeners() const noexcept { return listeners_; }

 private:
  explicit Server(const ServerConfig &config);

  int add_listener(Listener *&out, Fd &&fd, const ListenerConfig &config, std::shared_ptr<ConnectionHandler> handler);
  // ListenerOwner: what our listeners report.
  void on_accepted(Listener &listener, Fd fd, const SocketAddress &peer) override;
  void on_client_gone(Listener &listener) noexcept override;
  void begin_stop();
  void check_stopped() noexcept;
  void free_idle_retired() noexcept;

  ServerConfig config_;
  Counters counters_;  // the listeners' roll up here; declared first, destroyed after them
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<Listener>> listeners_;  // retired ones included, until freed
  std::vector<Listener *> retired_;                   // retired, still serving clients; owned by listeners_
  std::unique_ptr<Timer> stop_deadline_timer_;
  std::atomic<State> state_{State::running};
  std::atomic<bool> stop_requested_{false};
  uint64_t next_connection_id_ = 1;
};

}  // namespace gw
