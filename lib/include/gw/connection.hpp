// SPDX-License-Identifier: MIT
// Connection: one accepted client socket and its queues.
#pragma once
#include <sys/uio.h>

#include <cstdint>
#include <list>
#include <memory>

#include "gw/address.hpp"
#include "gw/buffer.hpp"
#include "gw/close_reason.hpp"
#include "gw/event_loop.hpp"
#include "gw/fd.hpp"
#include "gw/stats.hpp"

namespace gw {

class Connection;
class Listener;
class Server;
class ConnectionHandler;
struct ListenerConfig;
struct ListenerRules;

/// How an owner holds its connections (open or closing ones).
using ConnectionList = std::list<std::unique_ptr<Connection>>;

/// The one that holds a Connection: the Listener that accepted it. The
/// connection reports each step of its end here instead of editing lists and
/// counts it does not own; the owner keeps the activity order, the closing
/// list, the per-IP counts and the counters. Loop thread only.
class ConnectionOwner {
 public:
  /// The owner's place for one connection, given to Connection::create: the
  /// connection hands it back with each report, so the owner finds it in O(1).
  using Position = ConnectionList::iterator;

  /// Traffic moved for `conn`: it is now the most recently active one.
  virtual void on_active(Connection &conn, Position position) noexcept = 0;
  /// close() began: `conn` is no longer open. The owner aborts it if it is
  /// still closing at its close_deadline_ms().
  virtual void on_closing(Connection &conn, Position position) = 0;
  /// finish() released the socket: the owner drops `conn` from its list
  /// (the closing one when `was_closing`) and its counts now, and frees it
  /// after the batch. The connection calls on_close after this returns.
  virtual void on_closed(Connection &conn, Position position, bool was_closing) = 0;
  /// The closed connection's ConnectionHandler::on_close has returned.
  virtual void after_close_reported() noexcept = 0;
  /// Where the connection counts its bytes (rolled up to the server's).
  virtual Counters &counters() noexcept = 0;

 protected:
  ~ConnectionOwner() = default;
};

/// Takes over a connection's socket I/O for zero-copy forwarding (splice):
/// while installed, readiness events of the socket go to the delegate, which
/// moves bytes itself and reports them with Connection::account_*(). The
/// connection keeps the fd, the accounting, the limits and the close path.
class IoDelegate {
 public:
  virtual void on_delegated_io(Connection &conn, uint32_t events) = 0;
  /// The connection is closing: hand back any bytes still held for the client
  /// (queue them with send(), which still works during this call).
  virtual void on_delegate_end(Connection &conn) = 0;

 protected:
  ~IoDelegate() = default;
};

/// One client. Owns its connected socket (from accept4) and its input and
/// output buffers, which hold memory only while bytes are pending. Created and
/// owned by its Listener (open and closing alike; see ConnectionOwner), and
/// freed by the loop at the end of the batch in which it closed: a
/// Connection& stays valid until ConnectionHandler::on_close returns.
/// Loop thread only: every entry point below that acts checks it
/// (EventLoop::assert_in_loop_thread); the getters do not.
class Connection final : IoHandler {
 public:
  enum class State : uint8_t { open, closing, closed };

  /// Makes the connection for an accepted client socket and starts reading
  /// it. Called by the Listener that accepted it, which is its `owner` and has
  /// `position` (where `out` lives) ready for it. Moves from `fd` only on
  /// success (see Fd); returns 0 or a negated errno (epoll refused the fd).
  static int create(std::unique_ptr<Connection> &out, Listener &listener, ConnectionOwner &owner,
                    ConnectionOwner::Position position, Fd &&fd, const SocketAddress &peer, uint64_t id);

  /// Queues bytes as they are. Returns 0, err::ECLOSED or -EAGAIN (the queue
  /// would pass max_output; nothing was queued).
  int send(const void *data, size_t length);
  /// Queues one message in the listener's framing (prefix or '\n' added).
  /// Returns as send(), or err::ETOOBIG.
  int send_message(const void *data, size_t length);
  /// Queues several pieces as one unit: all or nothing.
  int send_parts(const iovec *parts, int count);

  /// Graceful close: stops delivering input, flushes output (bounded by the
  /// server's stop timeout), half-closes and waits briefly for the peer's end
  /// so that nothing queued is cut off by a reset, then reports `reason`.
  void close(CloseReason reason = CloseReason::local);

  /// For a handler that frames the client's messages itself (a protocol
  /// such as Modbus on a raw route): it holds `bytes` of a message that has
  /// begun and is not complete (0: none), and `completed` says whether the
  /// input it just took finished at least one message. The route's
  /// frame_timeout_ms then applies to those messages as to the listener's own
  /// framing: a message that has begun must be complete within it, or the
  /// client is closed (a client sending a byte now and then holds no request
  /// open for ever).
  void hold_partial_message(size_t bytes, bool completed);

  /// Stops reading from the socket until resume_reading(); for handlers that
  /// must wait for somewhere to put the data (a backend that is full).
  void pause_reading();
  void resume_reading();

