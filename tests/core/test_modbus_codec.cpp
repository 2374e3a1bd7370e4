// SPDX-License-Identifier: MIT
// The Modbus codecs (gw/modbus_codec.hpp): CRC-16/MODBUS against known
// vectors, the MBAP header decoder fed a byte at a time, the RTU request
// splitter for every function whose length is fixed or counted and the CRC
// rule for the others, the RTU reply end rules, and the builders.
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
}

#include "gw/modbus_codec.hpp"

namespace {

using gw::modbus::Bytes;
using gw::modbus::ScanStatus;
namespace mb = gw::modbus;

Bytes with_crc(Bytes frame) {
  const uint16_t crc = mb::crc16(frame.data(), frame.size());
  frame.push_back(static_cast<uint8_t>(crc & 0xFF));
  frame.push_back(static_cast<uint8_t>(crc >> 8));
  return frame;
}

void crc_matches_known_vectors(void **) {
  const uint8_t read_holding[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A};
  const uint16_t crc = mb::crc16(read_holding, sizeof read_holding);
  assert_int_equal(crc & 0xFF, 0xC5);  // low byte first on the wire
  assert_int_equal(crc >> 8, 0xCD);
  // The catalogue check value of CRC-16/MODBUS.
  const char *check = "123456789";
  assert_int_equal(mb::crc16(reinterpret_cast<const uint8_t *>(check), 9), 0x4B37);
  const uint8_t frame[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
  assert_true(mb::crc_ok(frame, sizeof frame));
  uint8_t broken[sizeof frame];
  std::memcpy(broken, frame, sizeof frame);
  broken[3] ^= 0x01;
  assert_false(mb::crc_ok(broken, sizeof broken));
  assert_false(mb::crc_ok(frame, 2));
}

void mbap_decodes_split_at_every_byte(void **) {
  const uint8_t pdu[] = {0x03, 0x00, 0x10, 0x00, 0x02};
  const Bytes adu = mb::mbap_frame(0x1234, 0x11, pdu, sizeof pdu);
  assert_int_equal(adu.size(), 12);
  for (size_t have = 0; have < adu.size(); ++have) {
    const mb::MbapScan partial = mb::scan_mbap(adu.data(), have);
    assert_int_equal(static_cast<int>(partial.status), static_cast<int>(ScanStatus::need_more));
  }
  Bytes two = adu;
  two.insert(two.end(), adu.begin(), adu.end());
  const mb::MbapScan scan = mb::scan_mbap(two.data(), two.size());
  assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::frame));
  assert_int_equal(scan.length, 12);
  assert_int_equal(scan.transaction, 0x1234);
  assert_int_equal(scan.unit, 0x11);
}

void mbap_refuses_bad_headers(void **) {
  struct Case {
    Bytes header;
    const char *reason_part;
  } cases[] = {
      {{0, 1, 0, 1, 0, 6, 1}, "protocol id"},     {{0, 1, 0, 0, 0, 0, 1}, "below 2"},
      {{0, 1, 0, 0, 0, 1, 1}, "below 2"},         {{0, 1, 0, 0, 0, 255, 1}, "above 254"},
      {{0, 1, 0, 0, 0xFF, 0xFF, 1}, "above 254"},
  };
  for (const Case &c : cases) {
    const mb::MbapScan scan = mb::scan_mbap(c.header.data(), c.header.size());
    assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::error));
    assert_non_null(std::strstr(scan.reason, c.reason_part));
  }
  // The largest: 254 = unit + 253 bytes of PDU, a 260-byte ADU.
  Bytes largest = {0, 1, 0, 0, 0, 254, 1};
  largest.resize(260, 0x03);
  const mb::MbapScan scan = mb::scan_mbap(largest.data(), largest.size());
  assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::frame));
  assert_int_equal(scan.length, 260);
}

// Every request with a length implied by its function: complete only with
// its last byte, whatever follows it.
void rtu_requests_split_by_function(void **) {
  const std::vector<Bytes> requests = {
      with_crc({1, 1, 0, 0, 0, 8}),
      with_crc({1, 2, 0, 0, 0, 8}),
      with_crc({1, 3, 0, 0, 0, 10}),
      with_crc({1, 4, 0, 0, 0, 1}),
      with_crc({1, 5, 0, 1, 0xFF, 0}),
      with_crc({1, 6, 0, 1, 0x12, 0x34}),
      with_crc({1, 7}),
      with_crc({1, 8, 0, 0, 0xA5, 0x37}),
      with_crc({1, 11}),
      with_crc({1, 12}),
      with_crc({1, 15, 0, 0, 0, 10, 2, 0xFF, 0x03}),
      with_crc({1, 16, 0, 0, 0, 2, 4, 0, 1, 0, 2}),
      with_crc({1, 17}),
      with_crc({1, 20, 7, 6, 0, 4, 0, 1, 0, 2}),
      with_crc({1, 21, 9, 6, 0, 4, 0, 7, 0, 1, 0x12, 0x34}),
      with_crc({1, 22, 0, 4, 0, 0xF2, 0, 0x25}),
      with_crc({1, 23, 0, 3, 0, 6, 0, 0x0E, 0, 3, 6, 0, 0xFF, 0, 0xFF, 0, 0xFF}),
      with_crc({1, 24, 0x04, 0xDE}),
      with_crc({1, 43, 14, 1, 0}),
  };
  for (const Bytes &request : requests) {
    for (size_t have = 0; have < request.size(); ++have) {
      const mb::RtuScan partial = mb::scan_rtu_request(request.data(), have);
      if (partial.status != ScanStatus::need_more) fail_msg("function %u: verdict at %zu bytes", request[1], have);
    }
    Bytes followed = request;
    followed.insert(followed.end(), request.begin(), request.end());
    const mb::RtuScan scan = mb::scan_rtu_request(followed.data(), followed.size());
    if (scan.status != ScanStatus::frame || scan.length != request.size())
      fail_msg("function %u: not a frame of %zu bytes", request[1], request.size());
  }
}

