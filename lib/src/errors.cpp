// SPDX-License-Identifier: MIT
#include "gw/errors.hpp"

#include <cstring>

namespace gw::err {

const char *describe(int code) noexcept {
  switch (code) {
    case 0: return "success";
    case not_listening: return "the socket is not listening (call listen() or use a listening socket)";
    case not_stream: return "the socket is not a SOCK_STREAM socket";
    case bad_state: return "not allowed in the object's current state";
    case wrong_thread: return "called from a thread that is not the loop thread";
    case closed: return "the connection is closing or closed";
    case not_found: return "no inherited socket has that name, and no address to bind instead";
    case too_big: return "the message is larger than the framing allows";
    case bad_address: return "invalid address: expected IP:PORT, [IPv6]:PORT or :PORT";
    default: break;
  }
  if (code < 0 && code > -4096) {
    // strerror() may return a static buffer for unknown values; strerrordesc_np
    // (glibc 2.32+) is thread-safe and never formats.
    if (const char *text = strerrordesc_np(-code)) return text;
  }
  return "unknown error";
}

}  // namespace gw::err
