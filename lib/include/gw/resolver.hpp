// SPDX-License-Identifier: MIT
// Host-name lookups that never block the loop: a Resolver runs them on worker
// threads and answers on the loop thread; a ResolvedName keeps one backend
// name resolved in the background for a Forwarder.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gw/address.hpp"
#include "gw/event_loop.hpp"
#include "gw/log.hpp"

namespace gw {

/// What one lookup found: every address, in the order the lookup returned
/// them (a Forwarder tries them in that order), or why there is none.
struct Resolution {
  std::vector<SocketAddress> addresses;  ///< empty on failure
  std::string error;                     ///< empty on success ("Name or service not known")
};

/// Runs on a worker thread and may block for as long as the name service
/// takes. It must own everything it uses (capture by value or shared_ptr): a
/// lookup in progress can outlive the Resolver that started it.
using LookupFunction = std::function<Resolution(const std::string &host, uint16_t port)>;

/// getaddrinfo(AF_UNSPEC, SOCK_STREAM): the system's resolver (/etc/hosts, DNS).
Resolution system_lookup(const std::string &host, uint16_t port);

/// If `host` is an IPv4 or IPv6 literal (no brackets; "fe80::1%eth0" allowed),
/// sets `out` and returns 0; otherwise returns err::EADDRESS. Never does a
/// lookup, so it is safe on the loop thread.
int numeric_address(const std::string &host, uint16_t port, SocketAddress &out) noexcept;

/// Resolves host names off the loop thread. Worker threads start on demand
/// (at most `max_threads`, so one slow name does not hold up every other) and
/// end after a while without work: a gateway with IP backends has none.
/// Each answer is posted to the loop, and the callback runs there.
///
/// Ownership: held by shared_ptr by the ResolvedNames that use it; it must be
/// destroyed before its loop (as a Timer must), which holds when the objects
/// using it belong to that loop's Server. Destroying it cancels every lookup:
/// no callback runs afterwards, queued lookups are dropped, and a worker in
/// the middle of a lookup finishes it on its own, without touching the loop
/// or this object, so that destruction never waits for a slow name server.
/// Threading: everything here is for the loop thread.
class Resolver {
 public:
  class Lookup;
  using Callback = std::function<void(Resolution)>;

  explicit Resolver(EventLoop &loop, LookupFunction lookup = system_lookup, unsigned max_threads = 2);
  ~Resolver();
  Resolver(const Resolver &) = delete;
  Resolver &operator=(const Resolver &) = delete;

  /// Starts looking up host:port; `done` runs later on the loop thread with
  /// the answer, unless `out` is cancelled or destroyed first. Returns 0, or a
  /// negated errno when no worker thread can be started (nothing queued then).
  int resolve(Lookup &out, std::string host, uint16_t port, Callback done);

  EventLoop &loop() const noexcept { return loop_; }

 private:
  struct Pending;
  struct Core;
  static void work(std::shared_ptr<Core> core);

  EventLoop &loop_;
  std::shared_ptr<Core> core_;  // shared with the workers
};

/// A lookup in flight, owned by whoever started it. Destroying or cancelling
/// it guarantees that its callback does not run (and frees the callback on
/// the loop thread). Move-only. Loop thread only.
class Resolver::Lookup {
 public:
  Lookup() = default;
  ~Lookup() { cancel(); }
  Lookup(Lookup &&other) noexcept : pending_(std::move(other.pending_)) {}
  Lookup &operator=(Lookup &&other) noexcept;
  Lookup(const Lookup &) = delete;
  Lookup &operator=(const Lookup &) = delete;

  void cancel() noexcept;
  /// True from resolve() until the callback has run or the lookup was cancelled.
  bool active() const noexcept;

  /// For Resolver::resolve(); Pending is private to the resolver.
  explicit Lookup(std::shared_ptr<Pending> pending) noexcept : pending_(std::move(pending)) {}

 private:
  std::shared_ptr<Pending> pending_;
};

/// A backend's host name and port, kept resolved in the background.
///
/// The first lookup starts with start(). Afterwards the name is looked up
/// again every `refresh_ms` (addresses move: DHCP, a fail-over) and when its
/// user reports that no address worked (refresh_soon(), at most once per
/// `retry_min_ms`). A failed lookup keeps the last good addresses and is
/// retried after retry_min_ms, doubling up to retry_max_ms. Only changes are
/// logged ("resolved to ...", "cannot resolve ..."), so a periodic refresh
/// that finds the same addresses is silent.
///
/// Owned by its user (a Forwarder); holds the Resolver by shared_ptr and its
/// timers on the resolver's loop, so it must not outlive that loop. The
/// logger must outlive it (the Server's does). Loop thread only.
class ResolvedName {
 public:
  struct Options {
    uint64_t refresh_ms = 5 * 60 * 1000;  ///< 0: never refresh a good answer
    uint64_t retry_min_ms = 1000;
    uint64_t retry_max_ms = 60 * 1000;
  };
  enum class State {
    pending,   ///< no answer yet
    resolved,  ///< addresses() holds the last good answer
    failed,    ///< never resolved yet: the last lookup failed (error() says why), a retry is scheduled
  };
  using Addresses = std::shared_ptr<const std::vector<SocketAddress>>;

  /// `context` starts the log lines ("route \"plc\": backend tcp://plc.lan:502").
  ResolvedName(std::shared_ptr<Resolver> resolver, std::string host, uint16_t port, std::string context,
               const Logger &logger, Options options);
  ResolvedName(std::shared_ptr<Resolver> resolver, std::string host, uint16_t port, std::string context,
               const Logger &logger)
      : ResolvedName(std::move(resolver), std::move(host), port, std::move(context), logger, Options{}) {}
  ResolvedName(const ResolvedName &) = delete;
  ResolvedName &operator=(const ResolvedName &) = delete;

  /// Called on the loop thread after each lookup that changed state() or
  /// addresses(). May call anything on this object.
  void set_on_change(std::function<void()> on_change) { on_change_ = std::move(on_change); }
  /// Starts the first lookup (idempotent).
  void start();
  /// The addresses did not work: look again now, unless a lookup is running
  /// or the last one ended less than retry_min_ms ago.
  void refresh_soon();

  State state() const noexcept { return state_; }
  /// The last good answer, in order; null until the first success. Shared, so
  /// a connect in progress keeps the list it started with.
  const Addresses &addresses() const noexcept { return addresses_; }
  /// Why the last lookup failed; empty if it did not.
  const std::string &error() const noexcept { return error_; }
  const std::string &host() const noexcept { return host_; }
  uint16_t port() const noexcept { return port_; }

 private:
  void lookup();
  void on_answer(Resolution answer);
  void schedule_retry();

  std::shared_ptr<Resolver> resolver_;
  std::string host_;
  uint16_t port_;
  std::string context_;
  const Logger &logger_;
  Options options_;
  State state_ = State::pending;
  Addresses addresses_;
  std::string error_;
  uint64_t retry_ms_ = 0;  // the next retry's delay while failing
  uint64_t last_answer_ms_ = 0;
  bool started_ = false;
  Resolver::Lookup lookup_;
  Timer timer_;  // the next retry or refresh
  std::function<void()> on_change_;
};

/// "192.0.2.7:502, [2001:db8::7]:502", for log lines.
std::string to_string(const std::vector<SocketAddress> &addresses);

}  // namespace gw
