// SPDX-License-Identifier: MIT
#include "gw/forwarder.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "backend_link.hpp"
#include "gw/server.hpp"

namespace gw {
namespace {

BackendLink *link_of(Connection &conn) { return static_cast<BackendLink *>(conn.user_data()); }

}  // namespace

Forwarder::Forwarder(std::vector<SocketAddress> backends, std::string label, ForwarderOptions options)
    : fixed_(std::make_shared<const std::vector<SocketAddress>>(std::move(backends))),
      label_(std::move(label)),
      options_(options) {}

Forwarder::Forwarder(std::unique_ptr<ResolvedName> name, std::string label, ForwarderOptions options)
    : name_(std::move(name)), label_(std::move(label)), options_(options) {
  name_->set_on_change([this] { on_name_change(); });
  name_->start();
}

// on_open and on_message come only from the loop's own I/O (an accept, a
// read), so they check the thread; on_close does not, since a server that is
// destroyed closes its connections on the destroying thread.
void Forwarder::on_open(Connection &conn) {
  conn.listener().server().loop().assert_in_loop_thread("Forwarder::on_open");
  auto *link = new BackendLink(*this, conn, options_.connect_timeout_ms);
  conn.set_user_data(link);
  if (!name_) return link->start(fixed_);
  switch (name_->state()) {
    case ResolvedName::State::resolved: return link->start(name_->addresses());
    case ResolvedName::State::pending: waiting_.push_back(&conn); return link->wait_for_name();
    case ResolvedName::State::failed: return link->give_up("cannot resolve " + name_->host() + ": " + name_->error());
  }
}

// The name's first answer (or a later change): the waiting clients connect,
// or learn that there is nowhere to go.
void Forwarder::on_name_change() {
  std::vector<Connection *> ready;
  ready.swap(waiting_);
  for (Connection *conn : ready) {
    BackendLink *link = link_of(*conn);
    if (!link) continue;
    if (name_->state() == ResolvedName::State::resolved)
      link->start(name_->addresses());
    else if (name_->state() == ResolvedName::State::failed)
      link->give_up("cannot resolve " + name_->host() + ": " + name_->error());
    else
      waiting_.push_back(conn);
  }
}

void Forwarder::on_message(Connection &conn, const uint8_t *data, size_t length) {
  conn.listener().server().loop().assert_in_loop_thread("Forwarder::on_message");
  BackendLink *link = link_of(conn);
  if (!link) return;
  // The framing checked the message (max_frame); the backend gets it as the
  // client sent it, prefix or '\n' included.
  EncodedFrame frame;
  Framing framing = conn.message_unterminated() ? Framing::raw : conn.config().framing;
  if (encode_frame(framing, data, length, frame)) link->forward(frame.parts, frame.count);
}

bool Forwarder::on_peer_eof(Connection &conn) {
  if (BackendLink *link = link_of(conn)) link->on_client_eof();
  return true;
}

bool Forwarder::on_stop(Connection &) {
  return true;  // a forwarded exchange finishes on its own, within the stop deadline
}

void Forwarder::on_drain(Connection &conn) {
  if (BackendLink *link = link_of(conn)) link->client_drained();
}

void Forwarder::on_close(Connection &conn, CloseReason) {
  if (!waiting_.empty()) waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &conn), waiting_.end());
  if (BackendLink *link = link_of(conn)) {
    // Every address failed: the name may have moved.
    if (name_ && link->unreachable()) name_->refresh_soon();
    conn.set_user_data(nullptr);
    link->release();
  }
}

}  // namespace gw
