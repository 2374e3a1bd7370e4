// SPDX-License-Identifier: MIT
// ModbusGateway's TCP bus: one Modbus TCP device behind one connection.
#include "modbus_gateway_impl.hpp"

namespace gw {
namespace {

class TcpBus final : public ModbusBus {
 public:
  TcpBus(ModbusGateway::Impl &gateway, SocketAddress backend) : ModbusBus(gateway), backend_(backend) {}
  bool available() const noexcept override { return false; }
  bool has_broadcast() const noexcept override { return false; }
  void send(uint8_t, const modbus::Bytes &) override {}

 private:
  SocketAddress backend_;
};

}  // namespace

int make_tcp_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SocketAddress backend, std::string &) {
  out = std::make_unique<TcpBus>(gateway, backend);
  return 0;
}

}  // namespace gw
