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
#include <tuple>

#include "activation.hpp"
#include "gw/errors.hpp"
#include "gw/forwarder.hpp"
#include "gw/modbus.hpp"
#include "gw/serial_backend.hpp"
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

bool same_cidrs(const std::vector<gw::Cidr> &a, const std::vector<gw::Cidr> &b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const gw::Cidr &x, const gw::Cidr &y) {
    return x.network == y.network && x.prefix == y.prefix;
  });
}

// Two serial routes drive their device the same way: every field of the
// config, so that a reload keeps the handler (its open device and clients)
// exactly when nothing it uses has changed. A field added to
// SerialBackendConfig belongs here too.
bool same_serial(const gw::SerialBackendConfig &a, const gw::SerialBackendConfig &b) {
  const auto line = [](const gw::SerialSettings &s) {
    const gw::Rs485Settings &r = s.rs485;
    return std::tie(s.baud, s.data_bits, s.parity, s.stop_bits, s.flow_control, s.dtr, s.rts, r.enabled, r.rts_on_send,
                    r.rts_after_send, r.delay_before_send_ms, r.delay_after_send_ms);
  };
  const auto packing = [](const gw::SerialPacking &p) {
    return std::tie(p.idle_gap_us, p.idle_gap_tenth_chars, p.delimiter, p.keep_delimiter, p.max_packet, p.max_hold_ms);
  };
  const auto policies = [](const gw::SerialBackendConfig &c) {
    return std::tie(c.path, c.open_options.lock_dir, c.clients, c.open, c.on_missing, c.device_wait_ms, c.on_loss,
                    c.rfc2217.enabled, c.rfc2217.allow_settings);
  };
  return line(a.settings) == line(b.settings) && packing(a.packing) == packing(b.packing) &&
         policies(a) == policies(b) && same_cidrs(a.readonly_clients, b.readonly_clients);
}

// Two Modbus routes run their gateway the same way: every field of the
// config. A field added to ModbusConfig belongs here too.
bool same_modbus(const gw::ModbusConfig &a, const gw::ModbusConfig &b) {
  const auto fields = [](const gw::ModbusConfig &m) {
    return std::tie(m.client_frames, m.response_timeout_ms, m.retries, m.broadcast_delay_ms, m.max_queue, m.cache_ms);
  };
  return fields(a) == fields(b) &&
         std::equal(a.unit_map.begin(), a.unit_map.end(), b.unit_map.begin(), b.unit_map.end(),
                    [](const gw::ModbusUnitMapping &x, const gw::ModbusUnitMapping &y) {
                      return x.from == y.from && x.to == y.to;
                    });
}

// A reload keeps a route's handler when its backend is the same: the same
// text and protocol and, for a serial one, the same device config, for a
// Modbus one the same Modbus config.
bool same_backend(const Route &a, const Route &b) {
  if (a.backend.text != b.backend.text || a.protocol != b.protocol) return false;
  if (a.modbus.has_value() != b.modbus.has_value() || (a.modbus && !same_modbus(*a.modbus, *b.modbus))) return false;
  if (a.serial && b.serial) return same_serial(*a.serial, *b.serial);
  return a.serial.has_value() == b.serial.has_value();
}

