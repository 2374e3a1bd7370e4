// SPDX-License-Identifier: MIT
// ModbusGateway (issue 10): Modbus clients and one bus through one queue.
// This file: the configuration, the clients' decoders, the queue with its
// tries, and the read cache. The buses are in modbus_gateway_rtu.cpp and
// modbus_gateway_tcp.cpp.
//
// Choices the header leaves open:
//  - A request that cannot be tried (serial device missing or lost, TCP
//    device unreachable) and one that ran out of tries are both answered
//    with exception 0x0B (target device failed to respond): for a client
//    both mean "no answer from that unit", and 0x0A would suggest a
//    configuration problem in the gateway.
//  - A client's EOF (most often a full close) or the server's stop: its
//    queued requests are dropped, the one in flight finishes (bounded by
//    the stop deadline) and its answer is sent if the client still reads,
//    then the client is closed. A client gone for good (on_close) has its
//    queued requests dropped and the answer to the one in flight discarded.
#include "gw/modbus.hpp"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "modbus_gateway_impl.hpp"

namespace gw {

using modbus::Bytes;
using modbus::Exception;
using namespace modbus_limits;

namespace {

int fail(std::string &why, std::string text) {
  why = std::move(text);
  return -EINVAL;
}

std::string text(uint64_t value) { return std::to_string(value); }

uint16_t be16(const uint8_t *at) noexcept { return static_cast<uint16_t>(at[0] << 8 | at[1]); }

int validate_unit_map(const std::vector<ModbusUnitMapping> &map, std::string &why) {
  for (size_t i = 0; i < map.size(); ++i) {
    const ModbusUnitMapping &m = map[i];
    // A client-side unit may be any id but the broadcast: Modbus TCP clients
    // often address a gateway's devices as 248..255 (255 for "this device").
    if (m.from < 1)
      return fail(why, "unit_map from = " + text(m.from) +
                           " is out of range (1 to 255; unit 0 is the broadcast and cannot be mapped)");
    if (m.to < 1 || m.to > modbus::max_bus_address)
      return fail(why, "unit_map to = " + text(m.to) + " (for unit " + text(m.from) +
                           ") is out of range: a bus address is 1 to 247");
    for (size_t j = 0; j < i; ++j) {
      if (map[j].from == m.from)
        return fail(why, "unit_map maps unit " + text(m.from) + " twice: keep one mapping for it");
    }
  }
  return 0;
}

}  // namespace

int ModbusConfig::validate(std::string &why) const {
  if (max_queue < 1 || max_queue > 65535)
    return fail(why, "max_queue " + text(max_queue) + " is out of range (1 to 65535)");
  if (retries > 10) return fail(why, "retries " + text(retries) + " is out of range (0 to 10)");
  if (response_timeout_ms < 1 || response_timeout_ms > 60000)
    return fail(why, "response_timeout " + text(response_timeout_ms) + " ms is out of range (1 ms to 60 s)");
  return validate_unit_map(unit_map, why);
}

ModbusGateway::Impl::Impl(EventLoop &loop, const Logger &logger, ModbusConfig config, std::string label)
    : loop_(loop), logger_(logger), config_(std::move(config)), label_(std::move(label)) {}

// The bus goes first: its timers and fd must not call back into a half-torn
// gateway.
ModbusGateway::Impl::~Impl() { bus_.reset(); }

// ---- clients -----------------------------------------------------------------

ModbusGateway::Impl::Client *ModbusGateway::Impl::find(Connection &conn) {
  return static_cast<Client *>(conn.user_data());
}

void ModbusGateway::Impl::client_opened(Connection &conn) {
  closed_.clear();
  clients_.push_back(std::make_unique<Client>(Client{&conn, {}}));
  conn.set_user_data(clients_.back().get());
}

void ModbusGateway::Impl::client_message(Connection &conn, const uint8_t *data, size_t length) {
  closed_.clear();
  Client *client = find(conn);
  if (!client || client->close_when_done) return;
  client->input.insert(client->input.end(), data, data + length);
  decode(*client);
}

// Takes every complete request from the client's input; a malformed one
// closes the client (Modbus has no way to find the next frame after it).
void ModbusGateway::Impl::decode(Client &client) {
  size_t offset = 0;
  while (client.conn && client.conn->is_open() && offset < client.input.size() && take_frame(client, offset)) {}
  if (!client.conn || !client.conn->is_open()) return;
  client.input.erase(client.input.begin(), client.input.begin() + offset);
  // A request that has begun must end within the route's frame_timeout.
  client.conn->hold_partial_message(client.input.size(), offset > 0);
}

// One frame at `offset`: true when one was taken (offset moved past it).
bool ModbusGateway::Impl::take_frame(Client &client, size_t &offset) {
  const uint8_t *at = client.input.data() + offset;
  const size_t left = client.input.size() - offset;
  if (config_.client_frames == ModbusClientFrames::tcp) {
    const modbus::MbapScan scan = modbus::scan_mbap(at, left);
    if (scan.status == modbus::ScanStatus::error) malformed(client, scan.reason);
    if (scan.status != modbus::ScanStatus::frame) return false;
    offset += scan.length;
    enqueue(client, scan.transaction, scan.unit, at + modbus::mbap_header_size, scan.length - modbus::mbap_header_size);
    return true;
  }
  const modbus::RtuScan scan = modbus::scan_rtu_request(at, left);
  if (scan.status == modbus::ScanStatus::error) malformed(client, scan.reason);
  if (scan.status != modbus::ScanStatus::frame) return false;
  offset += scan.length;
  enqueue(client, 0, at[0], at + 1, scan.length - 3);
  return true;
}

// One line for the client's garbage, then it is closed: the next bytes it
// sends are never read, so it cannot flood the log.
void ModbusGateway::Impl::malformed(Client &client, const char *reason) {
  Stats::add(counters_.malformed, 1);
  const char *what = config_.client_frames == ModbusClientFrames::tcp ? "Modbus TCP" : "Modbus RTU";
  logger_.log(LogLevel::warning, "%s: closing %s: malformed %s request (%s)", label_.c_str(),
              client.conn->peer().to_string().c_str(), what, reason);
  client.input.clear();
  client.conn->close(CloseReason::local);
}

uint8_t ModbusGateway::Impl::bus_address(uint8_t unit) const noexcept {
  for (const ModbusUnitMapping &m : config_.unit_map) {
    if (m.from == unit) return m.to;
  }
  return unit;
}

void ModbusGateway::Impl::enqueue(Client &client, uint16_t transaction, uint8_t unit, const uint8_t *pdu,
                                  size_t length) {
  Stats::add(counters_.requests, 1);
  Request request{&client, transaction, unit, bus_address(unit), Bytes(pdu, pdu + length)};
  if (queue_.size() + (in_flight_ ? 1 : 0) >= config_.max_queue) {
    Stats::add(counters_.busy, 1);
    ++client.pending;  // answer_exception() counts it down
    return answer_exception(request, Exception::server_busy);
  }
  ++client.pending;
  queue_.push_back(std::move(request));
  pump();
}

// EOF or stop: its queued requests are dropped, the one in flight finishes.
// True (stay open) while its answer is still to come.
bool ModbusGateway::Impl::client_leaving(Connection &conn) {
  Client *client = find(conn);
  if (!client) return false;
  for (auto it = queue_.begin(); it != queue_.end();) {
    it = it->client == client ? queue_.erase(it) : it + 1;
  }
  client->pending = in_flight_ && in_flight_->client == client ? 1 : 0;
  client->close_when_done = true;
  return client->pending > 0;
}

void ModbusGateway::Impl::client_closed(Connection &conn) {
  Client *client = find(conn);
  if (!client) return;
  conn.set_user_data(nullptr);
  for (auto it = queue_.begin(); it != queue_.end();) {
    it = it->client == client ? queue_.erase(it) : it + 1;
  }
  if (in_flight_ && in_flight_->client == client) in_flight_->client = nullptr;
  // Kept until the next client event: this may run from inside an answer to
  // this very client (an abort), whose caller still holds it.
  client->conn = nullptr;
  auto it = std::find_if(clients_.begin(), clients_.end(),
                         [&](const std::unique_ptr<Client> &c) { return c.get() == client; });
  closed_.push_back(std::move(*it));
  clients_.erase(it);
}

// ---- the queue -----------------------------------------------------------------

// Starts the next request when the bus is free. Answers from the cache and
// refusals (bus unavailable) are given here in queue order, in a loop: never
// recursively, however long the queue.
void ModbusGateway::Impl::pump() {
  if (pumping_) return;
  pumping_ = true;
  while (!in_flight_ && !queue_.empty()) {
    Request request = std::move(queue_.front());
    queue_.pop_front();
    if (const CacheEntry *entry = cached(request)) {
      Stats::add(counters_.cache_hits, 1);
      const Bytes reply = entry->reply;
      answer(request, reply.data(), reply.size());
      continue;
    }
    if (!bus_ || !bus_->available()) {
      answer_exception(request, Exception::target_no_response);
      continue;
    }
    if (modbus::is_write(request.pdu[0])) forget_unit(request.address);
    if (request.address == modbus::broadcast_address && bus_->has_broadcast()) Stats::add(counters_.broadcasts, 1);
    in_flight_ = std::move(request);
    tries_ = 0;
    start_try();
  }
  pumping_ = false;
}

void ModbusGateway::Impl::start_try() {
  ++tries_;
  bus_->send(in_flight_->address, in_flight_->pdu);
}

void ModbusGateway::Impl::try_answered(const uint8_t *pdu, size_t length) {
  if (!in_flight_) return;
  if (bus_silent_) {
    bus_silent_ = false;
    logger_.log(LogLevel::info, "%s: the bus answers again", label_.c_str());
  }
  const Bytes reply(pdu, pdu + length);
  finish(&reply);
}

void ModbusGateway::Impl::try_failed(TryFailure failure) {
  if (!in_flight_) return;
  if (failure == TryFailure::timeout) Stats::add(counters_.timeouts, 1);
  if (failure == TryFailure::bad_crc) Stats::add(counters_.crc_errors, 1);
  if (failure != TryFailure::unavailable && tries_ <= config_.retries) return start_try();
  if (!bus_silent_) {
    bus_silent_ = true;
    logger_.log(LogLevel::warning, "%s: no answer from bus address %u after %u tries; answering 0x0B", label_.c_str(),
                static_cast<unsigned>(in_flight_->address), static_cast<unsigned>(tries_));
  }
  finish(nullptr);
}

void ModbusGateway::Impl::broadcast_done() {
  if (!in_flight_) return;
  // A broadcast gets no answer: the client's request is simply done.
  Request request = std::move(*in_flight_);
  in_flight_.reset();
  if (request.client && request.client->conn) {
    --request.client->pending;
    after_answer(*request.client);
  }
  pump();
}

// Ends the request in flight: `reply` is the bus's PDU, or null for 0x0B.
void ModbusGateway::Impl::finish(const Bytes *reply) {
  Request request = std::move(*in_flight_);
  in_flight_.reset();
  if (reply) {
    store(request, reply->data(), reply->size());
    answer(request, reply->data(), reply->size());
  } else {
    answer_exception(request, Exception::target_no_response);
  }
  pump();
}

void ModbusGateway::Impl::answer_exception(Request &request, Exception code) {
  const Bytes pdu = modbus::exception_pdu(request.pdu[0], code);
  answer(request, pdu.data(), pdu.size());
}

// Sends one answer to the client that asked, framed as it framed the
// request, with its own unit id (and transaction id) back.
void ModbusGateway::Impl::answer(Request &request, const uint8_t *pdu, size_t length) {
  Client *client = request.client;
  if (!client || !client->conn) return;  // it has gone: the answer is discarded
  --client->pending;
  Stats::add(counters_.replies, 1);
  if (length > 0 && (pdu[0] & modbus::exception_flag)) Stats::add(counters_.exceptions, 1);
  const Bytes frame = config_.client_frames == ModbusClientFrames::tcp
                          ? modbus::mbap_frame(request.transaction, request.client_unit, pdu, length)
                          : modbus::rtu_frame(request.client_unit, pdu, length);
  client->conn->mark_active();
  if (client->conn->send(frame.data(), frame.size()) == -EAGAIN) {
    logger_.log(LogLevel::warning, "%s: dropping %s: it does not read its answers", label_.c_str(),
                client->conn->peer().to_string().c_str());
    client->conn->abort(CloseReason::limit);
    return;
  }
  after_answer(*client);
}

void ModbusGateway::Impl::after_answer(Client &client) {
  if (client.conn && client.close_when_done && client.pending == 0 && client.conn->is_open())
    client.conn->close(CloseReason::local);
}

// ---- the cache -------------------------------------------------------------------

const ModbusGateway::Impl::CacheEntry *ModbusGateway::Impl::cached(const Request &request) const {
  if (config_.cache_ms == 0 || !modbus::is_cached_read(request.pdu[0]) || request.pdu.size() < 5) return nullptr;
  const uint64_t now = EventLoop::now_ms();
  for (const CacheEntry &entry : cache_) {
    if (entry.address == request.address && entry.function == request.pdu[0] && entry.start == be16(&request.pdu[1]) &&
        entry.quantity == be16(&request.pdu[3]) && now - entry.stored_ms < config_.cache_ms)
      return &entry;
  }
  return nullptr;
}

// Keeps a read's normal reply; an exception is never cached.
void ModbusGateway::Impl::store(const Request &request, const uint8_t *pdu, size_t length) {
  if (config_.cache_ms == 0 || !modbus::is_cached_read(request.pdu[0]) || request.pdu.size() < 5) return;
  if (length == 0 || pdu[0] != request.pdu[0]) return;
  const uint16_t start = be16(&request.pdu[1]);
  const uint16_t quantity = be16(&request.pdu[3]);
  cache_.erase(std::remove_if(cache_.begin(), cache_.end(),
                              [&](const CacheEntry &e) {
                                return e.address == request.address && e.function == request.pdu[0] &&
                                       e.start == start && e.quantity == quantity;
                              }),
               cache_.end());
  if (cache_.size() >= max_cache_entries) cache_.erase(cache_.begin());  // the oldest
  cache_.push_back(
      CacheEntry{request.address, request.pdu[0], start, quantity, EventLoop::now_ms(), Bytes(pdu, pdu + length)});
}

void ModbusGateway::Impl::forget_unit(uint8_t address) {
  cache_.erase(std::remove_if(cache_.begin(), cache_.end(), [&](const CacheEntry &e) { return e.address == address; }),
               cache_.end());
}

// ---- ModbusGateway ---------------------------------------------------------------

ModbusGateway::ModbusGateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModbusGateway::~ModbusGateway() = default;

int ModbusGateway::create_rtu(std::unique_ptr<ModbusGateway> &out, EventLoop &loop, const Logger &logger,
                              ModbusConfig config, SerialBackendConfig device, std::string label, std::string &why) {
  loop.assert_in_loop_thread("ModbusGateway::create_rtu");
  if (int rc = config.validate(why)) return rc;
  if (int rc = device.validate(why)) return rc;
  auto impl = std::make_unique<Impl>(loop, logger, std::move(config), std::move(label));
  if (int rc = make_rtu_bus(impl->bus_, *impl, std::move(device), why)) return rc;
  out.reset(new ModbusGateway(std::move(impl)));
  return 0;
}

int ModbusGateway::create_tcp(std::unique_ptr<ModbusGateway> &out, EventLoop &loop, const Logger &logger,
                              ModbusConfig config, SocketAddress backend, std::string label, std::string &why) {
  loop.assert_in_loop_thread("ModbusGateway::create_tcp");
  if (int rc = config.validate(why)) return rc;
  if (config.client_frames == ModbusClientFrames::rtu)
    return fail(why, "RTU client frames (protocol modbus-rtu) need a serial bus: use protocol \"modbus\"");
  auto impl = std::make_unique<Impl>(loop, logger, std::move(config), std::move(label));
  if (int rc = make_tcp_bus(impl->bus_, *impl, backend, why)) return rc;
  out.reset(new ModbusGateway(std::move(impl)));
  return 0;
}

void ModbusGateway::on_open(Connection &conn) { impl_->client_opened(conn); }
void ModbusGateway::on_message(Connection &conn, const uint8_t *data, size_t length) {
  impl_->client_message(conn, data, length);
}
// Answers queue in the client's socket like any output: nothing to resume.
void ModbusGateway::on_drain(Connection &) {}
bool ModbusGateway::on_peer_eof(Connection &conn) { return impl_->client_leaving(conn); }
bool ModbusGateway::on_stop(Connection &conn) { return impl_->client_leaving(conn); }
void ModbusGateway::on_close(Connection &conn, CloseReason) { impl_->client_closed(conn); }

const ModbusConfig &ModbusGateway::config() const noexcept { return impl_->config_; }
const std::string &ModbusGateway::label() const noexcept { return impl_->label_; }
const ModbusCounters &ModbusGateway::counters() const noexcept { return impl_->counters_; }

}  // namespace gw
