// Backends for a listener's clients: echo, and forwarding to a local service
// over TCP or a Unix socket.
#pragma once
#include <string>

#include "gw/address.hpp"
#include "gw/listener.hpp"

namespace gw {

/// Sends every message back in the listener's framing. Stateless; one object
/// may serve any number of listeners.
class EchoHandler final : public ConnectionHandler {
 public:
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
};

/// Forwards each client to `backend` over a connection of its own, in both
/// directions, with backpressure each way (a side that does not read stops
/// the other side's reading instead of growing a queue) and half-close
/// propagated (a client's shutdown(SHUT_WR) reaches the backend as one, and
/// back). A backend that cannot be reached closes its client with a logged
/// reason. A framed route checks the client's messages (max_frame) and
/// passes them on as they were framed; only raw routes switch to splice().
/// Must outlive the listeners it serves. Loop thread only.
class Forwarder final : public ConnectionHandler {
 public:
  /// `backend` is an IPv4/IPv6 or AF_UNIX address; `label` names it in logs
  /// ("tcp://127.0.0.1:502").
  Forwarder(SocketAddress backend, std::string label) : backend_(backend), label_(std::move(label)) {}

  void on_open(Connection &conn) override;
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
  bool on_peer_shutdown(Connection &conn) override;
  void on_drain(Connection &conn) override;
  bool on_stop(Connection &conn) override;
  void on_close(Connection &conn, CloseReason reason) override;

  const SocketAddress &backend() const noexcept { return backend_; }
  const std::string &label() const noexcept { return label_; }

 private:
  SocketAddress backend_;
  std::string label_;
};

/// Parses "unix:/ABSOLUTE/PATH" into an AF_UNIX address. Returns 0 or err::bad_address.
int parse_unix_address(std::string_view text, SocketAddress &out) noexcept;

}  // namespace gw