// One route's Modbus counters as one line, for the log.
void log_modbus_counters(const gw::Logger &log, const char *when, const gw::ModbusGateway &gateway) {
  const gw::ModbusCounters &c = gateway.counters();
  const auto n = [](const std::atomic<uint64_t> &v) { return static_cast<unsigned long long>(v.load()); };
  log.log(gw::LogLevel::info,
          "%s: modbus %s: %llu requests, %llu replies, %llu timeouts, %llu crc errors, %llu exceptions, %llu busy, "
          "%llu malformed, %llu broadcasts, %llu cache hits",
          gateway.label().c_str(), when, n(c.requests), n(c.replies), n(c.timeouts), n(c.crc_errors), n(c.exceptions),
          n(c.busy), n(c.malformed), n(c.broadcasts), n(c.cache_hits));
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
  if (route.modbus) return make_modbus_handler(route, out);
  if (backend.kind == Backend::Kind::serial) {
    // A device that is missing is not an error here: the backend watches for
    // it and the route listens. Only a config it refuses is, and the config
    // layer checked it with the same validate().
    std::unique_ptr<gw::SerialBackend> serial;
    std::string why;
    if (int rc =
            gw::SerialBackend::create(serial, server_->loop(), server_->logger(), *route.serial, backend.text, why)) {
      server_->logger().log(gw::LogLevel::error, "route \"%s\": %s", route.name.c_str(), why.c_str());
      return rc;
    }
    out = std::move(serial);
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
  auto name =
      std::make_unique<gw::ResolvedName>(resolver_, backend.host, backend.port,
                                         "route \"" + route.name + "\": backend " + backend.text, server_->logger());
  out = std::make_shared<gw::Forwarder>(std::move(name), backend.text);
  return 0;
}

// A Modbus route's gateway: RTU on its serial device, or Modbus TCP to the
// address of its tcp backend (the config layer refuses a host name). Its
// counters are logged when the last owner lets it go: a reload that
// replaced it, once its last client has closed, or the daemon's stop. The
// deleter holds a copy of the logger, as the gateway may outlive routes_.
int Daemon::make_modbus_handler(const Route &route, std::shared_ptr<gw::ConnectionHandler> &out) {
  std::unique_ptr<gw::ModbusGateway> gateway;
  std::string why;
  const std::string label = "route \"" + route.name + "\"";
  int rc = route.serial ? gw::ModbusGateway::create_rtu(gateway, server_->loop(), server_->logger(), *route.modbus,
                                                        *route.serial, label, why)
                        : gw::ModbusGateway::create_tcp(gateway, server_->loop(), server_->logger(), *route.modbus,
                                                        *route.backend.address, label, why);
  if (rc != 0) {
    server_->logger().log(gw::LogLevel::error, "%s: %s", label.c_str(), why.c_str());
    return rc;
  }
  const gw::Logger logger = server_->logger();
  out = std::shared_ptr<gw::ModbusGateway>(gateway.release(), [logger](gw::ModbusGateway *done) {
    log_modbus_counters(logger, "closed", *done);
    delete done;
  });
  return 0;
}

int Daemon::start(const Config &config) {
  if (!create_server(config.service) || !create_routes(config.routes) || !adopt_inherited(config.routes) ||
      !bind_remaining_routes())
    return 1;
  announce_ready();
  return 0;
}

// The server (its loop and logger, which every later step uses) and the
// signal watcher on its loop. Both belong to the Daemon until it is destroyed.
// Before the server exists, an error can only go to stderr.
bool Daemon::create_server(const ServiceSection &service) {
  gw::ServerConfig server_config;
  server_config.stop_timeout_ms = static_cast<uint64_t>(service.stop_timeout.count());
  server_config.logger.max_level = core_level(service.log_level);
  if (int rc = gw::Server::create(server_, server_config)) {
    std::fprintf(stderr, "<3>cannot create the event loop: %s\n", std::strerror(-rc));
    return false;
  }
  if (int rc = gw::SignalWatcher::create(signals_, server_->loop(), {SIGTERM, SIGINT, SIGHUP},
                                         [this](int signal) { on_signal(signal); })) {
    server_->logger().log(gw::LogLevel::error, "cannot watch signals: %s", std::strerror(-rc));
    return false;
  }
  return true;
}

// A RouteState per route, with its handler and no listener yet: the next two
// steps give each route its socket.
bool Daemon::create_routes(const std::vector<Route> &routes) {
  for (const Route &route : routes) {
    RouteState state;
    state.route = route;
    if (make_handler(route, state.handler) != 0) return false;
    routes_.emplace(route.name, std::move(state));
  }
  return true;
}

// Sockets from systemd first: by FileDescriptorName=, else by the address
// they are bound to (match_inherited). Every passed fd is ours once taken from
// systemd's pool: it is adopted by the server or closed here. All are tried,
// so that every unusable one is logged, before this fails.
bool Daemon::adopt_inherited(const std::vector<Route> &routes) {
  const gw::Logger &log = server_->logger();
  const int collected = gw::sd::collect_listen_fds();
  if (collected == -ENOSYS && std::getenv("LISTEN_FDS")) {
    log.log(gw::LogLevel::warning,
            "LISTEN_FDS is set, but this gatewayd was built without systemd support: the passed sockets are not "
            "used; every route binds its listen address (rebuild with -DGW_WITH_SYSTEMD=ON for socket activation)");
  } else if (collected < 0 && collected != -ENOSYS) {
    log.log(gw::LogLevel::error,
            "the sockets systemd passed are not used (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES: %s): every route binds "
            "its listen address; give each socket unit's sockets one FileDescriptorName= each",
            gw::err::describe(collected));
  }
  std::vector<gw::sd::ListenFd> inherited = gw::sd::take_all_listen_fds();
  std::vector<InheritedSocket> sockets;
  for (const gw::sd::ListenFd &passed : inherited) sockets.push_back(inspect_inherited(passed.fd, passed.name));
  ActivationPlan plan = match_inherited(routes, sockets);
  for (const std::string &error : plan.errors) log.log(gw::LogLevel::error, "%s", error.c_str());
  int failures = static_cast<int>(plan.errors.size());
  for (std::size_t i = 0; i < inherited.size(); ++i) {
    if (plan.route_of[i] < 0) {
      ::close(inherited[i].fd);
      continue;
    }
    RouteState &target = routes_.at(routes[static_cast<std::size_t>(plan.route_of[i])].name);
    if (!adopt_socket(inherited[i], target)) ++failures;
  }
  return failures == 0;
}

// The one place a passed socket is handed to the server, for `target`. The fd
// is ours on entry; adopted, it is the server's.
bool Daemon::adopt_socket(const gw::sd::ListenFd &passed, RouteState &target) {
  const gw::Logger &log = server_->logger();
  const int fd = passed.fd;
  const std::string shown_name = printable_line(passed.name);
  gw::Listener *listener = nullptr;
  gw::Fd owned(fd);
  int rc = server_->adopt(listener, std::move(owned), listener_config(target.route), target.handler);
  if (rc != 0) {
    log.log(gw::LogLevel::error, "route \"%s\": inherited socket fd %d (FileDescriptorName=%s) is unusable: %s",
            target.route.name.c_str(), fd, shown_name.c_str(), gw::err::describe(rc));
    // A failed adopt leaves `owned` untouched and ours (the fd has left
    // systemd's pool): its destructor closes it, exactly once.
    return false;
  }
  target.listener = listener;
  target.inherited = true;
  log.log(gw::LogLevel::info, "route \"%s\": serving the socket systemd passed as fd %d (%s)",
          target.route.name.c_str(), fd, shown_name.c_str());
  return true;
}

// Binds the listen address of every route no inherited socket serves. Stops
// at the first route that cannot listen, logged with the fix.
bool Daemon::bind_remaining_routes() {
  const gw::Logger &log = server_->logger();
  for (auto &[name, state] : routes_) {
    if (state.listener) continue;
    if (!state.route.listen && !gw::sd::available()) {
      log.log(gw::LogLevel::error,
              "route \"%s\" has no listen address: add listen = \"IP:PORT\" (this gatewayd "
              "was built without systemd support, so no socket can be passed to it)",
              name.c_str());
      return false;
    }
    if (!state.route.listen) {
      log.log(gw::LogLevel::error,
              "route \"%s\" has no listen address and systemd passed no socket named \"%s\": add listen = "
              "\"IP:PORT\" or FileDescriptorName=%s to the socket unit",
              name.c_str(), name.c_str(), name.c_str());
      return false;
    }
    int rc = server_->listen(state.listener, state.route.listen->address, listener_config(state.route), state.handler);
    if (rc != 0) {
      log.log(gw::LogLevel::error, "route \"%s\": cannot listen on %s: %s", name.c_str(),
              state.route.listen->text.c_str(), gw::err::describe(rc));
      return false;
    }
  }
  return true;
}

// Every route is accepting: start the watchdog and the status updates (timers
// on the loop, owned by the Daemon), then tell systemd READY=1.
void Daemon::announce_ready() {
  start_watchdog();
  status_timer_ = std::make_unique<gw::Timer>(server_->loop(), [this] { update_status(); });
  status_timer_->start(5000, 5000);
  server_->logger().log(gw::LogLevel::info, "ready: %zu routes", routes_.size());
  gw::sd::notify("READY=1");
  update_status();
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
  std::snprintf(
      status, sizeof status,
      "STATUS=%zu routes, %llu clients, %llu accepted, %llu refused, %llu bytes in, %llu bytes out, %llu bytes spliced",
      routes_.size(), static_cast<unsigned long long>(stats.clients.load()),
      static_cast<unsigned long long>(stats.accepted.load()), static_cast<unsigned long long>(stats.refused.load()),
      static_cast<unsigned long long>(stats.bytes_in.load()), static_cast<unsigned long long>(stats.bytes_out.load()),
      static_cast<unsigned long long>(stats.bytes_spliced.load()));
  gw::sd::notify((status + modbus_status()).c_str());
}

// "; modbus \"NAME\": N req, ..." for each running Modbus route, so that
// `systemctl status` shows which bus times out. A route's handler replaced by
// a reload starts again from 0.
std::string Daemon::modbus_status() const {
  std::string out;
  for (const auto &[name, state] : routes_) {
    const auto *gateway = dynamic_cast<const gw::ModbusGateway *>(state.handler.get());
    if (!gateway) continue;
    const gw::ModbusCounters &c = gateway->counters();
    char part[256];
    std::snprintf(
        part, sizeof part, "; modbus \"%s\": %llu req, %llu replies, %llu timeouts, %llu crc errors, %llu exceptions",
        name.c_str(), static_cast<unsigned long long>(c.requests.load()),
        static_cast<unsigned long long>(c.replies.load()), static_cast<unsigned long long>(c.timeouts.load()),
        static_cast<unsigned long long>(c.crc_errors.load()), static_cast<unsigned long long>(c.exceptions.load()));
    out += part;
  }
  return out;
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
  announce_reloading();
  ConfigResult loaded = load_config(config_path_);
  if (!loaded.ok()) {
    for (const std::string &error : loaded.errors) server_->logger().log(gw::LogLevel::error, "%s", error.c_str());
    return reject_reload("configuration errors");
  }
  if (!commit_reload(plan_reload(routes_, loaded.config->routes))) return;
  server_->set_log_level(core_level(loaded.config->service.log_level));
  server_->logger().log(gw::LogLevel::info, "reloaded: %zu routes", routes_.size());
  gw::sd::notify("READY=1");
  update_status();
}

void Daemon::announce_reloading() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  char reloading[64];
  std::snprintf(
      reloading, sizeof reloading, "RELOADING=1\nMONOTONIC_USEC=%llu",
      static_cast<unsigned long long>(now.tv_sec) * 1000000ull + static_cast<unsigned long long>(now.tv_nsec) / 1000);
  gw::sd::notify(reloading);
  server_->logger().log(gw::LogLevel::info, "SIGHUP: reloading %s", config_path_.c_str());
}

