// SPDX-License-Identifier: MIT
// ModbusGateway's RTU bus: a serial line with the Modbus serial timing.
#include "modbus_gateway_impl.hpp"

namespace gw {
namespace {

class RtuBus final : public ModbusBus {
 public:
  RtuBus(ModbusGateway::Impl &gateway, SerialBackendConfig device) : ModbusBus(gateway), device_(std::move(device)) {}
  bool available() const noexcept override { return false; }
  bool has_broadcast() const noexcept override { return true; }
  void send(uint8_t, const modbus::Bytes &) override {}

 private:
  SerialBackendConfig device_;
};

}  // namespace

int make_rtu_bus(std::unique_ptr<ModbusBus> &out, ModbusGateway::Impl &gateway, SerialBackendConfig device,
                 std::string &) {
  out = std::make_unique<RtuBus>(gateway, std::move(device));
  return 0;
}

}  // namespace gw
