// SPDX-License-Identifier: MIT
// ModbusGateway's TCP bus: one Modbus TCP device behind one non-blocking
// connection, shared by every client of the route. The connection is made
// when a request needs it and made again after it is lost. Each try gets a
// transaction id of the gateway's own, so an answer is matched to the try it
// belongs to: a late answer to a try that timed out carries an older id and
// is discarded, never given to the next request. The gateway puts the
// client's own transaction id back (modbus_gateway.cpp).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "modbus_gateway_impl.hpp"
#include "socket_options.hpp"

namespace gw {
namespace {

using modbus::Bytes;

/// The TCP bus. Owns the backend socket and its buffers; loop thread only.
class TcpBus final : public ModbusBus, IoHandler {
 public:
  TcpBus(ModbusGateway::Impl &gateway, SocketAddress backend);
  ~TcpBus() override { disconnect(); }

  // Connected on demand: a request is always tried.
  bool available() const noexcept override { return true; }
  bool has_broadcast() const noexcept override { return false; }
  void send(uint8_t address, const Bytes &pdu) override;

 private:
  void on_io(uint32_t events) override;
  void connect_now();
  void write_pending();
  void read_answers();
  void fail(TryFailure failure, const std::string &what);
  void disconnect() noexcept;
  void set_interest(uint32_t events);
  void on_response_timeout();

  SocketAddress backend_;
  Fd fd_;
  bool connecting_ = false;
  uint32_t interest_ = 0;
  Bytes out_;                 // the try's ADU, or what of it the socket has not taken yet
  Bytes in_;                  // answers, not yet complete
  uint16_t transaction_ = 0;  // the try in flight's
  bool awaiting_ = false;
  bool reported_down_ = false;  // logged once until it answers again
  Timer start_timer_;           // runs the try from the loop: send() never calls back
  Timer response_timer_;        // response_timeout_ms per try, connecting included
};

TcpBus::TcpBus(ModbusGateway::Impl &gateway, SocketAddress backend)
    : ModbusBus(gateway),
      backend_(backend),
      start_timer_(gateway.loop_, [this] { fd_ ? write_pending() : connect_now(); }),
      response_timer_(gateway.loop_, [this] { on_response_timeout(); }) {}

void TcpBus::send(uint8_t address, const Bytes &pdu) {
  ++transaction_;
  out_ = modbus::mbap_frame(transaction_, address, pdu.data(), pdu.size());
  awaiting_ = true;
  response_timer_.start(gateway_.config_.response_timeout_ms);
  start_timer_.start(0);
}

void TcpBus::connect_now() {
  if (int error = start_connect(fd_, backend_))
    return fail(TryFailure::unavailable, std::string(fd_ ? "connect: " : "socket: ") + std::strerror(error));
  connecting_ = true;
  interest_ = EPOLLOUT;
  if (int rc = gateway_.loop_.add(fd_.get(), EPOLLOUT, this))
    return fail(TryFailure::unavailable, std::string("epoll: ") + std::strerror(-rc));
}

void TcpBus::on_io(uint32_t events) {
  if (!fd_) return;
  if (connecting_) {
    int error = 0;
    socklen_t size = sizeof error;
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
    if (error == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
      connecting_ = false;
      return write_pending();
    }
    return fail(TryFailure::unavailable, std::string("connect: ") + std::strerror(error ? error : ECONNREFUSED));
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_answers();
  if (fd_ && (events & EPOLLOUT)) write_pending();
}

void TcpBus::write_pending() {
  if (!fd_ || connecting_) return;
  while (!out_.empty()) {
    const ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(out_.begin(), out_.begin() + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return set_interest(EPOLLIN | EPOLLOUT);
    return fail(TryFailure::unavailable, std::string("send: ") + std::strerror(errno));
  }
  set_interest(EPOLLIN);
}

void TcpBus::read_answers() {
  uint8_t *scratch = gateway_.loop_.scratch();
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), scratch, EventLoop::scratch_size, 0);
    if (n > 0) {
      in_.insert(in_.end(), scratch, scratch + n);
      if (in_.size() > 4 * modbus::max_tcp_adu_size) break;  // parse before reading more
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return fail(TryFailure::unavailable, n == 0 ? "the device closed the connection" : std::strerror(errno));
  }
  size_t offset = 0;
  for (;;) {
    const modbus::MbapScan scan = modbus::scan_mbap(in_.data() + offset, in_.size() - offset);
    if (scan.status == modbus::ScanStatus::error) return fail(TryFailure::unavailable, scan.reason);
    if (scan.status == modbus::ScanStatus::need_more) break;
    const uint8_t *adu = in_.data() + offset;
    offset += scan.length;
    if (!awaiting_ || scan.transaction != transaction_) continue;  // a late answer to an abandoned try
    awaiting_ = false;
    response_timer_.stop();
    reported_down_ = false;
    const Bytes pdu(adu + modbus::mbap_header_size, adu + scan.length);
    in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(offset));
    return gateway_.try_answered(pdu.data(), pdu.size());
  }
  in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(offset));
}

// The connection failed or was lost: it is dropped (the next try connects
// again), and the try in flight, if any, ends as `failure`.
void TcpBus::fail(TryFailure failure, const std::string &what) {
  if (!reported_down_)
    gateway_.logger_.log(LogLevel::warning, "%s: Modbus TCP device %s: %s", gateway_.label_.c_str(),
                         backend_.to_string().c_str(), what.c_str());
  reported_down_ = true;
  disconnect();
  if (!awaiting_) return;
  awaiting_ = false;
  response_timer_.stop();
  start_timer_.stop();
  gateway_.try_failed(failure);
}

void TcpBus::on_response_timeout() {
  if (!awaiting_) return;
  awaiting_ = false;
  start_timer_.stop();
  // Still connecting, or the ADU not all sent (the device stopped reading):
  // the connection is dropped, the next try makes another. A half-sent ADU
  // must never be followed by the next one on the same stream.
  if (connecting_ || !out_.empty()) disconnect();
  out_.clear();
  gateway_.try_failed(TryFailure::timeout);
}

void TcpBus::disconnect() noexcept {
  if (!fd_) return;
  gateway_.loop_.remove(fd_.get());
  fd_.reset();
  connecting_ = false;
  interest_ = 0;
  in_.clear();
}

void TcpBus::set_interest(uint32_t events) {
  if (!fd_ || events == interest_) return;
  interest_ = events;
  gateway_.loop_.modify(fd_.get(), events, this);
}

}  // namespace

int make_tcp_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SocketAddress backend,
                 std::string &why) {
  if (backend.family() != AF_INET && backend.family() != AF_INET6 && backend.family() != AF_UNIX) {
    why = "the Modbus TCP device's address is not an IP or Unix socket address";
    return -EINVAL;
  }
  out = std::make_unique<TcpBus>(gateway, backend);
  return 0;
}

}  // namespace gw
