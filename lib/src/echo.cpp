// SPDX-License-Identifier: MIT
#include "gw/echo.hpp"

#include "gw/connection.hpp"

namespace gw {

void EchoHandler::on_message(Connection &conn, const uint8_t *data, size_t length) {
  // Backpressure keeps the queue below max_output: reading stops at high_water.
  conn.send_message(data, length);
}

}  // namespace gw
