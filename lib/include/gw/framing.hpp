// SPDX-License-Identifier: MIT
// Framing: cutting a TCP byte stream into the messages firmware wants.
#pragma once
#include <cstddef>
#include <cstdint>

#include <sys/uio.h>

namespace gw {

enum class Framing { raw = 0, line = 1, u16be = 2, u32be = 3 };

/// The outcome of looking for one frame at the front of some bytes.
struct FrameScan {
  enum Status { need_more, frame, oversize } status = need_more;
  size_t payload_offset = 0;  ///< where the message starts
  size_t payload_length = 0;  ///< its length (a line's, without the '\n')
  size_t consumed = 0;        ///< bytes to drop once the message is delivered
};

/// Looks for one complete frame at the front of [data, data+length).
/// A frame (or an unterminated line) longer than max_frame is `oversize`: the
/// length prefixes are checked before the body arrives, so a peer cannot make
/// us buffer more than max_frame plus a header. Raw framing always returns the
/// whole input as one frame. Pure function; thread-safe.
FrameScan scan_frame(Framing framing, size_t max_frame, const uint8_t *data, size_t length) noexcept;

/// Writes the framing header for a payload of `length` bytes into `header`
/// (at most 4 bytes) and returns its size, or -1 when the length does not fit
/// the prefix. For `line` the trailer '\n' is the caller's (see trailer_size).
int encode_header(Framing framing, size_t length, uint8_t header[4]) noexcept;
inline size_t trailer_size(Framing framing) noexcept { return framing == Framing::line ? 1 : 0; }

/// One message laid out for writev(): header, payload, trailer.
struct EncodedFrame {
  uint8_t header[4];
  iovec parts[3];
  int count = 0;
};

/// Fills `out` with the pieces of `payload` framed for `framing`; returns false
/// when the length does not fit the prefix. `out` points into `payload`.
bool encode_frame(Framing framing, const void *payload, size_t length, EncodedFrame &out) noexcept;

}  // namespace gw
