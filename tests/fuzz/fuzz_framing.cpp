// SPDX-License-Identifier: MIT
// Fuzz target: the frame decoders (gw::scan_frame) in every mode, fed in
// arbitrary chunks, against the same bytes scanned in one piece.
//
// Input layout: byte 0 picks the framing (raw, line, u16be, u32be), bytes 1-2
// the max_frame (1..65536), bytes 3-4 seed the chunk sizes; the rest is the
// stream. Checked: every scan stays inside its input, a frame is never longer
// than max_frame, chunking changes neither the messages nor where an oversize
// frame is detected, a length-prefixed frame is refused as soon as its header
// is complete, and every message re-encodes (encode_frame) to the bytes it
// was cut from.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gw/buffer.hpp"
#include "gw/framing.hpp"

namespace {

struct Outcome {
  std::vector<std::string> messages;
  bool oversize = false;
  size_t oversize_at = 0;  // stream offset where the oversize frame starts
};

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_framing: %s\n", what);
    std::abort();
  }
}

// Re-encodes one message and compares it with the bytes it was cut from.
void check_round_trip(gw::Framing framing, const uint8_t *frame, const gw::FrameScan &scan) {
  gw::EncodedFrame encoded;
  require(gw::encode_frame(framing, frame + scan.payload_offset, scan.payload_length, encoded),
          "a decoded frame does not encode");
  std::string bytes;
  for (int i = 0; i < encoded.count; ++i)
    bytes.append(static_cast<const char *>(encoded.parts[i].iov_base), encoded.parts[i].iov_len);
  require(bytes.size() == scan.consumed, "re-encoded frame has another length");
  require(std::memcmp(bytes.data(), frame, scan.consumed) == 0, "re-encoded frame differs");
}

// Scans `data` as it would arrive in chunks whose sizes come from `seed`
// (0: in one piece), buffering the unparsed tail as Connection does.
Outcome decode(gw::Framing framing, size_t max_frame, const uint8_t *data, size_t length, uint32_t seed) {
  Outcome out;
  gw::Buffer pending;
  size_t stream_offset = 0;  // stream offset of pending.data()
  size_t fed = 0;
  while (fed < length && !out.oversize) {
    size_t chunk = length - fed;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      chunk = 1 + (seed >> 16) % (chunk < 300 ? chunk : 300);
    }
    pending.append(data + fed, chunk);
    fed += chunk;
    size_t offset = 0;
    for (;;) {
      const uint8_t *at = pending.data() + offset;
      size_t left = pending.size() - offset;
      gw::FrameScan scan = gw::scan_frame(framing, max_frame, at, left);
      if (scan.status == gw::FrameScan::need_more) break;
      if (scan.status == gw::FrameScan::oversize) {
        out.oversize = true;
        out.oversize_at = stream_offset + offset;
        break;
      }
      require(scan.consumed > 0 && scan.consumed <= left, "scan consumed outside its input");
      require(scan.payload_offset + scan.payload_length <= scan.consumed, "payload outside the frame");
      if (framing != gw::Framing::raw) require(scan.payload_length <= max_frame, "frame longer than max_frame");
      if (framing != gw::Framing::raw) check_round_trip(framing, at, scan);
      out.messages.emplace_back(reinterpret_cast<const char *>(at + scan.payload_offset), scan.payload_length);
      offset += scan.consumed;
      if (pending.size() == offset) break;
    }
    pending.consume(offset);
    stream_offset += offset;
  }
  return out;
}

std::string joined(const std::vector<std::string> &messages) {
  std::string all;
  for (const std::string &m : messages) all += m;
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  auto framing = static_cast<gw::Framing>(data[0] % 4);
  size_t max_frame = 1 + ((static_cast<size_t>(data[1]) << 8 | data[2]) % 65536);
  uint32_t seed = static_cast<uint32_t>(data[3]) << 8 | data[4] | 1u;
  const uint8_t *stream = data + 5;
  size_t length = size - 5;

  Outcome whole = decode(framing, max_frame, stream, length, 0);
  Outcome chunked = decode(framing, max_frame, stream, length, seed);
  if (framing == gw::Framing::raw) {
    // Raw has no boundaries: only the bytes must agree.
    require(joined(whole.messages) == joined(chunked.messages), "raw bytes differ when chunked");
    require(!whole.oversize && !chunked.oversize, "raw framing reported oversize");
    return 0;
  }
  require(whole.oversize == chunked.oversize, "chunking changed whether a frame is oversize");
  if (whole.oversize) require(whole.oversize_at == chunked.oversize_at, "oversize found at another frame");
  // The chunked run may stop earlier only by seeing the oversize frame's
  // header sooner; before that point both saw the same messages.
  require(whole.messages == chunked.messages, "chunking changed the messages");
  return 0;
}
