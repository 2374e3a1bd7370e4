// SPDX-License-Identifier: MIT
// Telnet (RFC 854, 855, 856) and its COM-PORT-OPTION (RFC 2217), as a pure
// codec: bytes in, events and bytes out, no I/O, no allocation past the
// bounds stated here, no exceptions. SerialBackend uses it on rfc2217 routes
// (lib/src/serial_backend_rfc2217.cpp); tests/fuzz/fuzz_telnet.cpp feeds it
// arbitrary input.
//
// Four parts:
//
//  * Decoder: the client -> server stream, incrementally (a command may be
//    split anywhere between two reads). Data bytes come out in runs; IAC IAC
//    is one 0xFF data byte; IAC WILL/WONT/DO/DONT opt is a negotiation; IAC SB
//    ... IAC SE is a subnegotiation (IAC IAC inside it is one 0xFF); other
//    commands (NOP, AYT, BRK, GA, ...) are reported and the caller ignores
//    them; IAC followed by a byte that is no command is dropped with it.
//    A subnegotiation longer than max_subnegotiation is not grown: its bytes
//    are dropped up to its IAC SE, which is reported as an overflow.
//    CR: in binary mode (RFC 856, which a gateway negotiates both ways) every
//    byte passes unchanged. Without binary mode the stream is NVT text, in
//    which CR is sent as CR NUL or CR LF: the NUL after a CR is dropped (it is
//    padding), and CR LF passes as both bytes (the device sees what was
//    typed). The decoder follows set_binary().
//
//  * Encoder (escape()): device data for the server -> client stream: 0xFF
//    becomes IAC IAC; without binary mode, CR also becomes CR NUL (an NVT
//    receiver then gives back the CR alone).
//
//  * Options: the option negotiation of one side of a connection, with the
//    rules of RFC 1143 that keep two implementations from looping: a request
//    for a state already in effect is not answered, an answer to our own
//    request is not answered again, and an option we do not support is
//    refused (WONT for DO, DONT for WILL) and never acknowledged.
//
//  * COM-PORT-OPTION (44): parse_com_port() reads one subnegotiation's body
//    into a ComPortRequest; com_port_answer() builds a server's answer (the
//    client's code + 100, values IAC-escaped). The code tables below are the
//    one source of the RFC's numbers.
//
// Threading: none; each object belongs to one connection's thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "gw/serial.hpp"

namespace gw::telnet {

// Commands (RFC 854).
constexpr uint8_t SE = 240, NOP = 241, DM = 242, BRK = 243, IP = 244, AO = 245, AYT = 246, EC = 247, EL = 248, GA = 249,
                  SB = 250, WILL = 251, WONT = 252, DO = 253, DONT = 254, IAC = 255;
// Options.
constexpr uint8_t option_binary = 0, option_echo = 1, option_sga = 3, option_com_port = 44;

/// What the decoder found, event by event, in stream order.
class Sink {
 public:
  /// A run of data bytes (pointing into the input, or at one 0xFF).
  virtual void on_data(const uint8_t *data, size_t length) = 0;
  /// IAC WILL/WONT/DO/DONT `option`.
  virtual void on_negotiation(uint8_t command, uint8_t option) = 0;
  /// IAC SB body IAC SE: `body` starts with the option byte, unescaped.
  virtual void on_subnegotiation(const uint8_t *body, size_t length) = 0;
  /// Any other command (NOP, AYT, BRK, GA, DM, ...).
  virtual void on_command(uint8_t command) = 0;
  /// A subnegotiation longer than Decoder::max_subnegotiation ended; its bytes were dropped.
  virtual void on_overflow() = 0;

 protected:
  ~Sink() = default;
};

/// The client -> server stream. Holds at most max_subnegotiation bytes.
class Decoder {
 public:
  /// COM-PORT subnegotiations are at most 6 bytes; a signature is text.
  static constexpr size_t max_subnegotiation = 256;

  /// Feeds `length` bytes, calling `sink` for what they complete. Never throws.
  void feed(const uint8_t *data, size_t length, Sink &sink);
  /// Binary mode for this direction (the peer's WILL BINARY was accepted).
  void set_binary(bool on) noexcept { binary_ = on; }
  bool binary() const noexcept { return binary_; }
  /// True while inside IAC SB ... (the caller may count this for limits).
  bool in_subnegotiation() const noexcept { return state_ == State::sb || state_ == State::sb_iac; }

 private:
  enum class State { data, cr, iac, negotiation, sb, sb_iac };
  void feed_sb(uint8_t byte, Sink &sink);
  void feed_iac(uint8_t byte, Sink &sink);

  State state_ = State::data;
  uint8_t command_ = 0;  // the WILL/WONT/DO/DONT waiting for its option
  bool binary_ = false;
  bool overflowed_ = false;  // the current subnegotiation is being dropped
  size_t sb_length_ = 0;
  uint8_t sb_[max_subnegotiation];
};

/// Appends `data` to `out` escaped for the server -> client stream.
void escape(const uint8_t *data, size_t length, bool binary, std::string &out);

/// One side's option states (ours: WILL/WONT; theirs: DO/DONT), with the
/// options this side supports.
class Options {
 public:
  /// `local`: options we agree to perform (answer DO with WILL); `remote`:
  /// options we let the peer perform (answer WILL with DO). Each a 256-bit set.
  struct Supported {
    uint64_t local[4] = {0, 0, 0, 0};
    uint64_t remote[4] = {0, 0, 0, 0};
    Supported &allow(uint8_t option, bool as_local, bool as_remote) noexcept;
  };
  explicit Options(const Supported &supported) noexcept : supported_(supported) {}

