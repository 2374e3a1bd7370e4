// SPDX-License-Identifier: MIT
// SerialBackend: a listener's clients reach one serial device (a UART, a USB
// adapter) through it, with the client policies, packing and hot-plug of a
// device server. The device layer it builds on is in serial.hpp and
// device_watch.hpp.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gw/address.hpp"
#include "gw/listener.hpp"
#include "gw/log.hpp"
#include "gw/serial.hpp"
#include "gw/stats.hpp"

namespace gw {

/// Who may use the device when several clients are connected.
enum class SerialClients {
  exclusive,  ///< one client; the next is refused with a one-line reason
  kick_old,   ///< a newcomer takes over: a dead client never holds the port
  shared,     ///< device output to every client, client input whole frame by whole frame
};
/// When the device is open.
enum class SerialOpen {
  on_connect,  ///< opened for the first client, closed after the last
  always,      ///< kept open; output with no client is counted and discarded
};
/// A client that comes while the device is missing (absent, unplugged, held).
enum class DeviceMissing {
  refuse,  ///< gets a one-line reason and is closed
  wait,    ///< waits up to device_wait_ms for the device to appear
};
/// The device goes away (hang-up, EIO, ENXIO) while clients are connected.
enum class DeviceLoss {
  close,  ///< the clients are closed with a logged reason
  hold,   ///< the clients stay; their output resumes when the device returns
};

/// One name table per policy, as serial.hpp has for parity: the config
/// parser, its "did you mean" and the log lines use these words.
inline constexpr EnumName<SerialClients> serial_clients_names[] = {
    {SerialClients::exclusive, "exclusive"}, {SerialClients::kick_old, "kick-old"}, {SerialClients::shared, "shared"}};
inline constexpr EnumName<SerialOpen> serial_open_names[] = {{SerialOpen::on_connect, "on-connect"},
                                                             {SerialOpen::always, "always"}};
inline constexpr EnumName<DeviceMissing> device_missing_names[] = {{DeviceMissing::refuse, "refuse"},
                                                                   {DeviceMissing::wait, "wait"}};
inline constexpr EnumName<DeviceLoss> device_loss_names[] = {{DeviceLoss::close, "close"}, {DeviceLoss::hold, "hold"}};

/// Packing, device -> network: when the bytes read from the device are sent
/// on as one packet (one framed message on a framed route). All zero/empty,
/// the default: each read goes out at once, with no added delay.
struct SerialPacking {
  /// Send once the line has been quiet this long (microseconds); 0 = off.
  uint32_t idle_gap_us = 0;
  /// The same in tenths of characters at the line's rate ("3.5char" = 35);
  /// when non-zero it wins over idle_gap_us, and follows baud changes.
  uint32_t idle_gap_tenth_chars = 0;
  /// One or two bytes that end a packet; empty = none.
  std::string delimiter;
  bool keep_delimiter = true;  ///< false: the delimiter is stripped
  /// A packet is sent when it reaches this many bytes; 0 = no limit.
  size_t max_packet = 0;
  /// A packet's first byte waits at most this long (force transmit); 0 = no limit.
  uint32_t max_hold_ms = 0;
};

/// RFC 2217 (Telnet with the COM-PORT-OPTION) on a serial route: each client
/// is a Telnet session (see gw/telnet.hpp and the notes at SerialBackend).
struct Rfc2217Options {
  bool enabled = false;
  /// false: requests to change the line settings (baud, data bits, parity,
  /// stop bits, flow control) leave the port alone and are answered with the
  /// values in effect. DTR, RTS, break and purges still act.
  bool allow_settings = true;
};

/// Everything a serial route says about its device.
struct SerialBackendConfig {
  std::string path;  ///< absolute; symlinks (/dev/serial/by-id/...) followed on every open
  SerialSettings settings;
  SerialOpenOptions open_options;  ///< lock directory
  SerialClients clients = SerialClients::exclusive;
  std::vector<Cidr> readonly_clients;  ///< see the device's output; their input is discarded
  SerialPacking packing;
  SerialOpen open = SerialOpen::on_connect;
  DeviceMissing on_missing = DeviceMissing::refuse;
  uint64_t device_wait_ms = 10000;  ///< with DeviceMissing::wait
  DeviceLoss on_loss = DeviceLoss::close;
  Rfc2217Options rfc2217;  ///< off: the clients' bytes are the device's bytes

