// SPDX-License-Identifier: MIT
// SerialSettings: range checks with reasons, and character timing.
#include <cerrno>
#include <string>

#include "gw/serial.hpp"

namespace gw {
namespace {

std::string text(uint64_t value) { return std::to_string(value); }

int fail(std::string &why, std::string reason) {
  why = std::move(reason);
  return -EINVAL;
}

int validate_line(const SerialSettings &s, std::string &why) {
  if (s.baud < SerialSettings::min_baud || s.baud > SerialSettings::max_baud)
    return fail(why, "baud " + text(s.baud) + " is out of range (" + text(SerialSettings::min_baud) + " to " +
                         text(SerialSettings::max_baud) + ")");
  if (s.data_bits < 5 || s.data_bits > 8)
    return fail(why, "data_bits " + std::to_string(s.data_bits) + " is out of range (5 to 8)");
  if (s.stop_bits != 1 && s.stop_bits != 2)
    return fail(why, "stop_bits " + std::to_string(s.stop_bits) + " is out of range (1 or 2)");
  if (std::string(parity_name(s.parity)) == "?")
    return fail(why,
                "parity " + std::to_string(static_cast<int>(s.parity)) + " is not one of none, even, odd, mark, space");
  if (std::string(flow_control_name(s.flow_control)) == "?")
    return fail(why, "flow_control " + std::to_string(static_cast<int>(s.flow_control)) +
                         " is not one of none, rtscts, xonxoff");
  return 0;
}

int validate_rs485(const SerialSettings &s, std::string &why) {
  const Rs485Settings &r = s.rs485;
  if (!r.enabled) return 0;
  if (r.delay_before_send_ms > SerialSettings::max_rs485_delay_ms)
    return fail(why, "rs485 delay_before_send " + text(r.delay_before_send_ms) + " ms is out of range (0 to " +
                         text(SerialSettings::max_rs485_delay_ms) + " ms, the kernel's limit)");
  if (r.delay_after_send_ms > SerialSettings::max_rs485_delay_ms)
    return fail(why, "rs485 delay_after_send " + text(r.delay_after_send_ms) + " ms is out of range (0 to " +
                         text(SerialSettings::max_rs485_delay_ms) + " ms, the kernel's limit)");
  if (r.rts_on_send == r.rts_after_send)
    return fail(why, std::string("rs485 rts_on_send and rts_after_send are both ") + (r.rts_on_send ? "high" : "low") +
                         ": RTS would never switch the transceiver's direction; set one of them to the other level");
  if (s.flow_control == FlowControl::rtscts)
    return fail(why, "rs485 and flow_control rtscts both need RTS: use flow_control none or xonxoff with rs485");
  if (s.rts)
    return fail(why, "rts cannot be set while rs485 is enabled: the driver drives RTS; remove the rts setting");
  return 0;
}

}  // namespace

int SerialSettings::validate(std::string &why) const {
  if (int rc = validate_line(*this, why)) return rc;
  if (int rc = validate_rs485(*this, why)) return rc;
  if (rts && flow_control == FlowControl::rtscts)
    return fail(why, "rts cannot be set with flow_control rtscts: the driver drives RTS; remove the rts setting");
  return 0;
}

uint32_t SerialSettings::half_bits_per_char() const noexcept {
  uint32_t halves = 2 * (1 + static_cast<uint32_t>(data_bits));  // start bit and data bits
  if (parity != Parity::none) halves += 2;
  if (stop_bits == 2) {
    halves += data_bits == 5 ? 3 : 4;  // a UART sends 1.5 stop bits for "2" with 5 data bits
  } else {
    halves += 2;
  }
  return halves;
}

uint32_t SerialSettings::chars_time_us(uint32_t tenths) const noexcept {
  // tenths of chars * half bits per char / (20 * baud) seconds, rounded up once.
  const uint64_t numerator = static_cast<uint64_t>(tenths) * half_bits_per_char() * 1000000u;
  const uint64_t denominator = 20u * static_cast<uint64_t>(baud > 0 ? baud : 1);
  return static_cast<uint32_t>((numerator + denominator - 1) / denominator);
}

uint32_t SerialSettings::char_time_us() const noexcept { return chars_time_us(10); }

std::string SerialSettings::summary() const {
  static const char parity_letters[] = {'N', 'E', 'O', 'M', 'S'};
  const auto parity_index = static_cast<size_t>(parity);
  std::string out = std::to_string(baud) + " " + std::to_string(data_bits);
  out += parity_index < sizeof parity_letters ? parity_letters[parity_index] : '?';
  out += std::to_string(stop_bits);
  if (flow_control != FlowControl::none) out += std::string(" ") + flow_control_name(flow_control);
  if (rs485.enabled) out += " rs485";
  return out;
}

}  // namespace gw
