#include "gw/forwarder.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "gw/errors.hpp"
#include "gw/server.hpp"

namespace gw {

void EchoHandler::on_message(Connection &conn, const uint8_t *data, size_t length) {
  // Backpressure keeps the queue below max_output: reading stops at high_water.
  conn.send_message(data, length);
}

int parse_unix_address(std::string_view text, SocketAddress &out) noexcept {
  constexpr std::string_view prefix = "unix:";
  if (text.substr(0, prefix.size()) != prefix) return err::bad_address;
  std::string_view path = text.substr(prefix.size());
  auto *un = reinterpret_cast<sockaddr_un *>(&out.storage);
  if (path.empty() || path.front() != '/' || path.size() >= sizeof un->sun_path) return err::bad_address;
  out = SocketAddress{};
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return 0;
}

namespace {

/// The backend side of one forwarded client. Owns the backend socket and the
/// bytes the backend has not taken yet. Owned by its client (user_data) and
/// freed after the batch in which the client closed. Loop thread only.
class BackendLink final : IoHandler {
 public:
  BackendLink(Forwarder &forwarder, Connection &client) : forwarder_(forwarder), client_(&client) {}

  void start() {
    const SocketAddress &backend = forwarder_.backend();
    fd_.reset(::socket(backend.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return fail(errno);
    if (::connect(fd_.get(), backend.get(), backend.length) != 0 && errno != EINPROGRESS) return fail(errno);
    interest_ = EPOLLOUT;  // writable = connected (or failed: SO_ERROR says which)
    if (int rc = loop().add(fd_.get(), interest_, this)) return fail(-rc);
    watched_ = true;
  }

  /// Bytes from the client for the backend.
  void forward(const uint8_t *data, size_t length) {
    if (!connecting_ && out_.empty()) {
      ssize_t n = ::send(fd_.get(), data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data += n;
        length -= static_cast<size_t>(n);
      }
      // An error is seen again (EPOLLERR) once the rest is queued.
    }
    out_.append(data, length);
    if (out_.size() > client_->config().high_water) client_->pause_reading();
    update_interest();
  }

  /// The client sent EOF: pass it on once its bytes are delivered.
  void client_shut_down() {
    shut_when_flushed_ = true;
    if (!connecting_ && out_.empty()) shut_backend();
    close_if_done();
  }

  void client_drained() {
    if (paused_for_client_) {
      paused_for_client_ = false;
      update_interest();
    }
  }

  /// The client is gone: close the backend socket now, free this after the batch.
  void release() {
    client_ = nullptr;
    if (watched_) loop_of_release().remove(fd_.get());
    fd_.reset();
    loop_of_release().defer([this] { delete this; });
  }

 private:
  EventLoop &loop() { return client_->listener().server().loop(); }
  EventLoop &loop_of_release() { return forwarder_loop_ ? *forwarder_loop_ : loop(); }

  void on_io(uint32_t events) override {
    if (!client_) return;  // released earlier in this batch
    if (connecting_) {
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
      if (error) return fail(error);
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      connecting_ = false;
      if (shut_when_flushed_ && out_.empty()) shut_backend();
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      read_backend();
      if (!client_) return;
    }
    if ((events & EPOLLOUT) || !out_.empty()) write_backend();
    if (client_) update_interest();
  }

  void read_backend() {
    uint8_t *scratch = loop().scratch();
    const ListenerConfig &config = client_->config();
    for (int round = 0; round < 4 && !backend_eof_ && !paused_for_client_; ++round) {
      // Never read more than the client's queue can take: what is read is
      // already out of the kernel, and must not be dropped.
      size_t queued = client_->queued_output();
      size_t room = config.max_output > queued ? config.max_output - queued : 0;
      if (room == 0) {
        paused_for_client_ = true;
        return;
      }
      ssize_t n = ::recv(fd_.get(), scratch, room < EventLoop::scratch_size ? room : EventLoop::scratch_size, 0);
      if (n > 0) {
        client_->mark_active();
        if (client_->send(scratch, static_cast<size_t>(n)) != 0) return;  // the client is closing: nobody to tell
        if (client_->queued_output() > config.high_water) paused_for_client_ = true;
        if (static_cast<size_t>(n) < EventLoop::scratch_size) return;
        continue;
      }
      if (n == 0) {
        backend_eof_ = true;
        client_->shutdown_write();
        close_if_done();
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return fail(errno);
    }
  }

  void write_backend() {
    while (!out_.empty()) {
      ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        out_.consume(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return fail(errno);
    }
    if (out_.size() < client_->config().low_water) client_->resume_reading();
    if (out_.empty() && shut_when_flushed_) shut_backend();
  }

  void shut_backend() {
    if (backend_shut_) return;
    ::shutdown(fd_.get(), SHUT_WR);
    backend_shut_ = true;
  }

  // Both directions have ended: the client closes once its output is sent.
  void close_if_done() {
    if (client_ && backend_eof_ && backend_shut_ && client_->peer_shut_down()) client_->close(CloseReason::peer);
  }

  void fail(int error) {
    if (!client_) return;
    const Server &server = client_->listener().server();
    server.logger().log(LogLevel::warning, "%s: %s: backend %s: %s; closing the client",
                        client_->config().name.c_str(), client_->peer().to_string().c_str(),
                        forwarder_.label().c_str(), std::strerror(error));
    out_.release();
    client_->close(connecting_ ? CloseReason::local : CloseReason::reset);
  }

  void update_interest() {
    if (!watched_ || !client_) return;
    uint32_t want = 0;
    if (connecting_ || !out_.empty()) want |= EPOLLOUT;
    if (!connecting_ && !backend_eof_ && !paused_for_client_) want |= EPOLLIN;
    if (want == interest_) return;
    interest_ = want;
    loop().modify(fd_.get(), want, this);
  }

  Forwarder &forwarder_;
  Connection *client_;
  EventLoop *forwarder_loop_ = nullptr;
  Fd fd_;
  Buffer out_;  // client -> backend bytes the backend has not taken yet
  uint32_t interest_ = 0;
  bool watched_ = false;
  bool connecting_ = true;
  bool backend_eof_ = false;
  bool backend_shut_ = false;
  bool shut_when_flushed_ = false;
  bool paused_for_client_ = false;

 public:
  void set_loop(EventLoop &loop) { forwarder_loop_ = &loop; }
};

BackendLink *link_of(Connection &conn) { return static_cast<BackendLink *>(conn.user_data()); }

}  // namespace

void Forwarder::on_open(Connection &conn) {
  auto *link = new BackendLink(*this, conn);
  link->set_loop(conn.listener().server().loop());
  conn.set_user_data(link);
  link->start();
}

void Forwarder::on_message(Connection &conn, const uint8_t *data, size_t length) {
  if (BackendLink *link = link_of(conn)) link->forward(data, length);
}

bool Forwarder::on_peer_shutdown(Connection &conn) {
  if (BackendLink *link = link_of(conn)) link->client_shut_down();
  return true;
}

void Forwarder::on_drain(Connection &conn) {
  if (BackendLink *link = link_of(conn)) link->client_drained();
}

void Forwarder::on_close(Connection &conn, CloseReason) {
  if (BackendLink *link = link_of(conn)) {
    conn.set_user_data(nullptr);
    link->release();
  }
}

}  // namespace gw
