// SPDX-License-Identifier: MIT
#include "gw/framing.hpp"

#include <cstring>

namespace gw {

FrameScan scan_frame(Framing framing, size_t max_frame, const uint8_t *data, size_t length) noexcept {
  FrameScan scan;
  switch (framing) {
    case Framing::raw:
      if (length) {
        scan.status = FrameScan::frame;
        scan.payload_length = scan.consumed = length;
      }
      return scan;
    case Framing::line: {
      const void *newline = std::memchr(data, '\n', length);
      if (!newline) {
        if (length > max_frame) scan.status = FrameScan::oversize;
        return scan;
      }
      size_t line = static_cast<const uint8_t *>(newline) - data;
      if (line > max_frame) {
        scan.status = FrameScan::oversize;
        return scan;
      }
      scan.status = FrameScan::frame;
      scan.payload_length = line;
      scan.consumed = line + 1;
      return scan;
    }
    case Framing::u16be:
    case Framing::u32be: {
      size_t header = framing == Framing::u16be ? 2 : 4;
      if (length < header) return scan;
      size_t body = 0;
      for (size_t i = 0; i < header; ++i) body = (body << 8) | data[i];
      if (body > max_frame) {
        scan.status = FrameScan::oversize;
        return scan;
      }
      if (length - header < body) return scan;
      scan.status = FrameScan::frame;
      scan.payload_offset = header;
      scan.payload_length = body;
      scan.consumed = header + body;
      return scan;
    }
  }
  return scan;
}

bool encode_frame(Framing framing, const void *payload, size_t length, EncodedFrame &out) noexcept {
  static char newline = '\n';
  int header_size = encode_header(framing, length, out.header);
  if (header_size < 0) return false;
  out.count = 0;
  if (header_size > 0) out.parts[out.count++] = {out.header, static_cast<size_t>(header_size)};
  out.parts[out.count++] = {const_cast<void *>(payload), length};
  if (trailer_size(framing)) out.parts[out.count++] = {&newline, 1};
  return true;
}

int encode_header(Framing framing, size_t length, uint8_t header[4]) noexcept {
  switch (framing) {
    case Framing::raw:
    case Framing::line: return 0;
    case Framing::u16be:
      if (length > 0xffff) return -1;
      header[0] = static_cast<uint8_t>(length >> 8);
      header[1] = static_cast<uint8_t>(length);
      return 2;
    case Framing::u32be:
      if (length > 0xffffffffu) return -1;
      header[0] = static_cast<uint8_t>(length >> 24);
      header[1] = static_cast<uint8_t>(length >> 16);
      header[2] = static_cast<uint8_t>(length >> 8);
      header[3] = static_cast<uint8_t>(length);
      return 4;
  }
  return -1;
}

}  // namespace gw
