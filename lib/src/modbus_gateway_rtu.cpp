// SPDX-License-Identifier: MIT
// ModbusGateway's RTU bus: one serial line, kept open, with the timing of
// the Modbus serial line guide (V1.02, 2.5.1.1):
//  - before each frame the line has been quiet for 3.5 characters (a fixed
//    1750 us above 19200 baud), counted from the end of our last frame on
//    the wire (write time + its characters' time) or the last byte read;
//  - a reply ends when the length its bytes imply is complete, or, for a
//    function whose replies do not say (20, 21, 43, user-defined), after
//    the same silence;
//  - a broadcast (address 0) gets no reply; the line stays quiet for
//    broadcast_delay_ms after it, so that the slaves can act on it.
// Times come from CLOCK_MONOTONIC in microseconds; the loop's timers count
// whole milliseconds, so every wait is rounded up: gaps are never shorter
// than the rule, only a little longer.
//
// The device is opened at create and kept open. While it is missing, held
// by another program or lost, it is watched for as the serial backend does
// (DeviceWatch; a held port is retried every second) and the gateway
// answers requests with 0x0B at once.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "gw/device_watch.hpp"
#include "gw/serial.hpp"
#include "modbus_gateway_impl.hpp"

namespace gw {
namespace {

using modbus::Bytes;
using namespace modbus_limits;

uint64_t now_us() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

uint64_t ceil_ms(uint64_t us) noexcept { return (us + 999) / 1000; }

/// The RTU bus. Owns the SerialPort while the device is open, the watch
/// while it waits for it, and its timers. Loop thread only; the port's
/// events come to on_io.
class RtuBus final : public ModbusBus, IoHandler {
 public:
  RtuBus(ModbusGateway::Impl &gateway, SerialBackendConfig device);
  ~RtuBus() override;

  bool available() const noexcept override { return static_cast<bool>(port_); }
  bool has_broadcast() const noexcept override { return true; }
  void send(uint8_t address, const Bytes &pdu) override;
  void open_or_watch();

 private:
  // What the line is doing for the try in flight.
  enum class State { idle, waiting_for_gap, sending, awaiting_reply, after_broadcast };

  void on_io(uint32_t events) override;
  void transmit();
  void write_pending();
  void sent();
  void read_port();
  void check_reply();
  void on_silence();
  void complete(size_t length);
  void on_response_timeout();
  void on_broadcast_done();
  void lose(const std::string &what);
  void unavailable(int rc, const std::string &why);
  void watch(const DeviceNode *gone);
  void close_port() noexcept;
  void stop_timers() noexcept;
  void set_interest(uint32_t events);

