// SPDX-License-Identifier: MIT
#include "gw/connection.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "gw/errors.hpp"
#include "gw/listener.hpp"
#include "gw/server.hpp"
#include "socket_send.hpp"

namespace gw {

Connection::Connection(Listener &listener, ConnectionOwner &owner, ConnectionOwner::Position position,
                       const SocketAddress &peer, uint64_t id)
    : listener_(listener),
      owner_(owner),
      position_(position),
      rules_(listener.shared_rules()),
      id_(id),
      peer_(peer),
      reason_(static_cast<uint8_t>(CloseReason::local)),
      backpressured_(false),
      user_paused_(false),
      peer_eof_(false),
      half_closed_(false),
      half_close_pending_(false),
      parked_(false),
      delivering_fragment_(false),
      parsing_(false) {}

// The frame deadline of a connection that holds a partial frame (see
// Connection::FrameDeadline): its timer, and what the handler holds of a
// message (hold_partial_message). Owned by the connection; loop thread only.
struct Connection::FrameDeadline {
  Timer timer;
  size_t handler_partial = 0;
  explicit FrameDeadline(Connection &conn)
      : timer(conn.listener_.server().loop(), [&conn] { conn.on_frame_timeout(); }) {}
};

static_assert((EPOLLIN | EPOLLOUT) < 0xFF, "Connection::interest_ holds EPOLLIN | EPOLLOUT in one byte");
#define GW_CORE_CLOSE_FITS(NAME, name, value, text) \
  static_assert((value) >= 0 && (value) < 256, "Connection::reason_ holds a CloseReason in one byte");
GW_CLOSE_REASON_MAP(GW_CORE_CLOSE_FITS)
#undef GW_CORE_CLOSE_FITS

int Connection::create(std::unique_ptr<Connection> &out, Listener &listener, ConnectionOwner &owner,
                       ConnectionOwner::Position position, Fd &&fd, const SocketAddress &peer, uint64_t id) {
  std::unique_ptr<Connection> conn(new Connection(listener, owner, position, peer, id));
  if (int rc = listener.server().loop().add(fd.get(), EPOLLIN, conn.get())) return rc;
  conn->fd_ = std::move(fd);
  conn->interest_ = EPOLLIN;
  conn->last_active_ms_ = EventLoop::now_ms();
  out = std::move(conn);
  return 0;
}

Connection::~Connection() = default;

const ListenerConfig &Connection::config() const noexcept { return rules_->config; }
ConnectionHandler &Connection::handler() const noexcept { return *rules_->handler; }

void Connection::check_thread(const char *where) const noexcept {
  listener_.server().loop().assert_in_loop_thread(where);
}

// Traffic moved: the owner keeps its connections in order of last activity.
void Connection::note_activity() noexcept {
  last_active_ms_ = EventLoop::now_ms();
  owner_.on_active(*this, position_);
}

// ---- output --------------------------------------------------------------

int Connection::send(const void *data, size_t length) {
  check_thread("Connection::send");
  iovec part{const_cast<void *>(data), length};
  return send_parts(&part, 1);
}

int Connection::send_message(const void *data, size_t length) {
  check_thread("Connection::send_message");
  const ListenerConfig &settings = config();
  EncodedFrame frame;
  if (!encode_frame(settings.framing, data, length, frame) ||
      (settings.framing != Framing::raw && length > settings.max_frame))
    return err::ETOOBIG;
  return send_parts(frame.parts, frame.count);
}

int Connection::send_parts(const iovec *parts, int count) {
  check_thread("Connection::send_parts");
  if (state_ != State::open) return err::ECLOSED;
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += parts[i].iov_len;
  if (out_.size() + total > config().max_output) return -EAGAIN;
  size_t written = 0;
  if (out_.empty() && total) {
    // Nothing queued: hand the bytes straight to the kernel and queue only the
    // rest, so a connection that keeps up never allocates an output buffer.
    ssize_t n = send_parts_now(fd_.get(), parts, count);
    // On a real error the rest is queued anyway: epoll reports the error on
    // this socket and on_io closes it, so no callback runs inside send().
    if (n > 0) {
      written = static_cast<size_t>(n);
      owner_.counters().add(&Stats::bytes_out, written);
    }
  }
  out_.append_parts(parts, count, written);
  after_output_change();
  return 0;
}

void Connection::after_output_change() {
  const ListenerConfig &settings = config();
  if (!backpressured_ && out_.size() > settings.high_water) {
    backpressured_ = true;
  } else if (backpressured_ && out_.size() < settings.low_water) {
    backpressured_ = false;
    update_interest();
    if (state_ == State::open) handler().on_drain(*this);
    return;
  }
  update_interest();
}

void Connection::handle_write() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      owner_.counters().add(&Stats::bytes_out, static_cast<uint64_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    finish(CloseReason::reset);
    return;
  }
  if (out_.empty() && state_ == State::closing) {
    begin_linger();
    if (state_ == State::closed) return;
  } else if (out_.empty() && half_close_pending_ && !half_closed_) {
    ::shutdown(fd_.get(), SHUT_WR);
    half_closed_ = true;
  }
  after_output_change();
}

