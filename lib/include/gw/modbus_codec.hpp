// SPDX-License-Identifier: MIT
// Modbus frame codecs: CRC-16/MODBUS, the MBAP header of Modbus TCP, where an
// RTU request or reply ends, and the builders of answers. Pure functions over
// bytes, no I/O, no state: the gateway (modbus.hpp) keeps the buffers and
// calls these on what it has so far, so every scan is incremental (a partial
// frame says how it stands, and the caller scans again with more bytes).
//
// Function codes pass through unchanged, user-defined ones (65-72, 100-110)
// and 20/21/43 included: the codecs only need a frame's length, and where a
// function's length cannot be told from its bytes the RTU rules fall back to
// the CRC (requests) or to the line's silence (replies).
//
// Threading: every function is pure and thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gw {
namespace modbus {

using Bytes = std::vector<uint8_t>;

constexpr size_t mbap_header_size = 7;                                ///< transaction id, protocol id, length, unit id
constexpr size_t max_pdu_size = 253;                                  ///< function code + data (serial line limit)
constexpr size_t max_tcp_adu_size = mbap_header_size + max_pdu_size;  ///< 260: the unit id is in the header
constexpr size_t max_rtu_adu_size = 1 + max_pdu_size + 2;             ///< 256: address, PDU, CRC
constexpr size_t min_rtu_frame_size = 4;                              ///< address, function, CRC
constexpr uint8_t exception_flag = 0x80;
constexpr uint8_t broadcast_address = 0;
constexpr uint8_t max_bus_address = 247;

/// The exception codes the gateway itself answers with.
enum class Exception : uint8_t {
  illegal_function = 0x01,
  server_busy = 0x06,         ///< the route's queue is full (max_queue)
  path_unavailable = 0x0A,    ///< not used by the gateway (see modbus.hpp)
  target_no_response = 0x0B,  ///< no answer in time after the retries, or the bus is unavailable
};

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of `length` bytes.
/// On the wire it follows the frame low byte first.
uint16_t crc16(const uint8_t *data, size_t length) noexcept;
/// True when the last two of `length` (>= 3) bytes are the CRC of the others.
bool crc_ok(const uint8_t *frame, size_t length) noexcept;

/// How a scan of the front of some bytes stands.
enum class ScanStatus {
  need_more,  ///< no verdict yet: scan again with more bytes
  frame,      ///< a complete frame of `length` bytes
  error,      ///< malformed: `reason` says why (the input cannot be resynchronised)
};

/// One MBAP-framed Modbus TCP ADU at the front of the input.
struct MbapScan {
  ScanStatus status = ScanStatus::need_more;
  size_t length = 0;  ///< the whole ADU (header + PDU) when status == frame
  uint16_t transaction = 0;
  uint8_t unit = 0;
  const char *reason = "";  ///< static text when status == error
};
/// Checks the header as soon as its 7 bytes are there: protocol id 0, length
/// (unit + PDU) 2..254, so that an ADU is at most 260 bytes.
MbapScan scan_mbap(const uint8_t *data, size_t length) noexcept;

/// One RTU request (address, PDU, CRC) at the front of the input.
struct RtuScan {
  ScanStatus status = ScanStatus::need_more;
  size_t length = 0;        ///< the frame, CRC included, when status == frame
  const char *reason = "";  ///< static text when status == error
};
/// The frame's length is implied by its function code where the standard
/// fixes it (1-8, 11, 12, 15-17, 22-24, 43/14); for any other function the
/// frame ends where the input ends with a valid CRC. A frame whose CRC is
/// wrong, or that passes 256 bytes, is an error.
RtuScan scan_rtu_request(const uint8_t *data, size_t length) noexcept;

/// Where an RTU reply to a request of function `request_function` ends.
struct RtuReplyLength {
  enum Kind {
    need_more,       ///< not enough bytes yet to tell
    known,           ///< the reply is `length` bytes, CRC included
    silence,         ///< not implied by its bytes: it ends with the line's silence
    wrong_function,  ///< its function is neither the request's nor its exception
  } kind = need_more;
  size_t length = 0;
};
RtuReplyLength rtu_reply_length(uint8_t request_function, const uint8_t *data, size_t length) noexcept;

/// An exception PDU: function | 0x80, code.
Bytes exception_pdu(uint8_t function, Exception code);
/// An MBAP ADU: header (transaction, protocol 0, length, unit) + PDU.
Bytes mbap_frame(uint16_t transaction, uint8_t unit, const uint8_t *pdu, size_t pdu_length);
/// An RTU frame: address + PDU + CRC (low byte first).
Bytes rtu_frame(uint8_t address, const uint8_t *pdu, size_t pdu_length);

/// Reads of coils, inputs and registers: the functions the cache keeps.
inline bool is_cached_read(uint8_t function) noexcept { return function >= 1 && function <= 4; }
/// Writes that change a unit's data: they drop its cache entries.
inline bool is_write(uint8_t function) noexcept {
  return function == 5 || function == 6 || function == 15 || function == 16 || function == 22 || function == 23;
}

}  // namespace modbus
}  // namespace gw