  SerialBackendConfig device_;
  std::unique_ptr<SerialPort> port_;
  std::unique_ptr<DeviceWatch> watch_;
  uint32_t gap_us_ = 0;
  uint32_t char_us_ = 0;
  uint32_t interest_ = 0;
  State state_ = State::idle;
  uint8_t address_ = 0;
  uint8_t function_ = 0;
  Bytes out_;                    // the frame, or what of it the driver has not taken yet
  size_t frame_size_ = 0;        // the whole frame's, for its time on the wire
  Bytes reply_;                  // what came back so far for the try in flight
  uint64_t quiet_until_us_ = 0;  // the next frame may start then
  uint64_t last_read_us_ = 0;
  int last_error_ = 0;     // the last open failure, so that a repeated one is not logged again
  bool lost_ = false;      // logged as lost: its return is logged as such
  Timer gap_timer_;        // until the line has been quiet long enough to send
  Timer response_timer_;   // response_timeout_ms per try
  Timer silence_timer_;    // the end of a reply whose length is not implied
  Timer broadcast_timer_;  // broadcast_delay_ms after a broadcast
  Timer busy_timer_;       // retries a port held by another program
};

RtuBus::RtuBus(ModbusGateway::Impl &gateway, SerialBackendConfig device)
    : ModbusBus(gateway),
      device_(std::move(device)),
      gap_timer_(gateway.loop_, [this] { transmit(); }),
      response_timer_(gateway.loop_, [this] { on_response_timeout(); }),
      silence_timer_(gateway.loop_, [this] { on_silence(); }),
      broadcast_timer_(gateway.loop_, [this] { on_broadcast_done(); }),
      busy_timer_(gateway.loop_, [this] { open_or_watch(); }) {
  const SerialSettings &line = device_.settings;
  char_us_ = line.char_time_us();
  gap_us_ = line.baud > fixed_gap_above_baud ? fixed_gap_us : line.chars_time_us(35);
}

RtuBus::~RtuBus() {
  watch_.reset();
  close_port();
}

// ---- the device ----------------------------------------------------------------

void RtuBus::open_or_watch() {
  busy_timer_.stop();
  if (port_) return;
  std::string why;
  std::unique_ptr<SerialPort> port;
  int rc = SerialPort::open(port, device_.path, device_.settings, device_.open_options, why);
  if (rc == 0 && (rc = gateway_.loop_.add(port->fd(), EPOLLIN, this)) != 0)
    why = device_.path + ": cannot watch the device fd: " + std::strerror(-rc);
  if (rc) return unavailable(rc, why);
  port_ = std::move(port);
  interest_ = EPOLLIN;
  if (watch_) watch_->stop();
  gateway_.logger_.log(lost_ ? LogLevel::warning : LogLevel::info, "%s: device %s (%s, %s)", gateway_.label_.c_str(),
                       lost_ ? "back" : "open", port_->device().c_str(), port_->settings().summary().c_str());
  lost_ = false;
  last_error_ = 0;
  quiet_until_us_ = now_us() + gap_us_;
}

// Logged once per kind of failure; a held port is retried, anything else
// waits for the path to change.
void RtuBus::unavailable(int rc, const std::string &why) {
  if (rc != last_error_ && !(lost_ && rc == -ENOENT))
    gateway_.logger_.log(LogLevel::warning, "%s: device not available (%s); requests get exception 0x0B until it is",
                         gateway_.label_.c_str(), why.c_str());
  last_error_ = rc;
  if (rc == -EBUSY) return busy_timer_.start(busy_retry_ms);
  DeviceNode node;
  const bool exists = device_node_at(device_.path, node);
  watch(exists ? &node : nullptr);
}

void RtuBus::watch(const DeviceNode *gone) {
  std::string why;
  if (!watch_ && DeviceWatch::create(
                     watch_, gateway_.loop_, device_.path, [this] { open_or_watch(); }, why) != 0) {
    gateway_.logger_.log(LogLevel::error, "%s: %s", gateway_.label_.c_str(), why.c_str());
    return;
  }
  if ((gone ? watch_->start_after(*gone, why) : watch_->start(why)) != 0)
    gateway_.logger_.log(LogLevel::error, "%s: %s", gateway_.label_.c_str(), why.c_str());
}

void RtuBus::close_port() noexcept {
  if (!port_) return;
  gateway_.loop_.remove(port_->fd());
  port_.reset();
  interest_ = 0;
}

void RtuBus::stop_timers() noexcept {
  gap_timer_.stop();
  response_timer_.stop();
  silence_timer_.stop();
  broadcast_timer_.stop();
}

// The device went away: the try in flight ends as unavailable (0x0B), and
// the device is watched for.
void RtuBus::lose(const std::string &what) {
  const DeviceNode gone = port_->node();
  close_port();
  lost_ = true;
  gateway_.logger_.log(LogLevel::warning, "%s: device lost (%s); watching for its return", gateway_.label_.c_str(),
                       what.c_str());
  watch(&gone);
  const State was = state_;
  state_ = State::idle;
  stop_timers();
  out_.clear();
  reply_.clear();
  if (was == State::after_broadcast) return gateway_.broadcast_done();
  if (was != State::idle) gateway_.try_failed(TryFailure::unavailable);
}

void RtuBus::set_interest(uint32_t events) {
  if (!port_ || events == interest_) return;
  interest_ = events;
  gateway_.loop_.modify(port_->fd(), events, this);
}

// ---- one try -------------------------------------------------------------------

// Always from the gap timer, even with no wait: send() never calls back.
void RtuBus::send(uint8_t address, const Bytes &pdu) {
  address_ = address;
  function_ = pdu.empty() ? 0 : pdu[0];
  out_ = modbus::rtu_frame(address, pdu.data(), pdu.size());
  frame_size_ = out_.size();
  reply_.clear();
  state_ = State::waiting_for_gap;
  const uint64_t now = now_us();
  gap_timer_.start(quiet_until_us_ > now ? ceil_ms(quiet_until_us_ - now) : 0);
}

void RtuBus::transmit() {
  if (state_ != State::waiting_for_gap) return;
  if (!port_) {
    state_ = State::idle;
    return gateway_.try_failed(TryFailure::unavailable);
  }
  const uint64_t now = now_us();
  if (now < quiet_until_us_) return gap_timer_.start(ceil_ms(quiet_until_us_ - now));  // bytes came meanwhile
  state_ = State::sending;
  write_pending();
}

void RtuBus::write_pending() {
  while (port_ && !out_.empty()) {
    const ssize_t n = ::write(port_->fd(), out_.data(), out_.size());
    if (n > 0) {
      out_.erase(out_.begin(), out_.begin() + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return set_interest(EPOLLIN | EPOLLOUT);
    return lose(std::strerror(n < 0 ? errno : EIO));
  }
  if (!port_) return;
  set_interest(EPOLLIN);
  sent();
}

// The frame is with the driver: it is on the wire for its characters' time,
// and the line must then be quiet for the gap (and after a broadcast, for
// broadcast_delay_ms as well).
void RtuBus::sent() {
  const uint64_t wire_us = static_cast<uint64_t>(frame_size_) * char_us_;
  quiet_until_us_ = now_us() + wire_us + gap_us_;
  if (address_ == modbus::broadcast_address) {
    state_ = State::after_broadcast;
    quiet_until_us_ += static_cast<uint64_t>(gateway_.config_.broadcast_delay_ms) * 1000;
    return broadcast_timer_.start(ceil_ms(wire_us) + gateway_.config_.broadcast_delay_ms);
  }
  state_ = State::awaiting_reply;
  response_timer_.start(ceil_ms(wire_us) + gateway_.config_.response_timeout_ms);
}

void RtuBus::on_io(uint32_t events) {
  if (!port_) return;  // closed earlier in this batch
  if (events & EPOLLOUT) write_pending();
  if (port_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_port();
}

void RtuBus::read_port() {
  uint8_t *scratch = gateway_.loop_.scratch();
  size_t discarded = 0;
  for (;;) {
    const ssize_t n = ::read(port_->fd(), scratch, EventLoop::scratch_size);
    if (n > 0) {
      last_read_us_ = now_us();
      quiet_until_us_ = std::max(quiet_until_us_, last_read_us_ + gap_us_);
      if (state_ == State::awaiting_reply && reply_.size() + n <= modbus::max_rtu_adu_size)
        reply_.insert(reply_.end(), scratch, scratch + n);
      else
        discarded += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return lose(n == 0 ? "hang-up" : std::strerror(errno));
  }
  if (discarded)
    gateway_.logger_.log(LogLevel::debug, "%s: %zu bytes from the bus with no request waiting for them: discarded",
                         gateway_.label_.c_str(), discarded);
  if (state_ == State::awaiting_reply) check_reply();
}

// Ends the reply when its implied length is there; otherwise (a length its
// bytes do not tell, another unit or function answering) waits for silence.
void RtuBus::check_reply() {
  if (reply_.empty()) return;
  const modbus::RtuReplyLength end = modbus::rtu_reply_length(function_, reply_.data(), reply_.size());
  if (reply_[0] == address_ && end.kind == modbus::RtuReplyLength::known) {
    if (reply_.size() >= end.length) complete(end.length);
    return;
  }
  if (end.kind != modbus::RtuReplyLength::need_more || reply_[0] != address_) silence_timer_.start(ceil_ms(gap_us_));
}

void RtuBus::on_silence() {
  if (state_ != State::awaiting_reply) return;
  const uint64_t quiet_us = now_us() - last_read_us_;
  if (quiet_us < gap_us_) return silence_timer_.start(ceil_ms(gap_us_ - quiet_us));
  complete(reply_.size());
}

// Checks the reply's first `length` bytes (any more are dropped) and hands
// its PDU to the gateway, or fails the try.
void RtuBus::complete(size_t length) {
  state_ = State::idle;
  response_timer_.stop();
  silence_timer_.stop();
  const Bytes frame(reply_.begin(), reply_.begin() + static_cast<std::ptrdiff_t>(length));
  reply_.clear();
  if (frame.size() < modbus::min_rtu_frame_size || !modbus::crc_ok(frame.data(), frame.size()))
    return gateway_.try_failed(TryFailure::bad_crc);
  const uint8_t function = frame[1];
  if (frame[0] != address_ || (function != function_ && function != (function_ | modbus::exception_flag)))
    return gateway_.try_failed(TryFailure::timeout);
  gateway_.try_answered(frame.data() + 1, frame.size() - 3);
}

void RtuBus::on_response_timeout() {
  if (state_ != State::awaiting_reply) return;
  state_ = State::idle;
  silence_timer_.stop();
  reply_.clear();
  gateway_.try_failed(TryFailure::timeout);
}

void RtuBus::on_broadcast_done() {
  if (state_ != State::after_broadcast) return;
  state_ = State::idle;
  gateway_.broadcast_done();
}

}  // namespace

int make_rtu_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SerialBackendConfig device,
                 std::string &) {
  auto bus = std::make_unique<RtuBus>(gateway, std::move(device));
  bus->open_or_watch();
  out = std::move(bus);
  return 0;
}

}  // namespace gw
