// SPDX-License-Identifier: MIT
#include "gw/forwarder.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "gw/errors.hpp"
#include "gw/server.hpp"

namespace gw {

void EchoHandler::on_message(Connection &conn, const uint8_t *data, size_t length) {
  // Backpressure keeps the queue below max_output: reading stops at high_water.
  conn.send_message(data, length);
}

int parse_unix_address(std::string_view text, SocketAddress &out) noexcept {
  constexpr std::string_view prefix = "unix:";
  if (text.substr(0, prefix.size()) != prefix) return err::EADDRESS;
  std::string_view path = text.substr(prefix.size());
  auto *un = reinterpret_cast<sockaddr_un *>(&out.storage);
  if (path.empty() || path.front() != '/' || path.size() >= sizeof un->sun_path) return err::EADDRESS;
  out = SocketAddress{};
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return 0;
}

namespace {

// splice() has no MSG_NOSIGNAL: splicing into a socket whose peer is gone
// raises SIGPIPE, which kills a program that does not ignore it (gatewayd
// does; firmware embedding the core may not). So the loop thread blocks
// SIGPIPE before its first splice, and a SIGPIPE that a splice raised is taken
// back at once (sigtimedwait without waiting) so that it never stays pending.
// Only the failing call pays for that; the fast path makes no extra call.
void block_sigpipe_on_this_thread() noexcept {
  thread_local bool blocked = false;
  if (blocked) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  blocked = pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}

void take_back_sigpipe() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  timespec no_wait{};
  while (sigtimedwait(&set, nullptr, &no_wait) == SIGPIPE) {
  }
}

/// A kernel pipe between two sockets for splice(), with the count of bytes in it.
struct SplicePipe {
  Fd read_end, write_end;
  size_t held = 0;
  size_t capacity = 64 * 1024;  // Linux's default pipe size, until open() grows it

  int open() noexcept {
    block_sigpipe_on_this_thread();
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
    // Bigger pipes mean fewer wake-ups per megabyte on a bulk flow; the pages
    // are only allocated while data sits in the pipe. Refused (an unprivileged
    // user over fs.pipe-user-pages-soft): keep the default.
    int size = ::fcntl(write_end.get(), F_SETPIPE_SZ, 256 * 1024);
    if (size > 0) capacity = static_cast<size_t>(size);
    return 0;
  }
  size_t room() const noexcept { return capacity - held; }
  // socket -> pipe: > 0 moved, 0 EOF, -EAGAIN, or a negated errno.
  ssize_t fill_from(int socket) noexcept {
    ssize_t n = ::splice(socket, nullptr, write_end.get(), nullptr, room(), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) held += static_cast<size_t>(n);
    return n < 0 ? -errno : n;
  }
  // pipe -> socket: >= 0 moved, -EAGAIN, or a negated errno.
  ssize_t drain_to(int socket) noexcept {
    if (!held) return 0;
    ssize_t n = ::splice(read_end.get(), nullptr, socket, nullptr, held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) held -= static_cast<size_t>(n);
    if (n >= 0) return n;
    int error = errno;
    if (error == EPIPE) take_back_sigpipe();
    return -error;
  }
};

/// The backend side of one forwarded client. Owns the backend socket and what
/// is in flight between the two. Bytes pass through user space (the client's
/// queue and ours) until the flow turns bulk: then, at the first moment when
/// nothing is queued, both directions switch to splice() through two pipes,
/// and the bytes no longer leave the kernel. Owned by its client (user_data)
/// and freed after the batch in which the client closed. Loop thread only.
class BackendLink final : IoHandler, IoDelegate {
 public:
  BackendLink(Forwarder &forwarder, Connection &client, uint64_t connect_timeout_ms)
      : forwarder_(forwarder),
        client_(&client),
        loop_(client.listener().server().loop()),
        connect_timeout_ms_(connect_timeout_ms),
        connect_timer_(loop_, [this] { on_connect_timeout(); }) {}

  /// Connects to `addresses`, one after the other until one answers: the
  /// next after a refusal, an error or the connect timeout. Bytes the client
  /// sends meanwhile are queued.
  void start(ResolvedName::Addresses addresses) {
    waiting_for_name_ = false;
    addresses_ = std::move(addresses);
    next_ = 0;
    tried_.clear();
    connect_next();
  }

