// SPDX-License-Identifier: MIT
// Daemon: gatewayd's routes on one gw::Server, fed by systemd or by hand.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config.hpp"
#include "gw/resolver.hpp"
#include "gw/server.hpp"
#include "gw/signals.hpp"
#include "gw/systemd.hpp"

namespace gw::service {

/// Turns a Config into listeners and backends, adopts the sockets systemd
/// passed, talks sd_notify (READY, STATUS, RELOADING, STOPPING, WATCHDOG) and
/// reloads on SIGHUP. Knows routes and systemd's protocol; the sockets, the
/// loop and the signals are the core's. Single-threaded: everything runs on
/// the thread that calls start() and run().
class Daemon {
 public:
  explicit Daemon(std::string config_path) : config_path_(std::move(config_path)) {}
  ~Daemon();

  /// Creates the server, adopts inherited sockets, binds the rest and tells
  /// systemd READY=1. Returns 0, or logs what is wrong and returns non-zero.
  int start(const Config &config);
  /// Serves until SIGTERM/SIGINT and the drain that follows; returns the exit code.
  int run();

 private:
  struct RouteState {
    Route route;
    gw::Listener *listener = nullptr;
    std::shared_ptr<gw::ConnectionHandler> handler;
    bool inherited = false;
  };

  // What a reload does, decided from the running routes and the new config
  // before anything changes: for each new route, in file order, the running
  // route whose handler and whose listener it keeps (none: it gets a new
  // one), and the running routes whose listeners stop accepting. It points
  // into routes_ and into the new Config, so it lives only within reload().
  struct ReloadPlan {
    struct Step {
      const Route *route = nullptr;
      const RouteState *handler_from = nullptr;
      const RouteState *listener_from = nullptr;
    };
    std::vector<Step> steps;
    std::vector<std::string> retired;  // names in routes_
  };

  // start(), step by step; each returns false after logging why.
  bool create_server(const ServiceSection &service);
  bool create_routes(const std::vector<Route> &routes);
  bool adopt_inherited(const std::vector<Route> &routes);
  bool adopt_socket(const gw::sd::ListenFd &passed, RouteState &target);
  bool bind_remaining_routes();
  void announce_ready();

  void on_signal(int signal);
  // reload(): announce, load, plan, commit (or reject).
  void reload();
  void announce_reloading();
  void reject_reload(const char *why);
  static ReloadPlan plan_reload(const std::map<std::string, RouteState> &running, const std::vector<Route> &routes);
  static const RouteState *listener_to_keep(const std::map<std::string, RouteState> &running,
                                            const std::vector<Route> &routes, const Route &route,
                                            std::set<std::string> &taken);
  bool commit_reload(const ReloadPlan &plan);
  const char *prepare_route(const ReloadPlan::Step &step, RouteState &state, std::vector<gw::Listener *> &created);
  void roll_back(const std::vector<gw::Listener *> &created);
  void switch_routes(const ReloadPlan &plan, std::map<std::string, RouteState> next,
                     const std::vector<gw::Listener *> &created);

  void update_status();
  std::string modbus_status() const;
  void start_watchdog();
  int make_handler(const Route &route, std::shared_ptr<gw::ConnectionHandler> &out);
  int make_modbus_handler(const Route &route, std::shared_ptr<gw::ConnectionHandler> &out);

  std::string config_path_;
  std::unique_ptr<gw::Server> server_;
  // Shared by the routes' named backends, created with the first one. After
  // server_, so destroyed before it; the Forwarders that still hold it go
  // with server_'s connections, before its loop.
  std::shared_ptr<gw::Resolver> resolver_;
  std::unique_ptr<gw::SignalWatcher> signals_;
  std::unique_ptr<gw::Timer> watchdog_timer_;
  std::unique_ptr<gw::Timer> status_timer_;
  std::map<std::string, RouteState> routes_;
};

/// The core's listener settings for a route.
gw::ListenerConfig listener_config(const Route &route);

}  // namespace gw::service