// The running routes stay as they are; systemd hears READY again, with a
// STATUS that sends a person to the journal.
void Daemon::reject_reload(const char *why) {
  server_->logger().log(gw::LogLevel::error, "reload rejected (%s); the running configuration stays", why);
  gw::sd::notify("READY=1\nSTATUS=reload rejected: see the journal");
}

// An unchanged backend keeps its handler (and a name its resolved addresses:
// no lookup; a serial device stays open, with its clients); a changed one gets
// a new handler for new clients, while established clients keep theirs. No
// side effects: it only decides.
//
// A changed serial route's two handlers share the device one at a time: the
// old one keeps it while it has clients (an "always" one until it is freed,
// after its last client), and until then the new one finds it busy, refused
// by the UUCP lock our own PID holds and by TIOCEXCL: its clients get the
// one-line "busy" reason (or wait, with on_device_missing = "wait"), and an
// "always" one tries again every second. So the old clients keep the settings
// they came with, and two handlers never read one device. (Only a daemon
// running as root with lock_dir = "" has neither guard, root not being bound
// by TIOCEXCL; gateway.conf(5) says to restart it instead.)
Daemon::ReloadPlan Daemon::plan_reload(const std::map<std::string, RouteState> &running,
                                       const std::vector<Route> &routes) {
  ReloadPlan plan;
  std::set<std::string> taken;  // running routes whose listener a new route keeps
  for (const Route &route : routes) {
    ReloadPlan::Step step;
    step.route = &route;
    auto same_name = running.find(route.name);
    if (same_name != running.end() && same_backend(same_name->second.route, route))
      step.handler_from = &same_name->second;
    step.listener_from = listener_to_keep(running, routes, route, taken);
    plan.steps.push_back(step);
  }
  for (const auto &[name, state] : running) {
    if (!taken.count(name)) plan.retired.push_back(name);
  }
  return plan;
}