  /// The backend name has no answer yet: wait for start() or give_up(), at
  /// most the connect timeout.
  void wait_for_name() {
    waiting_for_name_ = true;
    connect_timer_.start(connect_timeout_ms_);
  }

  /// No address to try: closes the client, saying why.
  void give_up(const std::string &why) {
    if (!client_) return;
    connect_timer_.stop();
    client_->listener().server().logger().log(LogLevel::warning, "%s: %s: backend %s: %s; closing the client",
                                               client_->config().name.c_str(), client_->peer().to_string().c_str(),
                                               forwarder_.label().c_str(), why.c_str());
    out_.release();
    client_->close(CloseReason::local);
  }

  /// True once every address was tried in vain.
  bool unreachable() const noexcept { return unreachable_; }

  /// Bytes from the client for the backend (buffered mode): one message,
  /// framed again as the client framed it.
  void forward(const iovec *parts, int count) {
    size_t total = 0;
    for (int i = 0; i < count; ++i) total += parts[i].iov_len;
    if (total >= EventLoop::scratch_size) want_splice_ = true;
    size_t written = 0;
    if (!connecting_ && out_.empty()) {
      msghdr message{};
      message.msg_iov = const_cast<iovec *>(parts);
      message.msg_iovlen = static_cast<size_t>(count);
      ssize_t n = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) written = static_cast<size_t>(n);
      // An error is seen again (EPOLLERR) once the rest is queued.
    }
    out_.append_parts(parts, count, written);
    if (out_.size() > client_->config().high_water) client_->pause_reading();
    update_interest();
    maybe_splice();
  }

  /// The client sent EOF: pass it on once its bytes are delivered.
  void on_client_eof() {
    client_eof_ = true;
    if (!connecting_ && out_.empty() && to_backend_.held == 0) half_close_backend();
    close_if_done();
  }

  void client_drained() {
    if (paused_for_client_) {
      paused_for_client_ = false;
      update_interest();
    }
    maybe_splice();
  }

  /// The client is gone: close the backend socket now, free this after the batch.
  void release() {
    client_ = nullptr;
    connect_timer_.stop();
    if (watched_) loop_.remove(fd_.get());
    fd_.reset();
    loop_.defer([this] { delete this; });
  }

