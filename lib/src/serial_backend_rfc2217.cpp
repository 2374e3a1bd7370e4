// SPDX-License-Identifier: MIT
// SerialBackend, RFC 2217: each client of an rfc2217 route is a Telnet
// session (gw/telnet.hpp); its COM-PORT requests act on the SerialPort and
// are answered with the values in effect. The behaviour is described at
// SerialBackend in gw/serial_backend.hpp. Loop thread only, like the rest of
// the backend.
#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

#include "serial_backend_impl.hpp"

namespace gw {

using namespace serial_limits;
namespace tn = telnet;

telnet::Options::Supported Rfc2217Session::supported() noexcept {
  telnet::Options::Supported supported;
  supported.allow(tn::option_binary, true, true)
      .allow(tn::option_sga, true, true)
      .allow(tn::option_com_port, true, true);
  return supported;
}

namespace {

// The client's signature as a log may show it: printable ASCII, bounded.
std::string printable(const std::string &text) {
  std::string out;
  for (char c : text.substr(0, 64)) out.push_back(std::isprint(static_cast<unsigned char>(c)) ? c : '?');
  return out;
}

// Errors that mean "this device has no such thing", not "it failed".
bool unsupported(int rc) noexcept { return rc == -ENOTSUP || rc == -ENOTTY || rc == -EINVAL || rc == -ENOSYS; }

}  // namespace

/// Decoder events of one client's input. Data is collected and queued for
/// the device whole before any command acts, so that bytes sent before a
/// baud change reach the queue first.
class SerialBackend::Impl::TelnetInput final : public tn::Sink {
 public:
  TelnetInput(Impl &impl, Connection &conn) : impl_(impl), conn_(conn) {}

  void on_data(const uint8_t *data, size_t length) override { data_.append(data, data + length); }
  void on_negotiation(uint8_t command, uint8_t option) override {
    if (Client *client = ready()) impl_.telnet_negotiated(*client, command, option);
  }
  void on_subnegotiation(const uint8_t *body, size_t length) override {
    tn::ComPortRequest request;
    Client *client = ready();
    if (client && tn::parse_com_port(body, length, request)) impl_.telnet_request(*client, request);
  }
  void on_command(uint8_t) override {}  // NOP, AYT, BRK, GA: nothing to do on a serial line
  void on_overflow() override {
    Client *client = ready();
    if (!client || client->telnet->overflow_logged) return;
    client->telnet->overflow_logged = true;
    impl_.logger_.log(LogLevel::warning, "%s: %s sent a subnegotiation over %zu bytes; ignored", impl_.label_.c_str(),
                      conn_.peer().to_string().c_str(), tn::Decoder::max_subnegotiation);
  }

  /// Queues the collected data; the client, or null once it is gone.
  Client *ready() {
    Client *client = impl_.find(conn_);
    if (!client || !conn_.is_open()) return nullptr;
    if (!data_.empty()) {
      if (client->readonly)
        Stats::add(impl_.counters_.discarded_readonly, data_.size());
      else
        impl_.queue_for_device(*client, data_.data(), data_.size(), false);
      data_.clear();
      // Writing to the device may have lost it, and with it this client.
      client = impl_.find(conn_);
      if (!client) return nullptr;
    }
    if (client->telnet->replies.size() >= telnet_reply_chunk && !impl_.send_replies(conn_, *client->telnet))
      return nullptr;
    return impl_.find(conn_);
  }

