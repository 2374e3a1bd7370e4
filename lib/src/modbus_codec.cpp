// SPDX-License-Identifier: MIT
// Modbus frame codecs (see modbus_codec.hpp). The lengths follow the Modbus
// Application Protocol Specification V1.1b3 and the serial line guide V1.02.
#include "gw/modbus_codec.hpp"

#include <array>

namespace gw {
namespace modbus {
namespace {

// The reflected CRC-16 table, built once at compile time so that a frame
// costs one lookup per byte.
constexpr std::array<uint16_t, 256> make_crc_table() {
  std::array<uint16_t, 256> table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    uint16_t crc = static_cast<uint16_t>(byte);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? static_cast<uint16_t>((crc >> 1) ^ 0xA001) : crc >> 1;
    table[byte] = crc;
  }
  return table;
}
constexpr std::array<uint16_t, 256> crc_table = make_crc_table();

uint16_t be16(const uint8_t *at) noexcept { return static_cast<uint16_t>(at[0] << 8 | at[1]); }

// The length of a request of `function`, CRC included, as far as the bytes
// so far tell: 0 = not yet (a byte count still to come), SIZE_MAX = not
// implied by the function at all (the CRC rule decides).
constexpr size_t by_crc = static_cast<size_t>(-1);
size_t implied_request_length(const uint8_t *data, size_t length) noexcept {
  const uint8_t function = data[1];
  switch (function) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 8: return 8;
    case 7:
    case 11:
    case 12:
    case 17: return 4;
    case 22: return 10;
    case 24: return 6;
    case 15:
    case 16: return length > 6 ? 9 + size_t{data[6]} : 0;
    case 23: return length > 10 ? 13 + size_t{data[10]} : 0;
    case 20:
    case 21: return length > 2 ? 5 + size_t{data[2]} : 0;
    case 43: return length > 2 ? (data[2] == 14 ? 7 : by_crc) : 0;  // 14: read device identification
    default: return by_crc;
  }
}

RtuScan rtu_error(const char *reason) noexcept {
  RtuScan scan;
  scan.status = ScanStatus::error;
  scan.reason = reason;
  return scan;
}

RtuScan rtu_frame_of(size_t length) noexcept {
  RtuScan scan;
  scan.status = ScanStatus::frame;
  scan.length = length;
  return scan;
}

// Functions whose length their bytes do not tell: the frame is what has
// come so far, once it ends with a valid CRC.
RtuScan scan_by_crc(const uint8_t *data, size_t length) noexcept {
  if (length > max_rtu_adu_size) return rtu_error("no valid CRC within 256 bytes (RTU frame too long)");
  if (length >= min_rtu_frame_size && crc_ok(data, length)) return rtu_frame_of(length);
  if (length == max_rtu_adu_size) return rtu_error("no valid CRC within 256 bytes (RTU frame too long)");
  return RtuScan{};
}

}  // namespace

uint16_t crc16(const uint8_t *data, size_t length) noexcept {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < length; ++i) crc = static_cast<uint16_t>((crc >> 8) ^ crc_table[(crc ^ data[i]) & 0xFF]);
  return crc;
}

bool crc_ok(const uint8_t *frame, size_t length) noexcept {
  if (length < 3) return false;
  const uint16_t crc = crc16(frame, length - 2);
  return frame[length - 2] == (crc & 0xFF) && frame[length - 1] == (crc >> 8);
}

MbapScan scan_mbap(const uint8_t *data, size_t length) noexcept {
  MbapScan scan;
  if (length < mbap_header_size) return scan;
  scan.transaction = be16(data);
  scan.unit = data[6];
  const uint16_t follows = be16(data + 4);  // unit id + PDU
  if (be16(data + 2) != 0) {
    scan.status = ScanStatus::error;
    scan.reason = "protocol id is not 0 (not Modbus TCP)";
  } else if (follows < 2) {
    scan.status = ScanStatus::error;
    scan.reason = "MBAP length below 2 (no function code)";
  } else if (follows > max_pdu_size + 1) {
    scan.status = ScanStatus::error;
    scan.reason = "MBAP length above 254 (ADU over 260 bytes)";
  } else if (length >= 6 + size_t{follows}) {
    scan.status = ScanStatus::frame;
    scan.length = 6 + size_t{follows};
  }
  return scan;
}

RtuScan scan_rtu_request(const uint8_t *data, size_t length) noexcept {
  if (length < 2) return RtuScan{};
  const size_t implied = implied_request_length(data, length);
  if (implied == by_crc) return scan_by_crc(data, length);
  if (implied == 0 || length < implied) return RtuScan{};
  if (implied > max_rtu_adu_size) return rtu_error("byte count makes the RTU frame longer than 256 bytes");
  if (!crc_ok(data, implied)) return rtu_error("bad CRC");
  return rtu_frame_of(implied);
}

RtuReplyLength rtu_reply_length(uint8_t request_function, const uint8_t *data, size_t length) noexcept {
  RtuReplyLength reply;
  if (length < 2) return reply;
  const uint8_t function = data[1];
  if (function == (request_function | exception_flag) && function != request_function) {
    reply.kind = RtuReplyLength::known;
    reply.length = 5;  // address, function | 0x80, code, CRC
    return reply;
  }
  if (function != request_function) {
    reply.kind = RtuReplyLength::wrong_function;
    return reply;
  }
  size_t implied = 0;
  switch (function) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 12:
    case 17:
    case 23:
      if (length < 3) return reply;
      implied = 5 + size_t{data[2]};
      break;
    case 5:
    case 6:
    case 8:
    case 11:
    case 15:
    case 16: implied = 8; break;
    case 7: implied = 5; break;
    case 22: implied = 10; break;
    case 24:
      if (length < 4) return reply;
      implied = 6 + size_t{be16(data + 2)};
      break;
    default: reply.kind = RtuReplyLength::silence; return reply;  // 20, 21, 43, user-defined
  }
  reply.kind = RtuReplyLength::known;
  reply.length = implied;
  return reply;
}

Bytes exception_pdu(uint8_t function, Exception code) {
  return Bytes{static_cast<uint8_t>(function | exception_flag), static_cast<uint8_t>(code)};
}

Bytes mbap_frame(uint16_t transaction, uint8_t unit, const uint8_t *pdu, size_t pdu_length) {
  Bytes frame;
  frame.reserve(mbap_header_size + pdu_length);
  const size_t follows = pdu_length + 1;
  frame = {static_cast<uint8_t>(transaction >> 8), static_cast<uint8_t>(transaction), 0,   0,
           static_cast<uint8_t>(follows >> 8),     static_cast<uint8_t>(follows),     unit};
  frame.insert(frame.end(), pdu, pdu + pdu_length);
  return frame;
}

Bytes rtu_frame(uint8_t address, const uint8_t *pdu, size_t pdu_length) {
  Bytes frame;
  frame.reserve(pdu_length + 3);
  frame.push_back(address);
  frame.insert(frame.end(), pdu, pdu + pdu_length);
  const uint16_t crc = crc16(frame.data(), frame.size());
  frame.push_back(static_cast<uint8_t>(crc & 0xFF));
  frame.push_back(static_cast<uint8_t>(crc >> 8));
  return frame;
}

}  // namespace modbus
}  // namespace gw
