// SPDX-License-Identifier: MIT
#include "backend_link.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "gw/forwarder.hpp"
#include "gw/server.hpp"
#include "socket_options.hpp"
#include "socket_send.hpp"

namespace gw {
namespace {

// The epoll interest of one socket in splice mode: readable while it has not
// reached EOF and its outgoing pipe has room, writable while its incoming
// pipe holds bytes for it.
uint32_t splice_interest(bool eof, const SplicePipe &outgoing, const SplicePipe &incoming) noexcept {
  return (!eof && outgoing.room() ? EPOLLIN : 0u) | (incoming.held() ? EPOLLOUT : 0u);
}

// Connection::account_in or Connection::account_out.
using Account = void (Connection::*)(size_t) noexcept;

// Counts `bytes` moved by a splice on the client's socket (`client` set)
// with `account` and as spliced; the backend's socket is not counted.
void count_spliced(size_t bytes, Connection *client, Account account) noexcept {
  if (!bytes || !client) return;
  (client->*account)(bytes);
  client->account_spliced(bytes);
}

// Readiness that epoll reported for a spliced socket: it may be read again
// (EPOLLIN) or written again (EPOLLOUT). A hang-up or an error counts as
// both, so that the next splice reports it.
void note_ready(uint32_t events, bool &dry, bool &full) noexcept {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) dry = false;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) full = false;
}

}  // namespace

BackendLink::BackendLink(Forwarder &forwarder, Connection &client, uint64_t connect_timeout_ms)
    : forwarder_(forwarder),
      client_(&client),
      loop_(client.listener().server().loop()),
      attempts_(std::make_unique<Attempts>(*this, connect_timeout_ms)) {}

BackendLink::Attempts::Attempts(BackendLink &link, uint64_t timeout_ms)
    : connect_timeout_ms(timeout_ms), timer(link.loop_, [&link] { link.on_connect_timeout(); }) {}

// start, wait_for_name and the connect steps run only while connecting_,
// when attempts_ is there.
void BackendLink::start(ResolvedName::Addresses addresses) {
  Attempts &attempts = *attempts_;
  attempts.waiting_for_name = false;
  attempts.addresses = std::move(addresses);
  attempts.next = 0;
  attempts.tried.clear();
  connect_next();
}

void BackendLink::wait_for_name() {
  attempts_->waiting_for_name = true;
  attempts_->timer.start(attempts_->connect_timeout_ms);
}

void BackendLink::give_up(const std::string &why) {
  if (!client_) return;
  if (attempts_) attempts_->timer.stop();
  close_client(why.c_str(), CloseReason::local);
}

void BackendLink::forward(const iovec *parts, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += parts[i].iov_len;
  if (total >= EventLoop::scratch_size) want_splice_ = true;
  size_t written = 0;
  if (!connecting_ && out_.empty()) {
    ssize_t n = send_parts_now(fd_.get(), parts, count);
    if (n > 0) written = static_cast<size_t>(n);
    // An error is seen again (EPOLLERR) once the rest is queued.
  }
  out_.append_parts(parts, count, written);
  if (out_.size() > client_->config().high_water) client_->pause_reading();
  update_interest();
  maybe_splice();
}

void BackendLink::on_client_eof() {
  client_eof_ = true;
  if (!connecting_ && out_.empty() && held_for_backend() == 0) half_close_backend();
  close_if_done();
}

void BackendLink::client_drained() {
  if (paused_for_client_) {
    paused_for_client_ = false;
    update_interest();
  }
  maybe_splice();
}

void BackendLink::release() {
  client_ = nullptr;
  if (attempts_) attempts_->timer.stop();
  if (watched_) loop_.remove(fd_.get());
  fd_.reset();
  loop_.defer([this] { delete this; });
}