// ---- input ---------------------------------------------------------------

void Connection::handle_read() {
  uint8_t *scratch = listener_.server().loop().scratch();
  // A few reads per wake-up at most, so one fast client cannot starve others.
  for (int round = 0; round < 4; ++round) {
    ssize_t n = ::recv(fd_.get(), scratch, EventLoop::scratch_size, 0);
    if (n > 0) {
      if (state_ == State::closing) continue;  // closing: input is read and dropped
      owner_.counters().add(&Stats::bytes_in, static_cast<uint64_t>(n));
      note_activity();
      {
        struct Parsing {  // parsing_ is a bit-field: set through its connection
          Connection &conn;
          explicit Parsing(Connection &c) noexcept : conn(c) { conn.parsing_ = true; }
          ~Parsing() { conn.parsing_ = false; }
        } parsing(*this);
        deliver(scratch, static_cast<size_t>(n));
      }
      // A handler that took over the socket (delegate_io) reads it from now on.
      if (state_ != State::open || backpressured_ || user_paused_ || delegate_) return;
      if (static_cast<size_t>(n) < EventLoop::scratch_size) return;
      continue;
    }
    if (n == 0) {
      handle_peer_eof();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    finish(CloseReason::reset);
    return;
  }
}

void Connection::deliver(const uint8_t *data, size_t length) {
  const ListenerConfig &settings = config();
  ConnectionHandler &events = handler();
  if (settings.framing == Framing::raw) {
    events.on_message(*this, data, length);
    return;
  }
  // Parse straight from the scratch buffer when nothing is pending; only an
  // incomplete tail is copied into this connection's own buffer.
  bool buffered = !in_.empty();
  if (buffered) {
    in_.append(data, length);
    data = in_.data();
    length = in_.size();
  }
  size_t offset = 0;
  while (state_ == State::open) {
    FrameScan scan = scan_frame(settings.framing, settings.max_frame, data + offset, length - offset);
    if (scan.status == FrameScan::need_more) break;
    if (scan.status == FrameScan::oversize) {
      listener_.server().logger().log(LogLevel::info, "%s: closing %s: frame larger than max_frame (%zu bytes)",
                                      settings.name.c_str(), peer().to_string().c_str(), settings.max_frame);
      in_.release();
      close(CloseReason::oversize);
      return;
    }
    events.on_message(*this, data + offset + scan.payload_offset, scan.payload_length);
    offset += scan.consumed;
  }
  if (state_ != State::open) return;  // a callback closed us: the rest is not delivered
  if (buffered)
    in_.consume(offset);
  else
    in_.append(data + offset, length - offset);
  update_frame_deadline(offset > 0);
}

void Connection::hold_partial_message(size_t bytes, bool completed) {
  check_thread("Connection::hold_partial_message");
  // Only the frame deadline reads it, and only while open: without one there
  // is nothing to keep (and nothing to allocate).
  if (!config().frame_timeout_ms || state_ != State::open) return;
  if (bytes && !frame_) frame_ = std::make_unique<FrameDeadline>(*this);
  if (frame_) frame_->handler_partial = bytes;
  // After the peer's EOF nothing more can arrive: not a slow message.
  if (!peer_eof_) update_frame_deadline(completed);
}

size_t Connection::partial_bytes() const noexcept { return in_.size() + (frame_ ? frame_->handler_partial : 0); }

void Connection::update_frame_deadline(bool completed) {
  uint64_t timeout = config().frame_timeout_ms;
  if (!timeout) return;
  if (partial_bytes() == 0) {
    if (frame_) frame_->timer.stop();
    return;
  }
  // A frame has begun: it has `timeout` from its first byte. A later frame
  // gets its own deadline once the one before it completed.
  if (!frame_) frame_ = std::make_unique<FrameDeadline>(*this);
  if (completed || !frame_->timer.active()) frame_->timer.start(timeout);
}

void Connection::on_frame_timeout() {
  if (state_ != State::open || partial_bytes() == 0) return;
  if (backpressured_ || user_paused_ || delegate_) {
    // We are the ones not reading (the output or a backend is full): the
    // rest of the frame may be waiting in the kernel. Not the client's fault.
    frame_->timer.start(config().frame_timeout_ms);
    return;
  }
  listener_.server().logger().log(
      LogLevel::info, "%s: closing %s: frame not complete within frame_timeout (%llu ms, %zu bytes of it received)",
      config().name.c_str(), peer().to_string().c_str(), static_cast<unsigned long long>(config().frame_timeout_ms),
      partial_bytes());
  close(CloseReason::idle);
}

void Connection::handle_peer_eof() {
  peer_eof_ = true;
  // Nothing more can arrive: an incomplete frame is not a slow one.
  if (frame_) frame_->timer.stop();
  if (state_ == State::open) {
    // A last line without its '\n' is still a line (`printf 'hi' | nc`).
    if (config().framing == Framing::line && !in_.empty()) {
      Buffer last = std::move(in_);
      in_ = Buffer();
      delivering_fragment_ = true;
      handler().on_message(*this, last.data(), last.size());
      delivering_fragment_ = false;
      if (state_ != State::open) return;
    }
    if (handler().on_peer_eof(*this)) {
      update_interest();  // nothing more to read; output may go on
      return;
    }
    close(CloseReason::peer);
    return;
  }
  if (state_ == State::closing && out_.empty())
    finish(close_reason());
  else
    update_interest();
}

// ---- closing -------------------------------------------------------------

void Connection::close(CloseReason reason) {
  check_thread("Connection::close");
  if (state_ != State::open) return;
  if (IoDelegate *delegate = std::exchange(delegate_, nullptr)) {
    interest_ = unknown_interest;  // force a fresh epoll_ctl
    delegate->on_delegate_end(*this);
  }
  state_ = State::closing;
  reason_ = static_cast<uint8_t>(reason);
  in_.release();
  if (frame_) frame_->timer.stop();
  close_deadline_ms_ = EventLoop::now_ms() + listener_.server().config().stop_timeout_ms;
  owner_.on_closing(*this, position_);
  if (out_.empty())
    begin_linger();
  else
    update_interest();
}

void Connection::begin_linger() {
  if (peer_eof_) {
    finish(close_reason());
    return;
  }
  // Half-close and read until the peer's FIN: closing a socket that still has
  // unread input makes the kernel send a reset, which can destroy the output we
  // just queued before the peer reads it.
  if (!half_closed_) {
    ::shutdown(fd_.get(), SHUT_WR);
    half_closed_ = true;
  }
  update_interest();
}

void Connection::abort(CloseReason reason) {
  check_thread("Connection::abort");
  finish(reason);
}

void Connection::finish(CloseReason reason) {
  if (state_ == State::closed) return;
  bool was_closing = state_ == State::closing;
  state_ = State::closed;
  delegate_ = nullptr;
  Server &server = listener_.server();
  if (!out_.empty()) {
    server.logger().log(LogLevel::warning, "%s: %s: %zu queued bytes could not be delivered (%s)",
                        config().name.c_str(), peer().to_string().c_str(), out_.size(), close_reason_name(reason));
  }
  server.loop().remove(fd_.get());
  fd_.reset();
  in_.release();
  out_.release();
  frame_.reset();
  // The owner drops us from its lists and counts now and frees us after the
  // batch: handlers further down this batch may still hold pointers to us,
  // and ignore us since we are closed.
  owner_.on_closed(*this, position_, was_closing);
  server.logger().log(LogLevel::info, "%s: %s closed (%s)", config().name.c_str(), peer().to_string().c_str(),
                      close_reason_name(reason));
  handler().on_close(*this, reason);
  owner_.after_close_reported();
}

// ---- readiness -------------------------------------------------------------

void Connection::half_close() {
  check_thread("Connection::half_close");
  if (state_ != State::open || half_closed_) return;
  half_close_pending_ = true;
  if (out_.empty()) {
    ::shutdown(fd_.get(), SHUT_WR);
    half_closed_ = true;
  }
}

void Connection::mark_active() noexcept {
  check_thread("Connection::mark_active");
  if (state_ == State::open) note_activity();
}

void Connection::pause_reading() {
  check_thread("Connection::pause_reading");
  user_paused_ = true;
  update_interest();
}

void Connection::resume_reading() {
  check_thread("Connection::resume_reading");
  user_paused_ = false;
  update_interest();
}

void Connection::update_interest() {
  if (state_ == State::closed || delegate_) return;
  uint32_t want = 0;
  if (!peer_eof_) {
    if (state_ == State::open ? !(backpressured_ || user_paused_) : true) want |= EPOLLIN;
  }
  if (!out_.empty()) want |= EPOLLOUT;
  apply_interest(want);
}

int Connection::delegate_io(IoDelegate &delegate, uint32_t interest) {
  check_thread("Connection::delegate_io");
  if (state_ != State::open || !in_.empty() || !out_.empty() || peer_eof_) return err::ESTATE;
  delegate_ = &delegate;
  set_delegated_interest(interest);
  return 0;
}

void Connection::set_delegated_interest(uint32_t interest) {
  check_thread("Connection::set_delegated_interest");
  if (delegate_) apply_interest(interest);
}

void Connection::apply_interest(uint32_t want) {
  EventLoop &loop = listener_.server().loop();
  if (parked_) {
    if (want == 0) return;
    parked_ = false;
    interest_ = static_cast<uint8_t>(want);
    loop.add(fd_.get(), want, this);
    return;
  }
  if (want == interest_) return;
  interest_ = static_cast<uint8_t>(want);
  loop.modify(fd_.get(), want, this);
}

// EPOLLHUP is reported whatever the interest, for as long as it holds: a
// connection that has nothing to do right now (its reading paused, its output
// empty) leaves epoll until it wants an event again, instead of spinning.
void Connection::park() {
  if (parked_) return;
  listener_.server().loop().remove(fd_.get());
  parked_ = true;
  interest_ = 0;
}

void Connection::account_in(size_t bytes) noexcept {
  owner_.counters().add(&Stats::bytes_in, bytes);
  mark_active();
}

void Connection::account_spliced(size_t bytes) noexcept {
  check_thread("Connection::account_spliced");
  owner_.counters().add(&Stats::bytes_spliced, bytes);
}

void Connection::account_out(size_t bytes) noexcept {
  owner_.counters().add(&Stats::bytes_out, bytes);
  mark_active();
}

void Connection::on_io(uint32_t events) {
  if (state_ == State::closed) return;  // closed earlier in this batch
  if (delegate_) {
    delegate_->on_delegated_io(*this, events);
    if ((events & EPOLLHUP) && state_ != State::closed && interest_ == 0) park();
    return;
  }
  if (events & EPOLLERR) {
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    listener_.server().logger().log(LogLevel::debug, "%s: %s: %s", config().name.c_str(), peer().to_string().c_str(),
                                    std::strerror(error));
    finish(CloseReason::reset);
    return;
  }
  // A callback of ours that dispatches again (nested) sees our input stay
  // readable: it waits in the kernel until our deliver() is done with in_.
  if ((events & EPOLLIN) && (interest_ & EPOLLIN) && !parsing_) {
    handle_read();
    if (state_ == State::closed) return;
  }
  if ((events & EPOLLOUT) && (interest_ & EPOLLOUT)) {
    handle_write();
    if (state_ == State::closed) return;
  }
  if (events & EPOLLHUP) {
    // The peer's FIN arrived and our side is shut too (or the connection is
    // gone). Unread input may still wait in the kernel, and a proxy may still
    // be delivering it elsewhere: do not close here. Output can no longer be
    // sent, so whatever is queued is lost.
    if (!out_.empty()) {
      finish(CloseReason::reset);
      return;
    }
    if (interest_ == 0) park();
  }
}

}  // namespace gw