 private:
  Impl &impl_;
  Connection &conn_;
  std::basic_string<uint8_t> data_;
};

// ---- the session ---------------------------------------------------------------

void SerialBackend::Impl::telnet_opened(Client &client) {
  client.telnet = std::make_shared<Rfc2217Session>();
  Rfc2217Session &session = *client.telnet;
  session.options.request(tn::option_binary, true, session.replies);
  session.options.request(tn::option_binary, false, session.replies);
  session.options.request(tn::option_sga, true, session.replies);
  session.options.request(tn::option_com_port, false, session.replies);
  send_replies(*client.conn, session);
}

void SerialBackend::Impl::telnet_input(Connection &conn, const uint8_t *data, size_t length) {
  TelnetInput input(*this, conn);
  const std::shared_ptr<Rfc2217Session> session = find(conn)->telnet;
  session->decoder.feed(data, length, input);
  if (Client *client = input.ready()) send_replies(conn, *client->telnet);
}

// False when the client could not take them: it does not read its answers
// (a negotiation flood), and is dropped.
bool SerialBackend::Impl::send_replies(Connection &conn, Rfc2217Session &session) {
  if (session.replies.empty()) return true;
  const int rc = conn.send(session.replies.data(), session.replies.size());
  session.replies.clear();
  if (rc != -EAGAIN) return true;
  logger_.log(LogLevel::warning, "%s: dropping %s: it does not read its Telnet answers", label_.c_str(),
              conn.peer().to_string().c_str());
  Stats::add(counters_.dropped_slow, 1);
  telnet_closed(conn);
  detach(conn);
  conn.abort(CloseReason::limit);
  return false;
}

void SerialBackend::Impl::telnet_negotiated(Client &client, uint8_t command, uint8_t option) {
  Rfc2217Session &session = *client.telnet;
  session.options.receive(command, option, session.replies);
  session.decoder.set_binary(session.options.remote_on(tn::option_binary));
  const bool com_port = session.options.local_on(tn::option_com_port) || session.options.remote_on(tn::option_com_port);
  if (com_port && !session.com_port) begin_com_port(client);
}

// The client agreed to COM-PORT-OPTION: it learns the modem lines once now
// (pyserial reads CTS and DSR from the last notification it got).
void SerialBackend::Impl::begin_com_port(Client &client) {
  Rfc2217Session &session = *client.telnet;
  session.com_port = true;
  uint8_t state = 0;
  read_modem_state(state);
  tn::com_port_answer(tn::ComPort::notify_modemstate, static_cast<uint8_t>(state & session.modemstate_mask),
                      session.replies);
  update_modem_poll();
}

void SerialBackend::Impl::telnet_request(Client &client, const tn::ComPortRequest &request) {
  Rfc2217Session &session = *client.telnet;
  std::string &out = session.replies;
  switch (request.code) {
    case tn::ComPort::signature:
      if (request.text.empty()) {
        static const char ours[] = "gateway";
        return tn::com_port_answer(request.code, reinterpret_cast<const uint8_t *>(ours), sizeof ours - 1, out);
      }
      logger_.log(LogLevel::debug, "%s: %s is \"%s\"", label_.c_str(), client.conn->peer().to_string().c_str(),
                  printable(request.text).c_str());
      return;
    case tn::ComPort::set_baudrate:
    case tn::ComPort::set_datasize:
    case tn::ComPort::set_parity:
    case tn::ComPort::set_stopsize: return answer_line_setting(client, request);
    case tn::ComPort::set_control: return answer_control(client, static_cast<uint8_t>(request.value));
    case tn::ComPort::notify_linestate: return tn::com_port_answer(request.code, uint8_t{0}, out);
    case tn::ComPort::notify_modemstate: {
      uint8_t state = 0;
      read_modem_state(state);
      return tn::com_port_answer(request.code, static_cast<uint8_t>(state & session.modemstate_mask), out);
    }
    case tn::ComPort::flowcontrol_suspend: return telnet_suspend(client, true);
    case tn::ComPort::flowcontrol_resume: return telnet_suspend(client, false);
    case tn::ComPort::set_linestate_mask:
      session.linestate_mask = static_cast<uint8_t>(request.value);
      return tn::com_port_answer(request.code, session.linestate_mask, out);
    case tn::ComPort::set_modemstate_mask:
      session.modemstate_mask = static_cast<uint8_t>(request.value);
      tn::com_port_answer(request.code, session.modemstate_mask, out);
      return update_modem_poll();
    case tn::ComPort::purge_data:
      if (!client.readonly) purge(static_cast<uint8_t>(request.value));
      return tn::com_port_answer(request.code, static_cast<uint8_t>(request.value), out);
  }
}

// ---- line settings ---------------------------------------------------------------

// SET-BAUDRATE, -DATASIZE, -PARITY, -STOPSIZE: a value of 0 is a query; a
// change is made when the route allows it, and the answer is what is in
// effect afterwards (SerialPort::settings(): applied and checked).
void SerialBackend::Impl::answer_line_setting(Client &client, const tn::ComPortRequest &request) {
  SerialSettings next = port_ ? port_->settings() : config_.settings;
  const uint32_t value = request.value;
  bool valid = value != 0;
  switch (request.code) {
    case tn::ComPort::set_baudrate: next.baud = value; break;
    case tn::ComPort::set_datasize:
      valid = valid && value >= 5 && value <= 8;
      next.data_bits = static_cast<int>(value);
      break;
    case tn::ComPort::set_parity:
      valid = valid && tn::from_code(tn::parity_codes, static_cast<uint8_t>(value), next.parity);
      break;
    default:
      valid = valid && (value == tn::stopsize_one || value == tn::stopsize_two);
      next.stop_bits = static_cast<int>(value);
      break;
  }
  if (valid) change_settings(client, next);
  const SerialSettings &now = port_ ? port_->settings() : config_.settings;
  std::string &out = client.telnet->replies;
  switch (request.code) {
    case tn::ComPort::set_baudrate: return tn::com_port_answer_baud(now.baud, out);
    case tn::ComPort::set_datasize: return tn::com_port_answer(request.code, static_cast<uint8_t>(now.data_bits), out);
    case tn::ComPort::set_parity:
      return tn::com_port_answer(request.code, tn::to_code(tn::parity_codes, now.parity), out);
    default: return tn::com_port_answer(request.code, static_cast<uint8_t>(now.stop_bits), out);
  }
}

// Applies `next` to the open port when the route and the client may change
// it; a refusal is logged, and the answer then carries the old values.
void SerialBackend::Impl::change_settings(Client &client, const SerialSettings &next) {
  if (!port_ || client.readonly || !config_.rfc2217.allow_settings) return;
  const SerialSettings &now = port_->settings();
  if (next.baud == now.baud && next.data_bits == now.data_bits && next.parity == now.parity &&
      next.stop_bits == now.stop_bits && next.flow_control == now.flow_control)
    return;
  std::string why;
  const int rc = next.validate(why) ? -EINVAL : port_->set_settings(next, why);
  const std::string peer = client.conn->peer().to_string();
  if (rc) {
    logger_.log(LogLevel::warning, "%s: %s asked for %s: %s", label_.c_str(), peer.c_str(), next.summary().c_str(),
                why.c_str());
    return;
  }
  logger_.log(LogLevel::info, "%s: %s set the line to %s", label_.c_str(), peer.c_str(), next.summary().c_str());
  if (config_.packing.idle_gap_tenth_chars)
    packer_.set_gap_us(port_->settings().chars_time_us(config_.packing.idle_gap_tenth_chars));
}

// ---- SET-CONTROL -------------------------------------------------------------------

void SerialBackend::Impl::answer_control(Client &client, uint8_t value) {
  namespace c = tn::control;
  set_control(client, value);
  uint8_t query = c::query_flow;
  if (value >= c::query_break && value <= c::break_off) query = c::query_break;
  if (value >= c::query_dtr && value <= c::dtr_off) query = c::query_dtr;
  if (value >= c::query_rts && value <= c::rts_off) query = c::query_rts;
  if (value >= c::query_flow_in && value <= c::flow_in_rtscts) query = c::query_flow_in;
  tn::com_port_answer(tn::ComPort::set_control, control_state(query), client.telnet->replies);
}

// The answer to a SET-CONTROL query: the state in effect.
uint8_t SerialBackend::Impl::control_state(uint8_t query) {
  namespace c = tn::control;
  ModemLines lines;
  const bool real = port_ && !no_modem_lines_ && port_->modem_lines(lines) == 0;
  switch (query) {
    case c::query_break: return break_on_ ? c::break_on : c::break_off;
    case c::query_dtr: return (real ? lines.dtr : virtual_dtr_) ? c::dtr_on : c::dtr_off;
    case c::query_rts: return (real ? lines.rts : virtual_rts_) ? c::rts_on : c::rts_off;
    default: break;
  }
  const SerialSettings &now = port_ ? port_->settings() : config_.settings;
  const uint8_t flow = tn::to_code(tn::flow_codes, now.flow_control);
  // The inbound codes are the outbound ones + 13: Linux has one setting for both.
  return query == c::query_flow_in ? static_cast<uint8_t>(flow + c::query_flow_in) : flow;
}

void SerialBackend::Impl::set_control(Client &client, uint8_t value) {
  namespace c = tn::control;
  if (!port_ || client.readonly) return;
  if (value >= c::flow_none && value <= c::flow_rtscts) {
    SerialSettings next = port_->settings();
    tn::from_code(tn::flow_codes, value, next.flow_control);
    return change_settings(client, next);
  }
  if (value >= c::flow_in_none && value <= c::flow_in_rtscts) return set_control(client, value - c::query_flow_in);
  if (value == c::break_on || value == c::break_off) {
    const bool on = value == c::break_on;
    const int rc = port_->set_break(on);
    if (rc && unsupported(rc) && !no_break_logged_) {
      no_break_logged_ = true;
      logger_.log(LogLevel::info, "%s: the device cannot send a break (%s); answering it as a virtual state",
                  label_.c_str(), std::strerror(-rc));
    }
    break_on_ = on;
    break_owner_ = on ? client.conn : nullptr;
    if (on) return break_timer_.start(max_break_ms);
    return break_timer_.stop();
  }
  const bool dtr = value == c::dtr_on || value == c::dtr_off;
  const bool rts = value == c::rts_on || value == c::rts_off;
  if (!dtr && !rts) return;
  const bool on = value == c::dtr_on || value == c::rts_on;
  const int rc = no_modem_lines_ ? -ENOTSUP
                 : dtr           ? port_->set_modem_lines(on, std::nullopt)
                                 : port_->set_modem_lines(std::nullopt, on);
  (dtr ? virtual_dtr_ : virtual_rts_) = on;
  if (rc && unsupported(rc) && !no_modem_lines_) {
    no_modem_lines_ = true;
    logger_.log(LogLevel::info, "%s: the device has no modem lines; DTR and RTS are answered as a virtual state",
                label_.c_str());
  }
}

void SerialBackend::Impl::end_break() {
  break_timer_.stop();
  if (port_ && break_on_) port_->set_break(false);
  break_on_ = false;
  break_owner_ = nullptr;
}

// PURGE-DATA: "receive" is what the server got from the device and has not
// sent yet (the driver's input and the packer), "transmit" what it holds for
// the device (our queue, shared clients' bytes included, and the driver's).
void SerialBackend::Impl::purge(uint8_t value) {
  if (!port_ || value < tn::purge_receive || value > tn::purge_both) return;
  if (value & tn::purge_receive) {
    port_->flush(FlushQueue::input);
    packer_.discard();
  }
  if (value & tn::purge_transmit) {
    to_device_.release();
    port_->flush(FlushQueue::output);
    update_interest();
    resume_writers();
  }
}

// ---- modem state -------------------------------------------------------------------

// The NOTIFY-MODEMSTATE bits of the lines now, with the deltas since the
// last poll. False (state 0) where the device has no modem lines.
bool SerialBackend::Impl::read_modem_state(uint8_t &state) {
  state = 0;
  ModemLines lines;
  if (!port_ || no_modem_lines_) return false;
  if (port_->modem_lines(lines) != 0) {
    no_modem_lines_ = true;
    logger_.log(LogLevel::info, "%s: the device has no modem lines; no modem state is sent", label_.c_str());
    return false;
  }
  const uint8_t now = static_cast<uint8_t>((lines.dcd ? tn::modem_cd : 0) | (lines.ri ? tn::modem_ri : 0) |
                                           (lines.dsr ? tn::modem_dsr : 0) | (lines.cts ? tn::modem_cts : 0));
  const uint8_t changed = now ^ (last_modem_state_ & 0xf0);
  uint8_t deltas = 0;
  if (changed & tn::modem_cd) deltas |= tn::modem_delta_cd;
  if ((changed & tn::modem_ri) && !(now & tn::modem_ri)) deltas |= tn::modem_trailing_ri;
  if (changed & tn::modem_dsr) deltas |= tn::modem_delta_dsr;
  if (changed & tn::modem_cts) deltas |= tn::modem_delta_cts;
  state = now | deltas;
  return true;
}

void SerialBackend::Impl::poll_modem_lines() {
  uint8_t state = 0;
  if (!read_modem_state(state)) return modem_timer_.stop();
  const uint8_t previous = last_modem_state_;
  last_modem_state_ = state;
  if ((state & 0xf0) == (previous & 0xf0)) return;
  std::vector<Connection *> clients;
  for (Client &client : clients_) {
    if (!client.telnet || !client.telnet->com_port) continue;
    Rfc2217Session &session = *client.telnet;
    if (!((state ^ previous) & 0xf0 & session.modemstate_mask)) continue;
    tn::com_port_answer(tn::ComPort::notify_modemstate, static_cast<uint8_t>(state & session.modemstate_mask),
                        session.replies);
    clients.push_back(client.conn);
  }
  for (Connection *conn : clients) {
    if (Client *client = find(*conn)) send_replies(*conn, *client->telnet);
  }
}

// Polls only while the device has modem lines and a session wants them.
void SerialBackend::Impl::update_modem_poll() {
  bool wanted = false;
  for (const Client &client : clients_)
    wanted = wanted || (client.telnet && client.telnet->com_port && client.telnet->modemstate_mask);
  if (!wanted || !port_ || no_modem_lines_) return modem_timer_.stop();
  if (!modem_timer_.active()) modem_timer_.start(modem_poll_ms, modem_poll_ms);
}

// ---- flow control and delivery --------------------------------------------------------

void SerialBackend::Impl::telnet_suspend(Client &client, bool suspend) {
  Rfc2217Session &session = *client.telnet;
  session.suspended = suspend;
  if (suspend || session.held.empty()) return;
  client.conn->send(session.held.data(), session.held.size());
  session.held.release();
  Client *current = writer();
  if (paused_for_client_ && current == &client && queued_for(client) <= client.conn->config().high_water) {
    paused_for_client_ = false;
    update_interest();
  }
}

// One packet to a Telnet client, escaped; held while it has suspended the
// flow. False when it cannot take it (the caller drops it as slow).
bool SerialBackend::Impl::deliver_telnet(Client &client, const uint8_t *data, size_t length) {
  Rfc2217Session &session = *client.telnet;
  escaped_.clear();
  tn::escape(data, length, session.options.local_on(tn::option_binary), escaped_);
  if (!session.suspended) return escaped_.empty() || client.conn->send(escaped_.data(), escaped_.size()) != -EAGAIN;
  if (queued_for(client) + escaped_.size() > client.conn->config().max_output) return false;
  session.held.append(escaped_.data(), escaped_.size());
  return true;
}

void SerialBackend::Impl::telnet_closed(Connection &conn) {
  if (break_owner_ == &conn) end_break();
  Client *client = find(conn);
  if (!client || !client->telnet) return;
  client->telnet.reset();
  update_modem_poll();
}

}  // namespace gw