void BackendLink::on_io(uint32_t events) {
  if (!client_) return;  // released earlier in this batch
  if (connecting_) {
    // A connect that failed always reports EPOLLERR or EPOLLHUP (tcp_poll):
    // writable alone means connected, without asking SO_ERROR (a system call
    // per connection saved).
    if (events & (EPOLLERR | EPOLLHUP) || !(events & EPOLLOUT)) {
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
      if (error) return connect_failed(error);
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    }
    // After a failed attempt the event may be a late one of the previous
    // address's socket, read in the same batch: only a peer proves that this
    // socket is connected. On the first attempt no earlier socket existed,
    // so the call (one per connection) is skipped.
    if (attempts_ && attempts_->next > 1) {
      SocketAddress peer;
      peer.length = sizeof peer.storage;
      if (::getpeername(fd_.get(), peer.get(), &peer.length) != 0) return;
    }
    connecting_ = false;
    attempts_.reset();  // not from inside its timer's callback: this is an I/O event
    if (client_eof_ && out_.empty()) half_close_backend();
  }
  if (spliced_) {
    note_ready(events, backend_dry_, backend_full_);
    return pump();
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    read_backend();
    if (!client_) return;
  }
  if ((events & EPOLLOUT) || !out_.empty()) write_backend();
  if (!client_) return;
  update_interest();
  maybe_splice();
}

void BackendLink::connect_next() {
  Attempts &attempts = *attempts_;
  while (attempts.addresses && attempts.next < attempts.addresses->size()) {
    const SocketAddress &backend = (*attempts.addresses)[attempts.next++];
    int error = open_attempt(backend);
    if (error == 0) {
      attempts.timer.start(attempts.connect_timeout_ms);
      return;
    }
    note_failure(backend, error);
  }
  unreachable_ = true;
  if (!attempts.addresses || attempts.addresses->size() <= 1)
    return backend_failed(attempts.last_error ? attempts.last_error : EHOSTUNREACH);
  give_up("every address failed (" + attempts.tried + ")");
}

// 0 once the connect is under way, or why it could not start.
int BackendLink::open_attempt(const SocketAddress &backend) {
  if (int error = start_connect(fd_, backend)) return error;
  interest_ = EPOLLOUT;  // writable = connected (or failed: SO_ERROR says which)
  if (int rc = loop_.add(fd_.get(), interest_, this)) return -rc;
  watched_ = true;
  return 0;
}

void BackendLink::connect_failed(int error) {
  note_failure((*attempts_->addresses)[attempts_->next - 1], error);
  connect_next();
}

void BackendLink::on_connect_timeout() {
  if (!client_) return;
  if (attempts_->waiting_for_name) {
    return give_up("no address yet: the name is still being resolved after " +
                   std::to_string(attempts_->connect_timeout_ms) + " ms");
  }
  if (connecting_) connect_failed(ETIMEDOUT);
}

// Closes the socket of a failed attempt and remembers why, for the log line.
void BackendLink::note_failure(const SocketAddress &backend, int error) {
  if (watched_) loop_.remove(fd_.get());
  watched_ = false;
  fd_.reset();
  Attempts &attempts = *attempts_;
  attempts.timer.stop();
  attempts.last_error = error;
  if (!attempts.tried.empty()) attempts.tried += ", ";
  attempts.tried += backend.to_string() + ": " + std::strerror(error);
}

void BackendLink::read_backend() {
  uint8_t *scratch = loop_.scratch();
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
      want_splice_ = true;  // a full buffer in one read: this flow is bulk
      continue;
    }
    if (n == 0) {
      backend_eof_ = true;
      // When both directions have ended the client is closed right away, and
      // close(2) sends its FIN: a shutdown(2) first would be one more call
      // per connection for nothing.
      if (!done()) client_->half_close();
      close_if_done();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    return backend_failed(errno);
  }
}

void BackendLink::write_backend() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return backend_failed(errno);
  }
  if (out_.size() < client_->config().low_water) client_->resume_reading();
  if (out_.empty() && client_eof_) {
    half_close_backend();
    close_if_done();
  }
}

