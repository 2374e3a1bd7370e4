// SPDX-License-Identifier: MIT
#include "daemon.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <set>

#include "activation.hpp"
#include "gw/errors.hpp"
#include "gw/forwarder.hpp"
#include "gw/systemd.hpp"

namespace gw::service {
namespace {

gw::LogLevel core_level(LogLevel level) {
  switch (level) {
    case LogLevel::error: return gw::LogLevel::error;
    case LogLevel::warning: return gw::LogLevel::warning;
    case LogLevel::info: return gw::LogLevel::info;
    case LogLevel::debug: return gw::LogLevel::debug;
  }
  return gw::LogLevel::info;
}

}  // namespace

gw::ListenerConfig listener_config(const Route &route) {
  gw::ListenerConfig config;
  config.name = "route " + route.name;
  config.backlog = route.backlog;
  config.framing = static_cast<gw::Framing>(route.framing);
  config.max_frame = route.max_frame;
  config.max_clients = route.max_clients;
  config.max_clients_per_ip = route.max_clients_per_ip;
  config.idle_timeout_ms = static_cast<uint64_t>(route.idle_timeout.count());
  config.frame_timeout_ms = static_cast<uint64_t>(route.frame_timeout.count());
  config.keepalive = route.keepalive;
  config.splice = route.splice;
  // The networks the config layer parsed with the runtime's own parser: an
  // entry is never parsed twice, so none can be dropped here.
  config.allow = route.allow_nets;
  return config;
}

static_assert(static_cast<int>(Framing::u32be) == static_cast<int>(gw::Framing::u32be), "framings differ");

Daemon::~Daemon() {
  watchdog_timer_.reset();
  status_timer_.reset();
  signals_.reset();
}

int Daemon::make_handler(const Route &route, std::shared_ptr<gw::ConnectionHandler> &out) {
  const Backend &backend = route.backend;
  if (backend.kind == Backend::Kind::echo) {
    out = std::make_shared<gw::EchoHandler>();
    return 0;
  }
  if (backend.address) {  // an IP literal or a Unix socket: nothing to look up
    out = std::make_shared<gw::Forwarder>(*backend.address, backend.text);
    return 0;
  }
  if (backend.kind != Backend::Kind::tcp) return -EINVAL;
  // A host name is resolved in the background, never here: a lookup can take
  // seconds (longer than WatchdogSec), and a name that does not resolve yet
  // (the network is not up) must not keep the route from listening.
  if (!resolver_) resolver_ = std::make_shared<gw::Resolver>(server_->loop());
  auto name = std::make_unique<gw::ResolvedName>(resolver_, backend.host, backend.port,
                                                 "route \"" + route.name + "\": backend " + backend.text,
                                                 server_->logger());
  out = std::make_shared<gw::Forwarder>(std::move(name), backend.text);
  return 0;
}

int Daemon::start(const Config &config) {
  gw::ServerConfig server_config;
  server_config.stop_timeout_ms = static_cast<uint64_t>(config.service.stop_timeout.count());
  server_config.logger.max_level = core_level(config.service.log_level);
  if (int rc = gw::Server::create(server_, server_config)) {
    std::fprintf(stderr, "<3>cannot create the event loop: %s\n", std::strerror(-rc));
    return 1;
  }
  const gw::Logger &log = server_->logger();
  if (int rc = gw::SignalWatcher::create(signals_, server_->loop(), {SIGTERM, SIGINT, SIGHUP},
                                         [this](int signal) { on_signal(signal); })) {
    log.log(gw::LogLevel::error, "cannot watch signals: %s", std::strerror(-rc));
    return 1;
  }

  for (const Route &route : config.routes) {
    RouteState state;
    state.route = route;
    if (make_handler(route, state.handler) != 0) return 1;
    routes_.emplace(route.name, std::move(state));
  }

  // Sockets from systemd first: by FileDescriptorName=, else by the address
  // they are bound to.
  if (gw::sd::collect_listen_fds() == -ENOSYS && std::getenv("LISTEN_FDS")) {
    log.log(gw::LogLevel::warning,
            "LISTEN_FDS is set, but this gatewayd was built without systemd support: the passed sockets are not "
            "used; every route binds its listen address (rebuild with -DGW_WITH_SYSTEMD=ON for socket activation)");
  }
  std::vector<gw::sd::ListenFd> inherited = gw::sd::take_all_listen_fds();
  std::vector<InheritedSocket> sockets;
  for (const gw::sd::ListenFd &passed : inherited) sockets.push_back(inspect_inherited(passed.fd, passed.name));
  ActivationPlan plan = match_inherited(config.routes, sockets);
  for (const std::string &error : plan.errors) log.log(gw::LogLevel::error, "%s", error.c_str());
  int failures = static_cast<int>(plan.errors.size());
  for (std::size_t i = 0; i < inherited.size(); ++i) {
    gw::sd::ListenFd &passed = inherited[i];
    if (plan.route_of[i] < 0) {
      ::close(passed.fd);
      continue;
    }
    RouteState *target = &routes_.at(config.routes[static_cast<std::size_t>(plan.route_of[i])].name);
    const std::string shown_name = printable_line(passed.name);
    gw::Listener *listener = nullptr;
    gw::Fd owned(passed.fd);
    int rc = server_->adopt(listener, std::move(owned), listener_config(target->route), target->handler);
    if (rc != 0) {
      log.log(gw::LogLevel::error, "route \"%s\": inherited socket fd %d (FileDescriptorName=%s) is unusable: %s",
              target->route.name.c_str(), passed.fd, shown_name.c_str(), gw::err::describe(rc));
      // A failed adopt leaves the fd untouched and ours (it has left systemd's
      // pool): closed here, exactly once.
      owned.reset();
      ++failures;
      continue;
    }
    target->listener = listener;
    target->inherited = true;
    log.log(gw::LogLevel::info, "route \"%s\": serving the socket systemd passed as fd %d (%s)",
            target->route.name.c_str(), passed.fd, shown_name.c_str());
  }
  if (failures) return 1;

  for (auto &[name, state] : routes_) {
    if (state.listener) continue;
    if (!state.route.listen && !gw::sd::available()) {
      log.log(gw::LogLevel::error, "route \"%s\" has no listen address: add listen = \"IP:PORT\" (this gatewayd "
              "was built without systemd support, so no socket can be passed to it)", name.c_str());
      return 1;
    }
    if (!state.route.listen) {
      log.log(gw::LogLevel::error,
              "route \"%s\" has no listen address and systemd passed no socket named \"%s\": add listen = "
              "\"IP:PORT\" or FileDescriptorName=%s to the socket unit",
              name.c_str(), name.c_str(), name.c_str());
      return 1;
    }
    int rc = server_->listen(state.listener, state.route.listen->address, listener_config(state.route), state.handler);
    if (rc != 0) {
      log.log(gw::LogLevel::error, "route \"%s\": cannot listen on %s: %s", name.c_str(),
              state.route.listen->text.c_str(), gw::err::describe(rc));
      return 1;
    }
  }

  start_watchdog();
  status_timer_ = std::make_unique<gw::Timer>(server_->loop(), [this] { update_status(); });
  status_timer_->start(5000, 5000);
  log.log(gw::LogLevel::info, "ready: %zu routes", routes_.size());
  gw::sd::notify("READY=1");
  update_status();
  return 0;
}

void Daemon::start_watchdog() {
  uint64_t usec = 0;
  if (gw::sd::watchdog_usec(usec) <= 0) return;
  // Fed from a timer on the loop itself: a loop that hangs stops feeding, and
  // systemd restarts us. Half the interval leaves room for one late tick.
  uint64_t period_ms = usec / 2000 ? usec / 2000 : 1;
  watchdog_timer_ = std::make_unique<gw::Timer>(server_->loop(), [] { gw::sd::notify("WATCHDOG=1"); });
  watchdog_timer_->start(0, period_ms);
  server_->logger().log(gw::LogLevel::info, "watchdog: every %llu ms", static_cast<unsigned long long>(period_ms));
}

void Daemon::update_status() {
  const gw::Stats &stats = server_->stats();
  char status[256];
  std::snprintf(status, sizeof status, "STATUS=%zu routes, %llu clients, %llu accepted, %llu refused, %llu bytes in, %llu bytes out, %llu bytes spliced",
                routes_.size(), static_cast<unsigned long long>(stats.clients.load()),
                static_cast<unsigned long long>(stats.accepted.load()),
                static_cast<unsigned long long>(stats.refused.load()),
                static_cast<unsigned long long>(stats.bytes_in.load()),
                static_cast<unsigned long long>(stats.bytes_out.load()),
                static_cast<unsigned long long>(stats.bytes_spliced.load()));
  gw::sd::notify(status);
}

void Daemon::on_signal(int signal) {
  if (signal == SIGHUP) {
    reload();
    return;
  }
  if (server_->state() != gw::Server::State::running) {
    // A second SIGTERM/SIGINT (Ctrl-C twice): the person does not want to wait.
    server_->logger().log(gw::LogLevel::warning, "%s again: stopping now, without waiting for the drain",
                          strsignal(signal));
    server_->stop_now();
    return;
  }
  server_->logger().log(gw::LogLevel::info, "%s: stopping; draining clients for at most %llu ms", strsignal(signal),
                        static_cast<unsigned long long>(server_->config().stop_timeout_ms));
  gw::sd::notify("STOPPING=1");
  status_timer_->stop();
  server_->stop();
}

void Daemon::reload() {
  const gw::Logger &log = server_->logger();
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  char reloading[64];
  std::snprintf(reloading, sizeof reloading, "RELOADING=1\nMONOTONIC_USEC=%llu",
                static_cast<unsigned long long>(now.tv_sec) * 1000000ull + static_cast<unsigned long long>(now.tv_nsec) / 1000);
  gw::sd::notify(reloading);
  log.log(gw::LogLevel::info, "SIGHUP: reloading %s", config_path_.c_str());

  auto reject = [&](const char *why) {
    log.log(gw::LogLevel::error, "reload rejected (%s); the running configuration stays", why);
    gw::sd::notify("READY=1\nSTATUS=reload rejected: see the journal");
  };
  ConfigResult loaded = load_config(config_path_);
  if (!loaded.ok()) {
    for (const std::string &error : loaded.errors) log.log(gw::LogLevel::error, "%s", error.c_str());
    reject("configuration errors");
    return;
  }

  // Prepare everything that can fail before changing anything: handlers and
  // the sockets of new routes. A route keeps its listener when its name is
  // kept and its listen address is unchanged (or came from systemd), or when a
  // removed route had the same listen address.
  std::map<std::string, RouteState> next;
  std::vector<gw::Listener *> created;
  std::set<std::string> reused;
  // A rolled-back listener never accepted: retire() frees it after this batch.
  auto rollback = [&] {
    for (gw::Listener *listener : created) server_->retire(*listener);
  };
  for (const Route &route : loaded.config->routes) {
    RouteState state;
    state.route = route;
    // An unchanged backend keeps its handler (and a name its resolved
    // addresses: no lookup); a changed one gets a new handler for new
    // clients, while established clients keep theirs.
    auto same_backend = routes_.find(route.name);
    if (same_backend != routes_.end() && same_backend->second.route.backend.text == route.backend.text) {
      state.handler = same_backend->second.handler;
    } else if (make_handler(route, state.handler) != 0) {
      rollback();
      return reject("a backend is unusable");
    }
    auto same_listen = [&](const RouteState &old) {
      return old.inherited || (old.route.listen && route.listen && old.route.listen->canonical == route.listen->canonical);
    };
    auto old = routes_.find(route.name);
    if (old != routes_.end() && same_listen(old->second)) {
      state.listener = old->second.listener;
      state.inherited = old->second.inherited;
      reused.insert(old->first);
    } else {
      for (auto &[old_name, old_state] : routes_) {
        // Structured bindings cannot be captured in C++17 (clang refuses): name it.
        const std::string &removed = old_name;
        bool kept_by_name = std::any_of(loaded.config->routes.begin(), loaded.config->routes.end(),
                                        [&](const Route &r) { return r.name == removed; });
        if (!kept_by_name && !reused.count(old_name) && !old_state.inherited && same_listen(old_state)) {
          state.listener = old_state.listener;
          reused.insert(old_name);
          break;
        }
      }
    }
    if (!state.listener) {
      if (!route.listen) {
        rollback();
        log.log(gw::LogLevel::error, "route \"%s\" has no listen address, and sockets from systemd cannot be added by a reload",
                route.name.c_str());
        return reject("a new route has no socket");
      }
      int rc = server_->listen(state.listener, route.listen->address, listener_config(route), state.handler);
      if (rc != 0) {
        rollback();
        log.log(gw::LogLevel::error, "route \"%s\": cannot listen on %s: %s", route.name.c_str(), route.listen->text.c_str(),
                gw::err::describe(rc));
        return reject("a new route cannot listen");
      }
      created.push_back(state.listener);
    }
    next.emplace(route.name, std::move(state));
  }

  // Commit: removed routes stop accepting (their clients stay), kept ones get
  // the new settings for new clients.
  for (auto &[name, state] : routes_) {
    if (!reused.count(name)) {
      log.log(gw::LogLevel::info, "route \"%s\" removed: no longer accepting; %zu clients stay", name.c_str(),
              state.listener->client_count());
      // Its sockets close now; the server frees it once its last client has closed.
      server_->retire(*state.listener);
      state.listener = nullptr;
    }
  }
  for (auto &[name, state] : next) {
    if (std::find(created.begin(), created.end(), state.listener) == created.end())
      state.listener->reconfigure(listener_config(state.route), state.handler);
  }
  routes_ = std::move(next);
  server_->set_log_level(core_level(loaded.config->service.log_level));
  log.log(gw::LogLevel::info, "reloaded: %zu routes", routes_.size());
  gw::sd::notify("READY=1");
  update_status();
}

int Daemon::run() {
  int rc = server_->run();
  if (rc != 0) {
    server_->logger().log(gw::LogLevel::error, "event loop failed: %s", std::strerror(-rc));
    return 1;
  }
  return 0;
}

}  // namespace gw::service
