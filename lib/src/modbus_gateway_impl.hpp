// SPDX-License-Identifier: MIT
// ModbusGateway::Impl, the state behind the Modbus gateway, and ModbusBus,
// the seam to the two kinds of bus. Internal: shared by modbus_gateway.cpp
// (clients, the queue, the cache), modbus_gateway_rtu.cpp (a serial RTU
// bus) and modbus_gateway_tcp.cpp (a Modbus TCP device).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gw/connection.hpp"
#include "gw/event_loop.hpp"
#include "gw/modbus.hpp"
#include "gw/modbus_codec.hpp"

namespace gw {

namespace modbus_limits {
// Read replies kept at most; past it the oldest goes. 256 distinct ranges is
// more than a SCADA poll list usually has, and bounds the memory (~70 KiB).
constexpr size_t max_cache_entries = 256;
// How often a serial port held by another program is tried again (its lock
// going away makes no inotify event), as the serial backend does.
constexpr uint64_t busy_retry_ms = 1000;
// Above this rate the serial line guide fixes the inter-frame gap at 1750 us
// instead of 3.5 characters.
constexpr uint32_t fixed_gap_above_baud = 19200;
constexpr uint32_t fixed_gap_us = 1750;
}  // namespace modbus_limits

/// How one try on the bus ended without an answer.
enum class TryFailure {
  timeout,      ///< no complete answer in time, or one from the wrong unit or function
  bad_crc,      ///< an RTU answer whose CRC is wrong
  unavailable,  ///< the device is missing or lost, or the TCP device cannot be reached
};

/// One bus: carries one try at a time and reports how it ended. Owned by the
/// gateway's Impl; loop thread only. A bus never calls back from inside
/// send(): the outcome comes from a later event or timer, exactly once per
/// try, through Impl::try_answered(), try_failed() or broadcast_done().
class ModbusBus {
 public:
  explicit ModbusBus(ModbusGateway::Impl &gateway) : gateway_(gateway) {}
  virtual ~ModbusBus() = default;
  ModbusBus(const ModbusBus &) = delete;
  ModbusBus &operator=(const ModbusBus &) = delete;

  /// False while requests cannot be tried at all (the serial device is
  /// missing): the gateway answers them with exception 0x0B at once.
  virtual bool available() const noexcept = 0;
  /// True when unit 0 is a broadcast that gets no reply (a serial line).
  virtual bool has_broadcast() const noexcept = 0;
  /// Starts one try of `pdu` to bus `address`.
  virtual void send(uint8_t address, const modbus::Bytes &pdu) = 0;

 protected:
  ModbusGateway::Impl &gateway_;
};

/// The state behind ModbusGateway. Owns the clients' decoders, the queue,
/// the cache and the bus; holds plain pointers to its clients' Connections,
/// dropped in on_close. Loop thread only.
class ModbusGateway::Impl {
 public:
  /// One client: its undecoded input and whether it is leaving.
  struct Client {
    Connection *conn;  // null once it has closed
    modbus::Bytes input;
    bool close_when_done = false;  // EOF or stop: close once its answer in flight is out
    size_t pending = 0;            // its requests queued or in flight
  };
  /// One request from a client, as it waits in the queue.
  struct Request {
    Client *client;            // null once the client has gone (the answer is discarded)
    uint16_t transaction = 0;  // the client's (MBAP); 0 for RTU clients
    uint8_t client_unit = 0;
    uint8_t address = 0;  // on the bus, after unit_map
    modbus::Bytes pdu;
  };

  Impl(EventLoop &loop, const Logger &logger, ModbusConfig config, std::string label);
  ~Impl();

  void client_opened(Connection &conn);
  void client_message(Connection &conn, const uint8_t *data, size_t length);
  bool client_leaving(Connection &conn);
  void client_closed(Connection &conn);

  // The bus's reports on the try in flight.
  void try_answered(const uint8_t *pdu, size_t length);
  void try_failed(TryFailure failure);
  void broadcast_done();

  EventLoop &loop_;
  Logger logger_;
  ModbusConfig config_;
  std::string label_;
  ModbusCounters counters_;
  std::unique_ptr<ModbusBus> bus_;

 private:
  struct CacheEntry {
    uint8_t address;
    uint8_t function;
    uint16_t start;
    uint16_t quantity;
    uint64_t stored_ms;
    modbus::Bytes reply;
  };

  Client *find(Connection &conn);
  void decode(Client &client);
  bool take_frame(Client &client, size_t &offset);
  void malformed(Client &client, const char *reason);
  void enqueue(Client &client, uint16_t transaction, uint8_t unit, const uint8_t *pdu, size_t length);
  uint8_t bus_address(uint8_t unit) const noexcept;
  void pump();
  void start_try();
  void finish(const modbus::Bytes *reply);
  void answer(Request &request, const uint8_t *pdu, size_t length);
  void answer_exception(Request &request, modbus::Exception code);
  void after_answer(Client &client);

  const CacheEntry *cached(const Request &request) const;
  void store(const Request &request, const uint8_t *pdu, size_t length);
  void forget_unit(uint8_t address);

  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<std::unique_ptr<Client>> closed_;  // gone (conn null), freed at the next client event
  std::deque<Request> queue_;
  std::optional<Request> in_flight_;
  uint32_t tries_ = 0;
  bool pumping_ = false;
  bool bus_silent_ = false;  // the last request got no answer: logged once until one comes
  std::vector<CacheEntry> cache_;
};

/// The buses, made by create_rtu/create_tcp. 0, or a negated errno and `why`.
int make_rtu_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SerialBackendConfig device,
                 std::string &why);
int make_tcp_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SocketAddress backend,
                 std::string &why);

}  // namespace gw
