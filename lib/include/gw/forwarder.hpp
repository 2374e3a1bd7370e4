// SPDX-License-Identifier: MIT
// Backends for a listener's clients: forwarding to a local service over TCP
// (by address or host name) or a Unix socket. The echo backend has its own
// header, included here so that users of this one keep seeing it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "gw/address.hpp"
#include "gw/echo.hpp"
#include "gw/listener.hpp"
#include "gw/resolver.hpp"

namespace gw {

/// How a Forwarder connects.
struct ForwarderOptions {
  /// A connect that has not completed by then fails, and the next address is
  /// tried. It also bounds how long a client waits for a name's first answer.
  uint64_t connect_timeout_ms = 5000;
};

/// Forwards each client to its backend over a connection of its own, in both
/// directions, with backpressure each way (a side that does not read stops
/// the other side's reading instead of growing a queue) and half-close
/// propagated (a client's shutdown(SHUT_WR) reaches the backend as one, and
/// back). A framed route checks the client's messages (max_frame) and passes
/// them on as they were framed; only raw routes switch to splice().
///
/// The backend is a list of addresses, tried in order for each client (the
/// next one after a refusal, an error or connect_timeout_ms), or a host name
/// kept resolved in the background (ResolvedName): its clients use the last
/// good answer. A client that arrives before the name's first answer waits
/// for it (at most connect_timeout_ms: at start the name service is usually
/// just slow, and closing the first clients would be worse than a short
/// wait); while the name has never resolved, clients are closed at once with
/// a logged reason. When every address failed, the name is looked up again.
/// A backend that cannot be reached closes its client with a logged reason.
///
/// Must outlive the listeners it serves, and not outlive their loop (its
/// connect timers and name live there). Loop thread only.
class Forwarder final : public ConnectionHandler {
 public:
  /// `backend` is an IPv4/IPv6 or AF_UNIX address; `label` names it in logs
  /// ("tcp://127.0.0.1:502").
  Forwarder(SocketAddress backend, std::string label)
      : Forwarder(std::vector<SocketAddress>{backend}, std::move(label)) {}
  Forwarder(std::vector<SocketAddress> backends, std::string label, ForwarderOptions options = {});
  /// A host name: starts its first lookup now. `label`: "tcp://plc.lan:502".
  Forwarder(std::unique_ptr<ResolvedName> name, std::string label, ForwarderOptions options = {});

  void on_open(Connection &conn) override;
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
  bool on_peer_eof(Connection &conn) override;
  void on_drain(Connection &conn) override;
  bool on_stop(Connection &conn) override;
  void on_close(Connection &conn, CloseReason reason) override;

  /// The fixed addresses, or the name's last good answer (null until it has one).
  const ResolvedName::Addresses &addresses() const noexcept { return name_ ? name_->addresses() : fixed_; }
  /// The name behind the addresses, or null for fixed ones.
  const ResolvedName *name() const noexcept { return name_.get(); }
  const std::string &label() const noexcept { return label_; }

 private:
  void on_name_change();

  ResolvedName::Addresses fixed_;
  std::unique_ptr<ResolvedName> name_;
  std::string label_;
  ForwarderOptions options_;
  std::vector<Connection *> waiting_;  // clients waiting for the name's first answer; not owned
};

}  // namespace gw