void BackendLink::maybe_splice() {
  if (!want_splice_ || spliced_ || !client_ || connecting_ || backend_eof_ || client_eof_) return;
  // Splicing bypasses the frame checks: only raw routes may leave user space.
  if (!client_->config().splice || client_->config().framing != Framing::raw) return;
  if (!out_.empty() || client_->queued_output() || !client_->is_open()) return;
  // The pipe towards the client never grows past what its queue takes:
  // on_delegate_end() hands what the pipe holds back to that queue.
  pipes_ = std::make_unique<Pipes>();
  if (pipes_->to_client.open(client_->config().max_output) != 0 || pipes_->to_backend.open(SIZE_MAX) != 0 ||
      client_->delegate_io(*this, EPOLLIN) != 0) {
    // Out of fds for pipes, or the client cannot hand over its socket: stay
    // buffered, without holding the pipes' fds for nothing.
    pipes_.reset();
    want_splice_ = false;
    return;
  }
  spliced_ = true;
  paused_for_client_ = false;
  update_interest();
}

void BackendLink::on_delegated_io(Connection &, uint32_t events) {
  note_ready(events, client_dry_, client_full_);
  pump();
}

void BackendLink::on_delegate_end(Connection &conn) {
  // Bytes already spliced out of the backend belong to the client: read
  // them back out of the pipe into its queue, which flushes them. The pipe
  // (up to 1 MiB) is larger than the scratch buffer (64 KiB), so this
  // goes in scratch-sized pieces; each is queued before the next is read.
  spliced_ = false;
  SplicePipe &to_client = pipes_->to_client;
  uint8_t *scratch = loop_.scratch();
  while (to_client.held()) {
    size_t piece = to_client.held() < EventLoop::scratch_size ? to_client.held() : EventLoop::scratch_size;
    ssize_t n = to_client.read_into(scratch, piece);
    if (n <= 0) break;
    if (conn.send(scratch, static_cast<size_t>(n)) != 0) {
      // Only when max_output is set below the pipe's size: say what is lost.
      conn.listener().server().logger().log(
          LogLevel::warning, "%s: %s: %zu bytes from the backend could not be queued (max_output)",
          conn.config().name.c_str(), conn.peer().to_string().c_str(), static_cast<size_t>(n) + to_client.held());
      break;
    }
  }
}

// Moves what can be moved in each direction, then updates both interests.
// Level-triggered epoll calls again for whatever is still ready.
void BackendLink::pump() {
  Connection &client = *client_;
  Pipes &pipes = *pipes_;
  SpliceEnd client_end{client.fd(), client_eof_, client_dry_, client_full_, &client};
  SpliceEnd backend_end{fd_.get(), backend_eof_, backend_dry_, backend_full_, nullptr};
  if (!shovel(client_end, pipes.to_backend, backend_end)) return;
  if (!shovel(backend_end, pipes.to_client, client_end)) return;
  propagate_half_close(client_end, pipes.to_backend, backend_end);
  propagate_half_close(backend_end, pipes.to_client, client_end);
  if (backend_eof_ && pipes.to_client.held() == 0 && client_eof_ && backend_half_closed_) {
    client.close(CloseReason::peer);
    return;
  }
  client.set_delegated_interest(splice_interest(client_eof_, pipes.to_backend, pipes.to_client));
  update_interest();
}

// One direction of the pump, the same code for both (as systemd-socket-proxyd's
// connection_shovel): fills `pipe` from `from` and drains it into `to` at
// once, again while either moved bytes, a bounded number of turns so that
// other clients get their turn. A socket that answered EAGAIN is not tried
// again until epoll reports it ready (SpliceEnd::dry and ::full): on a
// one-way bulk flow that saves a failing splice per turn, and per wake-up.
// Returns false when a failed splice closed or aborted the client: the pump
// must then stop at once.
bool BackendLink::shovel(SpliceEnd from, SplicePipe &pipe, SpliceEnd to) {
  for (int turn = 0; turn < 8; ++turn) {
    bool moved = false;
    if (!from.eof && !from.dry && pipe.room()) {
      ssize_t n = pipe.fill_from(from.fd);
      if (n == 0) {
        from.eof = true;
        if (from.client) from.client->mark_peer_eof();
      } else if (n == -EAGAIN) {
        // Refused into a pipe that is now full (room() 0): that says nothing
        // of the socket, which is read again once the pipe drains.
        if (pipe.room()) from.dry = true;
      } else if (n < 0) {
        return splice_failed(from, static_cast<int>(-n));
      } else {
        count_spliced(static_cast<size_t>(n), from.client, &Connection::account_in);
        moved = true;
      }
    }
    if (pipe.held() && !to.full) {
      ssize_t n = pipe.drain_to(to.fd);
      if (n == -EAGAIN) {
        to.full = true;
      } else if (n < 0) {
        return splice_failed(to, static_cast<int>(-n));
      } else {
        count_spliced(static_cast<size_t>(n), to.client, &Connection::account_out);
        moved = moved || n > 0;
      }
    }
    if (!moved) break;
  }
  return true;
}

// The source of a direction has reached EOF and its pipe is empty: pass the
// EOF on as a half-close of the destination.
void BackendLink::propagate_half_close(SpliceEnd from, const SplicePipe &pipe, SpliceEnd to) {
  if (!from.eof || pipe.held() != 0) return;
  if (to.client)
    to.client->half_close();
  else
    half_close_backend();
}

// A splice on `end` failed with `error`. On the client's socket nothing more
// can reach the client: abort it. On the backend's: close the client as for
// any backend failure. Returns false, for shovel() to pass on.
bool BackendLink::splice_failed(SpliceEnd end, int error) {
  if (end.client)
    abort_client(error);
  else
    backend_failed(error);
  return false;
}

// The client's socket failed under a splice: nothing more can be sent to it,
// so abort it, logging the reason at info level.
void BackendLink::abort_client(int error) {
  Connection &client = *client_;
  client.listener().server().logger().log(LogLevel::info, "%s: %s: %s", client.config().name.c_str(),
                                          client.peer().to_string().c_str(), std::strerror(error));
  client.abort(CloseReason::reset);
}

void BackendLink::half_close_backend() {
  if (backend_half_closed_) return;
  ::shutdown(fd_.get(), SHUT_WR);
  backend_half_closed_ = true;
}

// Both directions have ended: the backend sent its EOF and took ours, and
// the client sent its EOF.
bool BackendLink::done() const noexcept {
  return client_ && backend_eof_ && backend_half_closed_ && client_->peer_eof();
}

// Then the client closes once its output is sent.
void BackendLink::close_if_done() {
  if (done()) client_->close(CloseReason::peer);
}

// The backend failed with `error` (connect, read, write or splice): close
// the client, with CloseReason::local while still connecting (no exchange had
// begun) and CloseReason::reset once one had.
void BackendLink::backend_failed(int error) {
  if (!client_) return;
  close_client(std::strerror(error), connecting_ ? CloseReason::local : CloseReason::reset);
}

// Logs why this client loses its backend, drops the bytes queued for the
// backend, and closes the client: gracefully, so what it was already sent
// still reaches it. `client_` must be set.
void BackendLink::close_client(const char *why, CloseReason reason) {
  client_->listener().server().logger().log(LogLevel::warning, "%s: %s: backend %s: %s; closing the client",
                                            client_->config().name.c_str(), client_->peer().to_string().c_str(),
                                            forwarder_.label().c_str(), why);
  out_.release();
  client_->close(reason);
}

void BackendLink::update_interest() {
  if (!watched_ || !client_) return;
  uint32_t want = 0;
  if (connecting_) {
    want = EPOLLOUT;
  } else if (spliced_) {
    want = splice_interest(backend_eof_, pipes_->to_client, pipes_->to_backend);
  } else {
    if (!out_.empty()) want |= EPOLLOUT;
    if (!backend_eof_ && !paused_for_client_) want |= EPOLLIN;
  }
  if (want == interest_) return;
  interest_ = want;
  loop_.modify(fd_.get(), want, this);
}

}  // namespace gw