  /// 0, or -EINVAL with `why` naming the first bad value and its fix
  /// (settings.validate(), a delimiter of 0 or more than 2 bytes, ...).
  int validate(std::string &why) const;
};

/// Counters of one serial backend. Written by the loop thread, read by any.
struct SerialCounters {
  std::atomic<uint64_t> opens{0};   ///< successful device opens
  std::atomic<uint64_t> losses{0};  ///< device gone while open
  std::atomic<uint64_t> bytes_from_device{0};
  std::atomic<uint64_t> bytes_to_device{0};
  std::atomic<uint64_t> discarded_no_client{0};  ///< device output with nobody to take it
  std::atomic<uint64_t> discarded_readonly{0};   ///< input from read-only clients
  std::atomic<uint64_t> refused_busy{0};     ///< clients refused: port in use (exclusive) or held by another program
  std::atomic<uint64_t> refused_missing{0};  ///< clients refused or timed out: device missing
  std::atomic<uint64_t> kicked{0};           ///< clients closed by a newcomer (kick-old)
  std::atomic<uint64_t> dropped_slow{0};     ///< shared mode: clients dropped past their output limit
};

/// Connects a listener's clients to one serial device. The handler of a
/// serial route: install it with Server::listen()/adopt() like a Forwarder.
///
/// Behaviour in brief: client -> device, each message goes to the device as
/// the route framed it (raw: the bytes as read; line: the line and its
/// '\n'; u16be/u32be: the payload), whole, through a bounded queue that
/// pauses the sending client when full. Device -> clients, each packet (see
/// SerialPacking) is sent with send() on raw routes and as one message on
/// framed ones. The exclusive writer is backpressured (the device is not
/// read while its queue is full); any other client that cannot take a
/// packet is dropped (dropped_slow). A client's EOF closes it. Each change
/// of the device's state (open, missing, busy, unusable, lost, back,
/// closed) is logged once, at info or warning level.
///
/// RFC 2217 (config.rfc2217.enabled; raw framing). Each client is a Telnet
/// session. On connect the server offers WILL BINARY, DO BINARY, WILL SGA and
/// DO COM-PORT-OPTION, agrees to the same options asked the other way (the
/// client's WILL COM-PORT-OPTION, pyserial's DO SGA), and refuses every other
/// option (ECHO included: the device, not the gateway, echoes). Data bytes go
/// to the device as on a raw route; device output is IAC-escaped. COM-PORT
/// requests act on the port and are answered, always with the value in
/// effect afterwards (a client such as pyserial refuses a different value,
/// which is how it learns of a refusal). Notes:
///  * The line settings are the port's: with shared clients one client's
///    change is every client's. They last until the device closes; the next
///    open uses the route's settings again.
///  * Parity and data bits are answered from SerialPort::settings() (what was
///    applied), since a pty's driver keeps neither; baud and stop bits are
///    verified by set_settings(). 1.5 stop bits are answered with the value
///    in effect (SerialSettings has 1 and 2).
///  * A device without modem lines (a pty: set_modem_lines() is -ENOTSUP) or
///    without break (qemu-user: set_break() is -ENOSYS) keeps DTR, RTS and
///    break as a virtual state and answers it, logging once per open at info
///    (DTR and RTS start at the route's dtr/rts, else on), so that
///    pyserial, which sets DTR and RTS on every open and waits for the same
///    value back, works on it. A break ends after at most max_break_ms, or
///    when the client that began it leaves.
///  * NOTIFY-MODEMSTATE: sent once when a client agrees to COM-PORT, then on
///    changes of the lines in its mask (default 255), polled with TIOCMGET
///    every modem_poll_ms while a client wants them and the device has modem
///    lines. NOTIFY-LINESTATE: the mask is stored and answered, but raw reads
///    carry no error or break events, so no line state is ever sent.
///  * FLOWCONTROL-SUSPEND: device output for that client is held (bounded by
///    its max_output) until FLOWCONTROL-RESUME; the exclusive writer's hold
///    pauses device reading, as its backpressure does; any other client past
///    the bound is dropped as a slow one.
///  * Read-only clients negotiate, but their data and SET requests are
///    ignored (the answers carry the values in effect).
///  * Hostile input is bounded: a subnegotiation past
///    telnet::Decoder::max_subnegotiation is dropped, not grown; replies to a
///    negotiation flood go through the client's output limit, and a client
///    that does not read them is dropped.
///
/// Lifetime and threading: created on the loop thread of the server whose
/// listeners it serves; must outlive them and not outlive the loop (its
/// device fd, watch and timers live there). Loop thread only, except
/// counters(). Ownership: owns the SerialPort while the device is open, the
/// DeviceWatch while it waits for the device, and its timers; holds plain
/// pointers to its clients' Connections, dropped in on_close.
class SerialBackend final : public ConnectionHandler {
 public:
  /// Validates `config` and, with SerialOpen::always, tries the device at
  /// once (a missing device is not an error: it is watched for). `label`
  /// names it in logs ("serial:/dev/ttyUSB0"). Returns 0, or -EINVAL with
  /// `why`.
  static int create(std::unique_ptr<SerialBackend> &out, EventLoop &loop, const Logger &logger,
                    SerialBackendConfig config, std::string label, std::string &why);
  ~SerialBackend();

  void on_open(Connection &conn) override;
  void on_message(Connection &conn, const uint8_t *data, size_t length) override;
  void on_drain(Connection &conn) override;
  bool on_peer_eof(Connection &conn) override;
  bool on_stop(Connection &conn) override;
  void on_close(Connection &conn, CloseReason reason) override;

  const SerialBackendConfig &config() const noexcept;
  const std::string &label() const noexcept;
  const SerialCounters &counters() const noexcept;
  /// True while the device is open.
  bool device_open() const noexcept;

  class Impl;

 private:
  explicit SerialBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw
