// SPDX-License-Identifier: MIT
// Fuzz target: the Modbus codecs (gw/modbus_codec.hpp) fed arbitrary bytes.
//
// Input layout: byte 0 picks the decoder (MBAP, RTU request, RTU reply),
// byte 1 is the request's function for the reply rules; the rest is the
// stream. Checked: a verdict never reaches past its input; a frame is within
// the ADU limits (260 bytes for MBAP, 4..256 for RTU, with a valid CRC for
// RTU requests) and is found again when exactly its bytes are scanned; an
// MBAP verdict is taken from the 7-byte header alone; every prefix of a
// frame's header-complete bytes agrees; an RTU reply length once known does
// not change with more bytes. The builders' output decodes again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "gw/modbus_codec.hpp"

namespace {

namespace mb = gw::modbus;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_modbus: %s\n", what);
    std::abort();
  }
}

void check_mbap(const uint8_t *data, size_t size) {
  const mb::MbapScan whole = mb::scan_mbap(data, size);
  if (size < mb::mbap_header_size) require(whole.status == mb::ScanStatus::need_more, "MBAP verdict without a header");
  if (size >= mb::mbap_header_size) {
    const mb::MbapScan header = mb::scan_mbap(data, mb::mbap_header_size);
    require((header.status == mb::ScanStatus::error) == (whole.status == mb::ScanStatus::error),
            "MBAP error not decided by the header");
  }
  if (whole.status != mb::ScanStatus::frame) return;
  require(whole.length <= size && whole.length <= mb::max_tcp_adu_size && whole.length >= 8, "MBAP frame length");
  const mb::MbapScan exact = mb::scan_mbap(data, whole.length);
  require(exact.status == mb::ScanStatus::frame && exact.length == whole.length, "MBAP frame not found again");
  for (size_t have = mb::mbap_header_size; have < whole.length; ++have)
    require(mb::scan_mbap(data, have).status == mb::ScanStatus::need_more, "MBAP verdict before the frame ends");
  const mb::Bytes again = mb::mbap_frame(whole.transaction, whole.unit, data + 7, whole.length - 7);
  require(mb::scan_mbap(again.data(), again.size()).length == whole.length, "built MBAP frame does not decode");
}

void check_rtu_request(const uint8_t *data, size_t size) {
  const mb::RtuScan whole = mb::scan_rtu_request(data, size);
  if (whole.status != mb::ScanStatus::frame) return;
  require(whole.length <= size && whole.length <= mb::max_rtu_adu_size && whole.length >= mb::min_rtu_frame_size,
          "RTU frame length");
  require(mb::crc_ok(data, whole.length), "RTU frame without a valid CRC");
  const mb::RtuScan exact = mb::scan_rtu_request(data, whole.length);
  require(exact.status == mb::ScanStatus::frame && exact.length == whole.length, "RTU frame not found again");
  const mb::Bytes again = mb::rtu_frame(data[0], data + 1, whole.length - 3);
  require(again.size() == whole.length && mb::crc_ok(again.data(), again.size()), "built RTU frame differs");
}

void check_rtu_reply(uint8_t function, const uint8_t *data, size_t size) {
  mb::RtuReplyLength first;
  for (size_t have = 0; have <= size; ++have) {
    const mb::RtuReplyLength end = mb::rtu_reply_length(function, data, have);
    if (first.kind == mb::RtuReplyLength::need_more) {
      first = end;
      if (end.kind == mb::RtuReplyLength::known) require(end.length >= 5, "RTU reply shorter than 5 bytes");
      continue;
    }
    require(end.kind == first.kind && end.length == first.length, "RTU reply length changed with more bytes");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0] % 3;
  const uint8_t function = data[1];
  data += 2;
  size -= 2;
  if (mode == 0) check_mbap(data, size);
  if (mode == 1) check_rtu_request(data, size);
  if (mode == 2) check_rtu_reply(function, data, size);
  return 0;
}