 private:
  // ---- events of the backend socket ----
  void on_io(uint32_t events) override {
    if (!client_) return;  // released earlier in this batch
    if (connecting_) {
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
      if (error) return connect_failed(error);
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      // The event may be a late one of the previous address's socket, read in
      // the same batch: only a peer proves that this socket is connected.
      SocketAddress peer;
      peer.length = sizeof peer.storage;
      if (::getpeername(fd_.get(), peer.get(), &peer.length) != 0) return;
      connecting_ = false;
      connect_timer_.stop();
      if (client_eof_ && out_.empty()) half_close_backend();
    }
    if (spliced_) return pump();
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      read_backend();
      if (!client_) return;
    }
    if ((events & EPOLLOUT) || !out_.empty()) write_backend();
    if (!client_) return;
    update_interest();
    maybe_splice();
  }

  // ---- connecting ----
  void connect_next() {
    while (addresses_ && next_ < addresses_->size()) {
      const SocketAddress &backend = (*addresses_)[next_++];
      int error = open_attempt(backend);
      if (error == 0) {
        connect_timer_.start(connect_timeout_ms_);
        return;
      }
      note_failure(backend, error);
    }
    unreachable_ = true;
    if (!addresses_ || addresses_->size() <= 1) return fail(last_error_ ? last_error_ : EHOSTUNREACH);
    give_up("every address failed (" + tried_ + ")");
  }

  // 0 once the connect is under way, or why it could not start.
  int open_attempt(const SocketAddress &backend) {
    fd_.reset(::socket(backend.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return errno;
    if (::connect(fd_.get(), backend.get(), backend.length) != 0 && errno != EINPROGRESS) return errno;
    interest_ = EPOLLOUT;  // writable = connected (or failed: SO_ERROR says which)
    if (int rc = loop_.add(fd_.get(), interest_, this)) return -rc;
    watched_ = true;
    return 0;
  }

  void connect_failed(int error) {
    note_failure((*addresses_)[next_ - 1], error);
    connect_next();
  }

  void on_connect_timeout() {
    if (!client_) return;
    if (waiting_for_name_) {
      return give_up("no address yet: the name is still being resolved after " +
                     std::to_string(connect_timeout_ms_) + " ms");
    }
    if (connecting_) connect_failed(ETIMEDOUT);
  }

  // Closes the socket of a failed attempt and remembers why, for the log line.
  void note_failure(const SocketAddress &backend, int error) {
    if (watched_) loop_.remove(fd_.get());
    watched_ = false;
    fd_.reset();
    connect_timer_.stop();
    last_error_ = error;
    if (!tried_.empty()) tried_ += ", ";
    tried_ += backend.to_string() + ": " + std::strerror(error);
  }

  // ---- buffered mode ----
  void read_backend() {
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
        client_->half_close();
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
    if (out_.empty() && client_eof_) {
      half_close_backend();
      close_if_done();
    }
  }

  // ---- splice mode ----
  void maybe_splice() {
    if (!want_splice_ || spliced_ || !client_ || connecting_ || backend_eof_ || client_eof_) return;
    // Splicing bypasses the frame checks: only raw routes may leave user space.
    if (!client_->config().splice || client_->config().framing != Framing::raw) return;
    if (!out_.empty() || client_->queued_output() || !client_->is_open()) return;
    if (to_client_.open() != 0 || to_backend_.open() != 0) {
      want_splice_ = false;  // out of fds for pipes: stay buffered
      return;
    }
    if (client_->delegate_io(*this, EPOLLIN) != 0) {
      want_splice_ = false;
      return;
    }
    spliced_ = true;
    paused_for_client_ = false;
    update_interest();
  }

  void on_delegated_io(Connection &, uint32_t) override { pump(); }

  void on_delegate_end(Connection &conn) override {
    // Bytes already spliced out of the backend belong to the client: read
    // them back out of the pipe into its queue, which flushes them. The pipe
    // (up to 256 KiB) is larger than the scratch buffer (64 KiB), so this
    // goes in scratch-sized pieces; each is queued before the next is read.
    spliced_ = false;
    uint8_t *scratch = loop_.scratch();
    while (to_client_.held) {
      size_t piece = to_client_.held < EventLoop::scratch_size ? to_client_.held : EventLoop::scratch_size;
      ssize_t n = ::read(to_client_.read_end.get(), scratch, piece);
      if (n <= 0) break;
      to_client_.held -= static_cast<size_t>(n);
      if (conn.send(scratch, static_cast<size_t>(n)) != 0) {
        // Only when max_output is set below the pipe's size: say what is lost.
        conn.listener().server().logger().log(
            LogLevel::warning, "%s: %s: %zu bytes from the backend could not be queued (max_output)",
            conn.config().name.c_str(), conn.peer().to_string().c_str(), static_cast<size_t>(n) + to_client_.held);
        break;
      }
    }
  }

  // Moves what can be moved in both directions, a few rounds while bytes keep
  // flowing (fewer trips through epoll on a bulk flow, yet bounded so other
  // clients get their turn), then updates both interests. Level-triggered
  // epoll calls again for whatever is still ready.
  void pump() {
    Connection &client = *client_;
    int client_fd = client.fd();
    for (int round = 0; round < 8; ++round) {
      size_t progress = 0;
      // client -> pipe -> backend
      if (!client_eof_ && to_backend_.room()) {
        ssize_t n = to_backend_.fill_from(client_fd);
        if (n > 0) {
          client.account_in(static_cast<size_t>(n));
          client.account_spliced(static_cast<size_t>(n));
          progress += static_cast<size_t>(n);
        } else if (n == 0) {
          client_eof_ = true;
          client.mark_peer_eof();
        } else if (n != -EAGAIN) {
          return broken(client, static_cast<int>(-n));
        }
      }
      ssize_t moved = to_backend_.drain_to(fd_.get());
      if (moved > 0) progress += static_cast<size_t>(moved);
      else if (moved < 0 && moved != -EAGAIN) return fail(static_cast<int>(-moved));
      // backend -> pipe -> client
      if (!backend_eof_ && to_client_.room()) {
        ssize_t n = to_client_.fill_from(fd_.get());
        if (n > 0) progress += static_cast<size_t>(n);
        else if (n == 0) backend_eof_ = true;
        else if (n != -EAGAIN) return fail(static_cast<int>(-n));
      }
      moved = to_client_.drain_to(client_fd);
      if (moved > 0) {
        client.account_out(static_cast<size_t>(moved));
        client.account_spliced(static_cast<size_t>(moved));
        progress += static_cast<size_t>(moved);
      } else if (moved < 0 && moved != -EAGAIN) {
        return broken(client, static_cast<int>(-moved));
      }
      if (!progress) break;
    }
    if (client_eof_ && to_backend_.held == 0) half_close_backend();
    if (backend_eof_ && to_client_.held == 0) client.half_close();
    if (backend_eof_ && to_client_.held == 0 && client_eof_ && backend_half_closed_) {
      client.close(CloseReason::peer);
      return;
    }
    client.set_delegated_interest((!client_eof_ && to_backend_.room() ? EPOLLIN : 0u) |
                                  (to_client_.held ? EPOLLOUT : 0u));
    update_interest();
  }

  void broken(Connection &client, int error) {
    client.listener().server().logger().log(LogLevel::info, "%s: %s: %s", client.config().name.c_str(),
                                             client.peer().to_string().c_str(), std::strerror(error));
    client.abort(CloseReason::reset);
  }

  // ---- both modes ----
  void half_close_backend() {
    if (backend_half_closed_) return;
    ::shutdown(fd_.get(), SHUT_WR);
    backend_half_closed_ = true;
  }

  // Both directions have ended: the client closes once its output is sent.
  void close_if_done() {
    if (client_ && backend_eof_ && backend_half_closed_ && client_->peer_eof()) client_->close(CloseReason::peer);
  }

  void fail(int error) {
    if (!client_) return;
    client_->listener().server().logger().log(LogLevel::warning, "%s: %s: backend %s: %s; closing the client",
                                               client_->config().name.c_str(), client_->peer().to_string().c_str(),
                                               forwarder_.label().c_str(), std::strerror(error));
    out_.release();
    client_->close(connecting_ ? CloseReason::local : CloseReason::reset);
  }

  void update_interest() {
    if (!watched_ || !client_) return;
    uint32_t want = 0;
    if (connecting_) {
      want = EPOLLOUT;
    } else if (spliced_) {
      if (to_backend_.held) want |= EPOLLOUT;
      if (!backend_eof_ && to_client_.room()) want |= EPOLLIN;
    } else {
      if (!out_.empty()) want |= EPOLLOUT;
      if (!backend_eof_ && !paused_for_client_) want |= EPOLLIN;
    }
    if (want == interest_) return;
    interest_ = want;
    loop_.modify(fd_.get(), want, this);
  }

  Forwarder &forwarder_;
  Connection *client_;
  EventLoop &loop_;
  uint64_t connect_timeout_ms_;
  Timer connect_timer_;  // the current connect attempt, or the wait for the name
  ResolvedName::Addresses addresses_;  // what this client tries, in order
  size_t next_ = 0;
  std::string tried_;  // "ADDRESS: error, ..." of the failed attempts
  int last_error_ = 0;
  bool waiting_for_name_ = false;
  bool unreachable_ = false;
  Fd fd_;
  Buffer out_;  // buffered mode: client -> backend bytes the backend has not taken yet
  SplicePipe to_backend_, to_client_;  // splice mode
  uint32_t interest_ = 0;
  bool watched_ = false;
  bool connecting_ = true;
  bool client_eof_ = false;
  bool backend_eof_ = false;
  bool backend_half_closed_ = false;
  bool paused_for_client_ = false;
  bool want_splice_ = false;
  bool spliced_ = false;
};

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

void Forwarder::on_open(Connection &conn) {
  auto *link = new BackendLink(*this, conn, options_.connect_timeout_ms);
  conn.set_user_data(link);
  if (!name_) return link->start(fixed_);
  switch (name_->state()) {
    case ResolvedName::State::resolved:
      return link->start(name_->addresses());
    case ResolvedName::State::pending:
      waiting_.push_back(&conn);
      return link->wait_for_name();
    case ResolvedName::State::failed:
      return link->give_up("cannot resolve " + name_->host() + ": " + name_->error());
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