  /// Asks to enable an option: WILL (local) or DO (remote) goes to `out`,
  /// unless it is already on or asked for.
  void request(uint8_t option, bool local, std::string &out);
  /// Handles a received WILL/WONT/DO/DONT; the answer, if any, goes to `out`.
  void receive(uint8_t command, uint8_t option, std::string &out);
  bool local_on(uint8_t option) const noexcept { return has(local_on_, option); }
  bool remote_on(uint8_t option) const noexcept { return has(remote_on_, option); }

 private:
  using Bits = uint64_t[4];
  static bool has(const Bits &bits, uint8_t option) noexcept { return (bits[option >> 6] >> (option & 63)) & 1u; }
  static void put(Bits &bits, uint8_t option, bool on) noexcept;
  void receive_side(bool local, bool yes, uint8_t option, std::string &out);

  Supported supported_;
  Bits local_on_ = {0, 0, 0, 0}, remote_on_ = {0, 0, 0, 0};
  Bits local_asked_ = {0, 0, 0, 0}, remote_asked_ = {0, 0, 0, 0};  // our request waits for its answer
};

/// Appends IAC `command` `option`.
void negotiation(uint8_t command, uint8_t option, std::string &out);

// ---- COM-PORT-OPTION (RFC 2217) --------------------------------------------

/// Client -> server codes; the server answers with code + server_offset.
enum class ComPort : uint8_t {
  signature = 0,
  set_baudrate = 1,
  set_datasize = 2,
  set_parity = 3,
  set_stopsize = 4,
  set_control = 5,
  notify_linestate = 6,
  notify_modemstate = 7,
  flowcontrol_suspend = 8,
  flowcontrol_resume = 9,
  set_linestate_mask = 10,
  set_modemstate_mask = 11,
  purge_data = 12,
};
constexpr uint8_t server_offset = 100;

/// SET-CONTROL values.
namespace control {
constexpr uint8_t query_flow = 0, flow_none = 1, flow_xonxoff = 2, flow_rtscts = 3;
constexpr uint8_t query_break = 4, break_on = 5, break_off = 6;
constexpr uint8_t query_dtr = 7, dtr_on = 8, dtr_off = 9;
constexpr uint8_t query_rts = 10, rts_on = 11, rts_off = 12;
constexpr uint8_t query_flow_in = 13, flow_in_none = 14, flow_in_xonxoff = 15, flow_in_rtscts = 16;
}  // namespace control

/// PURGE-DATA values.
constexpr uint8_t purge_receive = 1, purge_transmit = 2, purge_both = 3;
/// NOTIFY-MODEMSTATE bits.
constexpr uint8_t modem_cd = 128, modem_ri = 64, modem_dsr = 32, modem_cts = 16, modem_delta_cd = 8,
                  modem_trailing_ri = 4, modem_delta_dsr = 2, modem_delta_cts = 1;

/// One row of an RFC value table.
template <typename Enum>
struct RfcCode {
  Enum value;
  uint8_t code;
};
/// SET-PARITY codes (0 is the query).
inline constexpr RfcCode<Parity> parity_codes[] = {
    {Parity::none, 1}, {Parity::odd, 2}, {Parity::even, 3}, {Parity::mark, 4}, {Parity::space, 5}};
/// SET-CONTROL flow codes (outbound/both).
inline constexpr RfcCode<FlowControl> flow_codes[] = {
    {FlowControl::none, control::flow_none},
    {FlowControl::xonxoff, control::flow_xonxoff},
    {FlowControl::rtscts, control::flow_rtscts},
};
/// SET-STOPSIZE codes: 1 is one stop bit, 2 two; 3 (1.5) has no SerialSettings value.
constexpr uint8_t stopsize_one = 1, stopsize_two = 2, stopsize_one_and_half = 3;

template <typename Enum, size_t N>
bool from_code(const RfcCode<Enum> (&table)[N], uint8_t code, Enum &out) noexcept {
  for (const auto &row : table) {
    if (row.code == code) {
      out = row.value;
      return true;
    }
  }
  return false;
}
template <typename Enum, size_t N>
uint8_t to_code(const RfcCode<Enum> (&table)[N], Enum value) noexcept {
  for (const auto &row : table) {
    if (row.value == value) return row.code;
  }
  return 0;
}

/// One COM-PORT subnegotiation from a client.
struct ComPortRequest {
  ComPort code = ComPort::signature;
  /// SET-BAUDRATE: the rate (0: query); the one-byte requests: their byte.
  uint32_t value = 0;
  /// SIGNATURE: the client's text (empty: a query); at most max_subnegotiation bytes.
  std::string text;
};

/// Reads a subnegotiation body (its first byte the option). False when it is
/// not COM-PORT, the code is unknown, or the value is missing or too short;
/// bytes past a value are ignored.
bool parse_com_port(const uint8_t *body, size_t length, ComPortRequest &out);

/// Appends IAC SB COM-PORT (code + 100) value IAC SE; `value` is escaped.
void com_port_answer(ComPort code, const uint8_t *value, size_t length, std::string &out);
/// The same with a one-byte value, and with SET-BAUDRATE's four bytes.
void com_port_answer(ComPort code, uint8_t value, std::string &out);
void com_port_answer_baud(uint32_t baud, std::string &out);

}  // namespace gw::telnet
