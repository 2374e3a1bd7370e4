// SPDX-License-Identifier: MIT
// The echo backend: every message goes back to the client that sent it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "gw/listener.hpp"

namespace gw {

/// Sends every message back in the listener's framing. Stateless; one object
/// may serve any number of listeners.
class EchoHandler final : public ConnectionHandler {
 public:
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
};

}  // namespace gw