  /// Sends FIN once the queued output is flushed, and keeps reading: the
  /// other half of a proxied half-close.
  void half_close();
  /// Hands socket I/O to `delegate` (see IoDelegate); only while nothing is
  /// buffered in this connection. Returns 0 or err::ESTATE.
  int delegate_io(IoDelegate &delegate, uint32_t interest);
  /// The epoll interest while delegated (EPOLLIN/EPOLLOUT).
  void set_delegated_interest(uint32_t interest);
  /// The socket, for a delegate's splice(). Owned by the connection.
  int fd() const noexcept { return fd_.get(); }
  /// Bytes a delegate moved, for the counters and the idle timeout.
  void account_in(size_t bytes) noexcept;
  void account_out(size_t bytes) noexcept;
  /// Bytes a delegate moved between this client's backend and the kernel
  /// pipes without touching user space (the backend side of a splice).
  void account_spliced(size_t bytes) noexcept;
  /// A delegate saw the peer's EOF.
  void mark_peer_eof() noexcept { peer_eof_ = true; }
  /// Closes at once, discarding queued output (a broken socket).
  void abort(CloseReason reason);

  /// Counts as activity for the idle timeout (traffic the handler saw on the
  /// client's behalf, such as a backend's answer).
  void mark_active() noexcept;
  bool peer_eof() const noexcept { return peer_eof_; }
  /// True during the on_message of a last line that the peer ended with EOF
  /// instead of '\n' (line framing): a proxy forwards it without adding one.
  bool message_unterminated() const noexcept { return delivering_fragment_; }

  State state() const noexcept { return state_; }
  bool is_open() const noexcept { return state_ == State::open; }
  /// When traffic last moved (EventLoop::now_ms()), for the idle timeout.
  uint64_t last_active_ms() const noexcept { return last_active_ms_; }
  /// While closing: when the graceful close gives up, and what it reports.
  uint64_t close_deadline_ms() const noexcept { return close_deadline_ms_; }
  CloseReason close_reason() const noexcept { return static_cast<CloseReason>(reason_); }
  size_t queued_output() const noexcept { return out_.size(); }
  /// A copy: the connection keeps its peer in a compact form.
  SocketAddress peer() const noexcept { return peer_.get(); }
  uint64_t id() const noexcept { return id_; }
  Listener &listener() const noexcept { return listener_; }
  /// The listener configuration and handler this connection was accepted with.
  const ListenerConfig &config() const noexcept;
  ConnectionHandler &handler() const noexcept;
  void *user_data() const noexcept { return user_data_; }
  void set_user_data(void *data) noexcept { user_data_ = data; }

  ~Connection();

 private:
  // No fd here: create() moves it in once watching it has succeeded.
  Connection(Listener &listener, ConnectionOwner &owner, ConnectionOwner::Position position, const SocketAddress &peer,
             uint64_t id);

  void check_thread(const char *where) const noexcept;
  void note_activity() noexcept;
  void on_io(uint32_t events) override;
  void handle_read();
  void handle_write();
  void deliver(const uint8_t *data, size_t length);
  void handle_peer_eof();
  void begin_linger();
  void update_interest();
  void apply_interest(uint32_t want);
  void park();
  /// Closes the socket now and reports `reason`; every path ends here, once.
  void finish(CloseReason reason);
  void after_output_change();
  /// Starts, keeps or stops the frame deadline after input was parsed:
  /// `completed` tells whether at least one frame was complete.
  void update_frame_deadline(bool completed);
  /// Bytes of a started message, in our buffer or held by the handler.
  size_t partial_bytes() const noexcept;
  void on_frame_timeout();

  /// The frame deadline's state (Modbus and framed routes with a
  /// frame_timeout_ms): allocated the first time a frame is partial, freed
  /// when the connection closes, so that a connection that never holds a
  /// partial frame pays one null pointer for it. Defined in connection.cpp.
  struct FrameDeadline;
  /// interest_ while nothing is known of the epoll registration: the next
  /// apply_interest() calls epoll_ctl whatever it wants.
  static constexpr uint8_t unknown_interest = 0xFF;

  // The members are ordered by size, so that the struct has no holes: an
  // idle connection is mostly this object (see tests/core/test_footprint.cpp
  // for the budget). What only some connections need lives elsewhere: the
  // bytes in flight in in_/out_ (heap blocks, freed once drained), the frame
  // deadline in frame_ (allocated while a frame is partial), a long peer
  // address inside peer_.
  Listener &listener_;
  ConnectionOwner &owner_;                      // the same listener, through its seam for connections
  ConnectionOwner::Position position_;          // ours in the owner's lists; only handed back to it
  std::shared_ptr<const ListenerRules> rules_;  // the listener's config and handler when it accepted us
  uint64_t id_;
  uint64_t last_active_ms_ = 0;
  uint64_t close_deadline_ms_ = 0;
  void *user_data_ = nullptr;
  IoDelegate *delegate_ = nullptr;
  std::unique_ptr<FrameDeadline> frame_;  // see FrameDeadline
  Buffer in_, out_;
  CompactAddress peer_;
  Fd fd_;
  State state_ = State::open;
  uint8_t reason_;          // a CloseReason (all of them fit one byte; see close_reason())
  uint8_t interest_ = 0;    // EPOLLIN | EPOLLOUT at most (see apply_interest), or unknown_interest
  bool backpressured_ : 1;  // output passed high water: input paused until low water
  bool user_paused_ : 1;
  bool peer_eof_ : 1;
  bool half_closed_ : 1;
  bool half_close_pending_ : 1;
  bool parked_ : 1;  // out of epoll: hung up, and nothing to do until the handler acts
  bool delivering_fragment_ : 1;
  bool parsing_ : 1;  // inside deliver(): a nested dispatch must not read into in_ now
};

}  // namespace gw