// A route keeps its listener when its name is kept and its listen address is
// unchanged (or came from systemd), or takes over the listener of a removed
// route with the same listen address. Null: it needs a new one. Each listener
// is kept at most once: `taken` holds the running routes already chosen.
const Daemon::RouteState *Daemon::listener_to_keep(const std::map<std::string, RouteState> &running,
                                                   const std::vector<Route> &routes, const Route &route,
                                                   std::set<std::string> &taken) {
  auto same_listen = [&](const RouteState &old) {
    return old.inherited ||
           (old.route.listen && route.listen && old.route.listen->canonical == route.listen->canonical);
  };
  auto old = running.find(route.name);
  if (old != running.end() && same_listen(old->second)) {
    taken.insert(old->first);
    return &old->second;
  }
  for (const auto &[old_name, old_state] : running) {
    // Structured bindings cannot be captured in C++17 (clang refuses): name it.
    const std::string &removed = old_name;
    bool kept_by_name = std::any_of(routes.begin(), routes.end(), [&](const Route &r) { return r.name == removed; });
    if (!kept_by_name && !taken.count(old_name) && !old_state.inherited && same_listen(old_state)) {
      taken.insert(old_name);
      return &old_state;
    }
  }
  return nullptr;
}

// Applies the plan in two phases. First everything that can fail, before
// changing anything: the new handlers and the sockets of new routes. If one
// fails, what was created is rolled back, the reload is rejected and the
// running routes stay. Then the switch, which cannot fail.
bool Daemon::commit_reload(const ReloadPlan &plan) {
  std::map<std::string, RouteState> next;
  std::vector<gw::Listener *> created;
  for (const ReloadPlan::Step &step : plan.steps) {
    RouteState state;
    if (const char *why = prepare_route(step, state, created)) {
      reject_reload(why);
      return false;
    }
    next.emplace(step.route->name, std::move(state));
  }
  switch_routes(plan, std::move(next), created);
  return true;
}

