// SPDX-License-Identifier: MIT
// SerialBackend::Impl, the state behind the serial backend. Internal: shared
// by serial_backend.cpp (clients, policies) and serial_backend_device.cpp
// (the device: open, loss, watch, I/O, delivery).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gw/buffer.hpp"
#include "gw/connection.hpp"
#include "gw/device_watch.hpp"
#include "gw/event_loop.hpp"
#include "gw/serial_backend.hpp"
#include "gw/telnet.hpp"
#include "serial_packer.hpp"

namespace gw {

namespace serial_limits {
// Client -> device bytes queued past this pause the client that sent them
// (nothing is lost: the client's socket holds the rest); below a quarter of
// it the paused clients read again.
constexpr size_t device_queue_limit = 64 * 1024;
// How often a port held by another program is tried again: a lock file or
// TIOCEXCL going away makes no inotify event.
constexpr uint64_t busy_retry_ms = 1000;
// How long an on-connect device stays open after its last client to take
// the bytes still queued for it.
constexpr uint64_t idle_drain_ms = 2000;
constexpr uint64_t driver_drain_check_ms = 5;
// RFC 2217: how often modem lines are polled while a client wants them, and
// the longest break a client can leave on.
constexpr uint64_t modem_poll_ms = 100;
constexpr uint64_t max_break_ms = 5000;
// Replies are handed to the client in pieces of about this size while its
// input is decoded, so that a flood meets the client's output limit early.
constexpr size_t telnet_reply_chunk = 4096;
}  // namespace serial_limits

/// One client's Telnet session on an rfc2217 route. Owned by its Client
/// (and, while its input is decoded, by telnet_input()).
struct Rfc2217Session {
  static telnet::Options::Supported supported() noexcept;
  telnet::Decoder decoder;
  telnet::Options options{supported()};
  uint8_t modemstate_mask = 255;  // RFC 2217's default
  uint8_t linestate_mask = 0;
  bool com_port = false;         // the client agreed to COM-PORT-OPTION
  bool suspended = false;        // FLOWCONTROL-SUSPEND: device output is held
  bool overflow_logged = false;  // one warning per session for oversized subnegotiations
  Buffer held;                   // escaped device output held while suspended
  std::string replies;           // built while its input is decoded
};

/// The state behind SerialBackend. Owns the port (while the device is open),
/// the watch and the timers; holds plain pointers to its clients, removed
/// when they close. Loop thread only; the device fd's events come to on_io.
class SerialBackend::Impl final : public IoHandler {
 public:
  /// One client attached to the device (served, or held while it is away).
  struct Client {
    Connection *conn;
    bool readonly;
    bool paused_for_queue = false;  // its input waits for the device queue to drain
    uint64_t wait_deadline_ms = 0;  // DeviceMissing::wait: refused at this time
    // rfc2217 routes only; shared so that a session being decoded outlives
    // its client's detach (a device lost while the input is queued).
    std::shared_ptr<Rfc2217Session> telnet{};
  };
  /// What the device is doing, for logging each change once.
  enum class Phase { closed, open, missing, busy, unusable, lost };

  Impl(EventLoop &loop, const Logger &logger, SerialBackendConfig config, std::string label);
  ~Impl();

  void client_opened(Connection &conn);
  void client_message(Connection &conn, const uint8_t *data, size_t length);
  void client_drained(Connection &conn);
  void client_closed(Connection &conn);
  void start_always();
  void on_io(uint32_t events) override;

  SerialBackendConfig config_;
  std::string label_;
  SerialCounters counters_;
  std::unique_ptr<SerialPort> port_;

 private:
  Client *find(Connection &conn);
  Client *writer();
  bool admit(Connection &conn);
  void refuse(Connection &conn, const std::string &line, std::atomic<uint64_t> &counter);
  void detach(Connection &conn);
  void after_client_left();
  bool device_wanted() const noexcept;

  int open_device(std::string &why);
  int try_device(std::string &why);
  void retry_device();
  void device_ready();
  void device_unavailable(int rc, const std::string &why);
  void watch_device(const DeviceNode *gone);
  void close_device() noexcept;
  void close_if_idle();
  bool drained() const;
  void lose_device(const std::string &what);
  void enter_phase(Phase phase, const std::string &detail);
  static Phase phase_for(int rc) noexcept;
  static const char *phase_name(Phase phase) noexcept;

  void read_device();
  void write_device();
  void update_interest();
  void deliver(const uint8_t *data, size_t length);
  bool deliver_to(Client &client, const uint8_t *data, size_t length);
  void queue_for_device(Client &client, const uint8_t *data, size_t length, bool add_newline);
  void resume_writers();
  void set_clients_reading(bool reading);
  void on_wait_timer();
  void arm_wait_timer();
  void say_and_close(Connection &conn, const std::string &line);
  size_t queued_for(const Client &client) const noexcept;

  // RFC 2217 (serial_backend_rfc2217.cpp).
  class TelnetInput;
  void telnet_opened(Client &client);
  void telnet_input(Connection &conn, const uint8_t *data, size_t length);
  bool send_replies(Connection &conn, Rfc2217Session &session);
  void telnet_negotiated(Client &client, uint8_t command, uint8_t option);
  void telnet_request(Client &client, const telnet::ComPortRequest &request);
  void answer_line_setting(Client &client, const telnet::ComPortRequest &request);
  void answer_control(Client &client, uint8_t value);
  uint8_t control_state(uint8_t query);
  void set_control(Client &client, uint8_t value);
  void change_settings(Client &client, const SerialSettings &next);
  void purge(uint8_t value);
  void begin_com_port(Client &client);
  bool read_modem_state(uint8_t &state);
  void poll_modem_lines();
  void update_modem_poll();
  void end_break();
  void telnet_suspend(Client &client, bool suspend);
  bool deliver_telnet(Client &client, const uint8_t *data, size_t length);
  void telnet_closed(Connection &conn);

  EventLoop &loop_;
  Logger logger_;
  std::vector<Client> clients_;
  Buffer to_device_;
  uint32_t interest_ = 0;
  bool paused_for_client_ = false;  // exclusive writer's queue is full: the device is not read
  Phase phase_ = Phase::closed;
  SerialPacker packer_;
  std::unique_ptr<DeviceWatch> watch_;
  Timer busy_timer_;                // retries a port held by another program
  Timer wait_timer_;                // the earliest waiting client's device_wait deadline
  Timer idle_timer_;                // closes an on-connect device after the last client, outside its callbacks
  uint64_t drain_deadline_ms_ = 0;  // idle, waiting (bounded) for the last bytes to reach the device

  // RFC 2217 state of the port, shared by its sessions.
  Timer modem_timer_;                  // polls modem lines while a session wants them
  Timer break_timer_;                  // ends a break a client left on
  Connection *break_owner_ = nullptr;  // the client whose break is on
  bool break_on_ = false;
  bool virtual_dtr_ = true, virtual_rts_ = true;  // answered where the device has no modem lines
  bool no_modem_lines_ = false;                   // logged once per open; no polling
  bool no_break_logged_ = false;
  uint8_t last_modem_state_ = 0;  // the last poll, for the delta bits
  std::string escaped_;           // device output escaped for the sessions, reused
};

}  // namespace gw
