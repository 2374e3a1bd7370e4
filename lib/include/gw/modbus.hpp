// SPDX-License-Identifier: MIT
// Modbus gateway: Modbus TCP (or RTU framed over TCP) clients reach Modbus
// devices on a serial bus (RTU) or behind one TCP connection, through one
// request queue. The frame codecs it is built on are in modbus_codec.hpp.
//
// Why a queue: a serial bus carries one exchange at a time, and a Modbus TCP
// device that accepts one connection only does the same. Every request from
// every client of the route waits its turn in arrival order; the queue is
// the arbitration, so a Modbus route takes many clients whatever
// serial_clients says. The queue is bounded (max_queue): past it a client is
// answered with exception 0x06 (server busy), never made to wait without end.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gw/address.hpp"
#include "gw/listener.hpp"
#include "gw/log.hpp"
#include "gw/serial.hpp"
#include "gw/serial_backend.hpp"

namespace gw {

/// What the route's clients send.
enum class ModbusClientFrames {
  tcp,  ///< protocol = "modbus": Modbus TCP (MBAP header + PDU)
  rtu,  ///< protocol = "modbus-rtu": RTU frames (address + PDU + CRC) over TCP
};

/// One unit-id mapping: requests for client-side unit `from` go to bus address `to`.
struct ModbusUnitMapping {
  uint8_t from = 0;
  uint8_t to = 0;
};

/// A Modbus route's settings, as the config's route keys state them.
struct ModbusConfig {
  ModbusClientFrames client_frames = ModbusClientFrames::tcp;
  /// A try that has no complete answer after this long has failed
  /// (response_timeout).
  uint32_t response_timeout_ms = 1000;
  /// Further tries after a failed one (timeout or bad CRC); past them the
  /// client gets exception 0x0B.
  uint32_t retries = 0;
  /// Bus silence after a broadcast (unit 0), which gets no reply.
  uint32_t broadcast_delay_ms = 100;
  /// Requests waiting or in flight, all clients together; a request past it
  /// is answered with exception 0x06.
  uint32_t max_queue = 64;
  /// Client-side unit id -> bus address; units not listed pass unchanged.
  std::vector<ModbusUnitMapping> unit_map;
  /// Read replies (functions 1-4) younger than this answer a repeated read of
  /// the same unit and range; 0 = no cache.
  uint32_t cache_ms = 0;

  /// 0, or -EINVAL with `why` naming the first bad value and its fix (a unit
  /// mapped twice, unit 0 mapped, a bus address of 0 or above 247, ...).
  int validate(std::string &why) const;
};

/// Counters of one Modbus route. Written by the loop thread, read by any.
struct ModbusCounters {
  std::atomic<uint64_t> requests{0};    ///< well-formed requests taken from clients
  std::atomic<uint64_t> replies{0};     ///< answers sent to clients (including exceptions)
  std::atomic<uint64_t> timeouts{0};    ///< tries with no complete answer in time
  std::atomic<uint64_t> crc_errors{0};  ///< answers with a bad CRC (RTU)
  std::atomic<uint64_t> exceptions{0};  ///< exception answers, the device's and ours
  std::atomic<uint64_t> busy{0};        ///< requests refused with 0x06: the queue was full
  std::atomic<uint64_t> malformed{0};   ///< clients closed for malformed input
  std::atomic<uint64_t> broadcasts{0};  ///< requests to unit 0
  std::atomic<uint64_t> cache_hits{0};  ///< reads answered from the cache
};

/// The handler of a Modbus route: install it with Server::listen()/adopt()
/// like a Forwarder or a SerialBackend. Clients' requests are decoded (a
/// malformed one closes that client alone, with a logged reason), queued,
/// and sent to the bus one at a time; each answer goes back to the client
/// that asked, as that client framed its request (MBAP with its transaction
/// id, or RTU).
///
/// Lifetime and threading: created on the loop thread of the server whose
/// listeners it serves; must outlive them and not outlive the loop. Loop
/// thread only, except counters().
class ModbusGateway final : public ConnectionHandler {
 public:
  /// An RTU bus on a serial device. `device` says how to open it (path, line
  /// settings, lock directory, missing and loss policies); its client
  /// policies and packing do not apply. The device is opened at once and
  /// kept open; a missing one is watched for, and requests meanwhile get
  /// exception 0x0B.
  static int create_rtu(std::unique_ptr<ModbusGateway> &out, EventLoop &loop, const Logger &logger, ModbusConfig config,
                        SerialBackendConfig device, std::string label, std::string &why);
  /// A Modbus TCP device behind one TCP connection shared by all clients
  /// (transaction ids remapped). Connected when the first request comes, and
  /// again after it is lost. Unit 0 is no broadcast here: it is passed on
  /// and answered like any unit. Only ModbusClientFrames::tcp clients.
  /// A connection that fails or is refused answers the request with 0x0B.
  static int create_tcp(std::unique_ptr<ModbusGateway> &out, EventLoop &loop, const Logger &logger, ModbusConfig config,
                        SocketAddress backend, std::string label, std::string &why);
  ~ModbusGateway();

  void on_open(Connection &conn) override;
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
  void on_drain(Connection &conn) override;
  bool on_peer_eof(Connection &conn) override;
  bool on_stop(Connection &conn) override;
  void on_close(Connection &conn, CloseReason reason) override;

  const ModbusConfig &config() const noexcept;
  const std::string &label() const noexcept;
  const ModbusCounters &counters() const noexcept;

  class Impl;

 private:
  explicit ModbusGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw
