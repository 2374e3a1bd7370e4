// SPDX-License-Identifier: MIT
// The Telnet and COM-PORT-OPTION codec (see gw/telnet.hpp): pure functions
// and small state machines, no I/O.
#include "gw/telnet.hpp"

namespace gw::telnet {

// ---- Decoder -----------------------------------------------------------------

void Decoder::feed(const uint8_t *data, size_t length, Sink &sink) {
  size_t i = 0;
  while (i < length) {
    if (state_ == State::data) {
      // One run of plain bytes up to the next IAC (or CR in NVT mode).
      size_t end = i;
      while (end < length && data[end] != IAC && (binary_ || data[end] != '\r')) ++end;
      if (end > i) sink.on_data(data + i, end - i);
      if (end == length) return;
      const uint8_t byte = data[end];
      i = end + 1;
      if (byte == IAC) {
        state_ = State::iac;
      } else {
        sink.on_data(data + end, 1);
        state_ = State::cr;
      }
      continue;
    }
    const uint8_t byte = data[i++];
    switch (state_) {
      case State::cr:
        // CR NUL is a bare CR in NVT text: the NUL is padding, not data.
        state_ = State::data;
        if (byte != 0) --i;
        break;
      case State::iac: feed_iac(byte, sink); break;
      case State::negotiation:
        state_ = State::data;
        sink.on_negotiation(command_, byte);
        break;
      case State::sb:
      case State::sb_iac: feed_sb(byte, sink); break;
      case State::data: break;  // handled above
    }
  }
}

void Decoder::feed_iac(uint8_t byte, Sink &sink) {
  static const uint8_t escaped_iac = IAC;
  state_ = State::data;
  if (byte == IAC) {
    sink.on_data(&escaped_iac, 1);
  } else if (byte >= WILL) {
    command_ = byte;
    state_ = State::negotiation;
  } else if (byte == SB) {
    state_ = State::sb;
    sb_length_ = 0;
    overflowed_ = false;
  } else if (byte >= SE) {
    sink.on_command(byte);  // NOP, AYT, BRK, GA, ... and a stray SE
  }
  // Below SE it is no command: RFC 854 leaves it undefined; it is dropped.
}

void Decoder::feed_sb(uint8_t byte, Sink &sink) {
  if (state_ == State::sb) {
    if (byte == IAC) {
      state_ = State::sb_iac;
      return;
    }
  } else if (byte == SE) {
    state_ = State::data;
    if (overflowed_)
      sink.on_overflow();
    else
      sink.on_subnegotiation(sb_, sb_length_);
    return;
  } else if (byte != IAC) {
    // IAC and a command inside a subnegotiation: the peer forgot its IAC SE.
    // The unfinished subnegotiation is dropped and the command taken as one.
    state_ = State::iac;
    return feed_iac(byte, sink);
  } else {
    state_ = State::sb;  // IAC IAC: one 0xFF of the body
  }
  if (sb_length_ < max_subnegotiation)
    sb_[sb_length_++] = byte;
  else
    overflowed_ = true;
}

// ---- Encoder -----------------------------------------------------------------

void escape(const uint8_t *data, size_t length, bool binary, std::string &out) {
  out.reserve(out.size() + length + length / 8 + 2);
  for (size_t i = 0; i < length; ++i) {
    const char byte = static_cast<char>(data[i]);
    out.push_back(byte);
    if (data[i] == IAC)
      out.push_back(byte);
    else if (data[i] == '\r' && !binary)
      out.push_back('\0');
  }
}

void negotiation(uint8_t command, uint8_t option, std::string &out) {
  out.push_back(static_cast<char>(IAC));
  out.push_back(static_cast<char>(command));
  out.push_back(static_cast<char>(option));
}

// ---- Options -------------------------------------------------------------------

Options::Supported &Options::Supported::allow(uint8_t option, bool as_local, bool as_remote) noexcept {
  const uint64_t bit = uint64_t{1} << (option & 63);
  if (as_local) local[option >> 6] |= bit;
  if (as_remote) remote[option >> 6] |= bit;
  return *this;
}

void Options::put(Bits &bits, uint8_t option, bool on) noexcept {
  const uint64_t bit = uint64_t{1} << (option & 63);
  if (on)
    bits[option >> 6] |= bit;
  else
    bits[option >> 6] &= ~bit;
}

void Options::request(uint8_t option, bool local, std::string &out) {
  Bits &on = local ? local_on_ : remote_on_;
  Bits &asked = local ? local_asked_ : remote_asked_;
  if (has(on, option) || has(asked, option)) return;
  put(asked, option, true);
  negotiation(local ? WILL : DO, option, out);
}

void Options::receive(uint8_t command, uint8_t option, std::string &out) {
  switch (command) {
    case WILL: return receive_side(false, true, option, out);
    case WONT: return receive_side(false, false, option, out);
    case DO: return receive_side(true, true, option, out);
    case DONT: return receive_side(true, false, option, out);
    default: return;
  }
}

// `local`: DO/DONT (about what we perform); `yes`: WILL or DO. RFC 1143's
// rules without its queue: nothing is answered that would not change a state.
void Options::receive_side(bool local, bool yes, uint8_t option, std::string &out) {
  Bits &on = local ? local_on_ : remote_on_;
  Bits &asked = local ? local_asked_ : remote_asked_;
  const bool was_asked = has(asked, option);
  put(asked, option, false);
  if (yes == has(on, option)) return;  // already so (or our refusal's echo)
  if (yes && !has(local ? supported_.local : supported_.remote, option)) {
    negotiation(local ? WONT : DONT, option, out);
    return;
  }
  put(on, option, yes);
  if (!was_asked) negotiation(local ? (yes ? WILL : WONT) : (yes ? DO : DONT), option, out);
}

// ---- COM-PORT-OPTION -----------------------------------------------------------

bool parse_com_port(const uint8_t *body, size_t length, ComPortRequest &out) {
  if (length < 2 || body[0] != option_com_port || body[1] > static_cast<uint8_t>(ComPort::purge_data)) return false;
  out.code = static_cast<ComPort>(body[1]);
  out.value = 0;
  out.text.clear();
  const uint8_t *value = body + 2;
  const size_t size = length - 2;
  switch (out.code) {
    case ComPort::signature: out.text.assign(reinterpret_cast<const char *>(value), size); return true;
    case ComPort::set_baudrate:
      if (size < 4) return false;
      out.value = uint32_t{value[0]} << 24 | uint32_t{value[1]} << 16 | uint32_t{value[2]} << 8 | value[3];
      return true;
    // A client may poll the states with no value, and suspend or resume.
    case ComPort::notify_linestate:
    case ComPort::notify_modemstate:
    case ComPort::flowcontrol_suspend:
    case ComPort::flowcontrol_resume:
      if (size > 0) out.value = value[0];
      return true;
    default:
      if (size < 1) return false;
      out.value = value[0];
      return true;
  }
}

void com_port_answer(ComPort code, const uint8_t *value, size_t length, std::string &out) {
  out.push_back(static_cast<char>(IAC));
  out.push_back(static_cast<char>(SB));
  out.push_back(static_cast<char>(option_com_port));
  out.push_back(static_cast<char>(static_cast<uint8_t>(code) + server_offset));
  escape(value, length, true, out);
  out.push_back(static_cast<char>(IAC));
  out.push_back(static_cast<char>(SE));
}

void com_port_answer(ComPort code, uint8_t value, std::string &out) { com_port_answer(code, &value, 1, out); }

void com_port_answer_baud(uint32_t baud, std::string &out) {
  const uint8_t value[4] = {static_cast<uint8_t>(baud >> 24), static_cast<uint8_t>(baud >> 16),
                            static_cast<uint8_t>(baud >> 8), static_cast<uint8_t>(baud)};
  com_port_answer(ComPort::set_baudrate, value, sizeof value, out);
}

}  // namespace gw::telnet
