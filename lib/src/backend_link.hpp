// SPDX-License-Identifier: MIT
// BackendLink: the backend side of one forwarded client. Private to lib/:
// only the Forwarder (forwarder.cpp) makes them.
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gw/buffer.hpp"
#include "gw/connection.hpp"
#include "gw/event_loop.hpp"
#include "gw/fd.hpp"
#include "gw/resolver.hpp"
#include "splice_pipe.hpp"

namespace gw {

class Forwarder;

/// The backend side of one forwarded client. Owns the backend socket and what
/// is in flight between the two. Bytes pass through user space (the client's
/// queue and ours) until the flow turns bulk: then, at the first moment when
/// nothing is queued, both directions switch to splice() through two pipes,
/// and the bytes no longer leave the kernel. Owned by its client (user_data)
/// and freed after the batch in which the client closed. Loop thread only.
class BackendLink final : IoHandler, IoDelegate {
 public:
  BackendLink(Forwarder &forwarder, Connection &client, uint64_t connect_timeout_ms);

  /// Connects to `addresses`, one after the other until one answers: the
  /// next after a refusal, an error or the connect timeout. Bytes the client
  /// sends meanwhile are queued.
  void start(ResolvedName::Addresses addresses);
  /// The backend name has no answer yet: wait for start() or give_up(), at
  /// most the connect timeout.
  void wait_for_name();
  /// No address to try: closes the client, saying why.
  void give_up(const std::string &why);
  /// True once every address was tried in vain.
  bool unreachable() const noexcept { return unreachable_; }

  /// Bytes from the client for the backend (buffered mode): one message,
  /// framed again as the client framed it.
  void forward(const iovec *parts, int count);
  /// The client sent EOF: pass it on once its bytes are delivered.
  void on_client_eof();
  /// The client's output queue went below low water: read the backend again.
  void client_drained();
  /// The client has closed: close the backend socket now, free this after the batch.
  void release();

 private:
  // events of the backend socket
  void on_io(uint32_t events) override;

  // connecting
  void connect_next();
  int open_attempt(const SocketAddress &backend);
  void connect_failed(int error);
  void on_connect_timeout();
  void note_failure(const SocketAddress &backend, int error);

  // buffered mode
  void read_backend();
  void write_backend();

  // splice mode
  void maybe_splice();
  void on_delegated_io(Connection &, uint32_t) override;
  void on_delegate_end(Connection &conn) override;
  // One socket of a spliced flow, as the pump sees it. Only the client's end
  // is counted (its counters and idle timeout) and reports its EOF to its
  // Connection; a failure on it aborts the client.
  struct SpliceEnd {
    int fd;              // owned by the Connection or by this link, not by this view
    bool &eof;           // this socket's peer EOF: client_eof_ or backend_eof_
    bool &dry;           // its last fill found nothing, and epoll has not said EPOLLIN since
    bool &full;          // its last drain found no room, and epoll has not said EPOLLOUT since
    Connection *client;  // the client when this is its socket; null for the backend's
  };
  void pump();
  bool shovel(SpliceEnd from, SplicePipe &pipe, SpliceEnd to);
  void propagate_half_close(SpliceEnd from, const SplicePipe &pipe, SpliceEnd to);
  bool splice_failed(SpliceEnd end, int error);
  void abort_client(int error);

  // both modes
  void half_close_backend();
  bool done() const noexcept;  // both directions ended: the client may close
  void close_if_done();
  void backend_failed(int error);
  void close_client(const char *why, CloseReason reason);
  void update_interest();

  // What only a link that is connecting needs: made with the link, freed
  // once the backend answered (an idle forwarded client pays none of it).
  struct Attempts {
    uint64_t connect_timeout_ms;
    Timer timer;                        // the current connect attempt, or the wait for the name
    ResolvedName::Addresses addresses;  // what this client tries, in order
    size_t next = 0;
    std::string tried;  // "ADDRESS: error, ..." of the failed attempts
    int last_error = 0;
    bool waiting_for_name = false;
    Attempts(BackendLink &link, uint64_t timeout_ms);
  };
  // What only a spliced flow needs: made when the flow turns bulk.
  struct Pipes {
    SplicePipe to_backend, to_client;
  };
  /// Bytes in the client -> backend pipe (0 unless spliced).
  size_t held_for_backend() const noexcept { return pipes_ ? pipes_->to_backend.held() : 0; }

  Forwarder &forwarder_;
  Connection *client_;
  EventLoop &loop_;
  std::unique_ptr<Attempts> attempts_;  // while connecting_
  std::unique_ptr<Pipes> pipes_;        // splice mode, from the first switch on
  Buffer out_;                          // buffered mode: client -> backend bytes the backend has not taken yet
  Fd fd_;
  uint32_t interest_ = 0;
  bool unreachable_ = false;
  bool watched_ = false;
  bool connecting_ = true;
  bool client_eof_ = false;
  bool backend_eof_ = false;
  bool backend_half_closed_ = false;
  bool paused_for_client_ = false;
  bool want_splice_ = false;
  bool spliced_ = false;
  bool client_dry_ = false;  // splice mode: see SpliceEnd
  bool client_full_ = false;
  bool backend_dry_ = false;
  bool backend_full_ = false;
};

}  // namespace gw