// The new RouteState of one step: its handler and listener, kept or created
// (a created listener is added to `created`). On failure it rolls back all
// that `created` holds, logs what is wrong with the route, if more than the
// reason says, and returns the reason for "reload rejected (...)".
const char *Daemon::prepare_route(const ReloadPlan::Step &step, RouteState &state,
                                  std::vector<gw::Listener *> &created) {
  const Route &route = *step.route;
  state.route = route;
  if (step.handler_from) {
    state.handler = step.handler_from->handler;
  } else if (make_handler(route, state.handler) != 0) {
    roll_back(created);
    return "a backend is unusable";
  }
  if (step.listener_from) {
    state.listener = step.listener_from->listener;
    state.inherited = step.listener_from->inherited;
    return nullptr;
  }
  const gw::Logger &log = server_->logger();
  if (!route.listen) {
    roll_back(created);
    log.log(gw::LogLevel::error,
            "route \"%s\" has no listen address, and sockets from systemd cannot be added by a reload",
            route.name.c_str());
    return "a new route has no socket";
  }
  int rc = server_->listen(state.listener, route.listen->address, listener_config(route), state.handler);
  if (rc != 0) {
    roll_back(created);
    log.log(gw::LogLevel::error, "route \"%s\": cannot listen on %s: %s", route.name.c_str(),
            route.listen->text.c_str(), gw::err::describe(rc));
    return "a new route cannot listen";
  }
  created.push_back(state.listener);
  return nullptr;
}

// A rolled-back listener never accepted: retire() frees it after this batch.
void Daemon::roll_back(const std::vector<gw::Listener *> &created) {
  for (gw::Listener *listener : created) server_->retire(*listener);
}

// Removed routes stop accepting (their clients stay), kept ones get the new
// settings for new clients; then `next` is the running set.
void Daemon::switch_routes(const ReloadPlan &plan, std::map<std::string, RouteState> next,
                           const std::vector<gw::Listener *> &created) {
  for (const std::string &name : plan.retired) {
    RouteState &state = routes_.at(name);
    server_->logger().log(gw::LogLevel::info, "route \"%s\" removed: no longer accepting; %zu clients stay",
                          name.c_str(), state.listener->client_count());
    // Its sockets close now; the server frees it once its last client has closed.
    server_->retire(*state.listener);
    state.listener = nullptr;
  }
  for (auto &[name, state] : next) {
    if (std::find(created.begin(), created.end(), state.listener) == created.end())
      state.listener->reconfigure(listener_config(state.route), state.handler);
  }
  routes_ = std::move(next);
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