void rtu_request_with_bad_crc_is_an_error(void **) {
  Bytes request = with_crc({1, 3, 0, 0, 0, 10});
  request.back() ^= 0xFF;
  const mb::RtuScan scan = mb::scan_rtu_request(request.data(), request.size());
  assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::error));
  assert_non_null(std::strstr(scan.reason, "CRC"));
}

// User-defined functions (and 43 with another MEI type): the frame ends
// where the bytes so far end with a valid CRC.
void rtu_user_functions_end_at_a_valid_crc(void **) {
  for (uint8_t function : {65, 72, 100, 110}) {
    const Bytes request = with_crc({9, function, 0xDE, 0xAD, 0xBE, 0xEF, 0x42});
    for (size_t have = 0; have < request.size(); ++have) {
      const mb::RtuScan partial = mb::scan_rtu_request(request.data(), have);
      assert_int_equal(static_cast<int>(partial.status), static_cast<int>(ScanStatus::need_more));
    }
    const mb::RtuScan scan = mb::scan_rtu_request(request.data(), request.size());
    assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::frame));
    assert_int_equal(scan.length, request.size());
  }
  const Bytes mei = with_crc({1, 43, 13, 1, 2, 3});
  assert_int_equal(mb::scan_rtu_request(mei.data(), mei.size()).length, mei.size());
  // No valid CRC within 256 bytes: an error, not an endless wait.
  Bytes garbage(256, 0x00);
  garbage[1] = 100;
  garbage[255] = 0x55;
  if (mb::crc_ok(garbage.data(), garbage.size())) garbage[254] ^= 1;
  const mb::RtuScan scan = mb::scan_rtu_request(garbage.data(), garbage.size());
  assert_int_equal(static_cast<int>(scan.status), static_cast<int>(ScanStatus::error));
}

void rtu_reply_length_rules(void **) {
  struct Case {
    uint8_t request_function;
    Bytes head;
    mb::RtuReplyLength::Kind kind;
    size_t length;
  } cases[] = {
      {3, {1}, mb::RtuReplyLength::need_more, 0},         {3, {1, 3}, mb::RtuReplyLength::need_more, 0},
      {3, {1, 3, 4}, mb::RtuReplyLength::known, 9},       {1, {1, 1, 1}, mb::RtuReplyLength::known, 6},
      {2, {1, 2, 2}, mb::RtuReplyLength::known, 7},       {4, {1, 4, 2}, mb::RtuReplyLength::known, 7},
      {3, {1, 0x83}, mb::RtuReplyLength::known, 5},       {100, {1, 100 | 0x80}, mb::RtuReplyLength::known, 5},
      {5, {1, 5}, mb::RtuReplyLength::known, 8},          {6, {1, 6}, mb::RtuReplyLength::known, 8},
      {15, {1, 15}, mb::RtuReplyLength::known, 8},        {16, {1, 16}, mb::RtuReplyLength::known, 8},
      {22, {1, 22}, mb::RtuReplyLength::known, 10},       {23, {1, 23, 6}, mb::RtuReplyLength::known, 11},
      {20, {1, 20, 12}, mb::RtuReplyLength::silence, 0},  {21, {1, 21}, mb::RtuReplyLength::silence, 0},
      {43, {1, 43}, mb::RtuReplyLength::silence, 0},      {65, {1, 65}, mb::RtuReplyLength::silence, 0},
      {3, {1, 4}, mb::RtuReplyLength::wrong_function, 0}, {3, {1, 0x84}, mb::RtuReplyLength::wrong_function, 0},
  };
  for (const Case &c : cases) {
    const mb::RtuReplyLength end = mb::rtu_reply_length(c.request_function, c.head.data(), c.head.size());
    if (end.kind != c.kind || end.length != c.length)
      fail_msg("function %u, %zu bytes: kind %d length %zu", c.request_function, c.head.size(), end.kind, end.length);
  }
}

void builders_frame_answers(void **) {
  const Bytes exception = mb::exception_pdu(3, mb::Exception::target_no_response);
  assert_int_equal(exception.size(), 2);
  assert_int_equal(exception[0], 0x83);
  assert_int_equal(exception[1], 0x0B);
  const Bytes adu = mb::mbap_frame(0xBEEF, 7, exception.data(), exception.size());
  const Bytes expected_adu = {0xBE, 0xEF, 0, 0, 0, 3, 7, 0x83, 0x0B};
  assert_true(adu == expected_adu);
  const uint8_t pdu[] = {0x03, 0x00, 0x00, 0x00, 0x0A};
  const Bytes rtu = mb::rtu_frame(1, pdu, sizeof pdu);
  const Bytes expected_rtu = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
  assert_true(rtu == expected_rtu);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(crc_matches_known_vectors),
      cmocka_unit_test(mbap_decodes_split_at_every_byte),
      cmocka_unit_test(mbap_refuses_bad_headers),
      cmocka_unit_test(rtu_requests_split_by_function),
      cmocka_unit_test(rtu_request_with_bad_crc_is_an_error),
      cmocka_unit_test(rtu_user_functions_end_at_a_valid_crc),
      cmocka_unit_test(rtu_reply_length_rules),
      cmocka_unit_test(builders_frame_answers),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
