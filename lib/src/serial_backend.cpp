// SPDX-License-Identifier: MIT
// SerialBackend: a listener's clients and one serial device, with the client
// policies, packing and hot-plug of a device server (issue 9). This file:
// the configuration, the clients and their policies; the device side is in
// serial_backend_device.cpp.
#include "gw/serial_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "serial_backend_impl.hpp"

namespace gw {
namespace {

int fail(std::string &why, std::string text) {
  why = std::move(text);
  return -EINVAL;
}

}  // namespace

using namespace serial_limits;

int SerialBackendConfig::validate(std::string &why) const {
  if (path.empty() || path[0] != '/')
    return fail(why, "serial device path \"" + path + "\" is not absolute: write it from the root, as in /dev/ttyUSB0");
  if (int rc = settings.validate(why)) return rc;
  if (packing.delimiter.size() > 2)
    return fail(why, "delimiter has " + std::to_string(packing.delimiter.size()) +
                         " bytes: a packet delimiter is one or two bytes, as in \"\\r\\n\"");
  if (on_missing == DeviceMissing::wait && device_wait_ms == 0)
    return fail(why,
                "device_wait is 0 with on_device_missing = \"wait\": give a time, as in \"10s\", or use \"refuse\"");
  return 0;
}

SerialBackend::Impl::Impl(EventLoop &loop, const Logger &logger, SerialBackendConfig config, std::string label)
    : config_(std::move(config)),
      label_(std::move(label)),
      loop_(loop),
      logger_(logger),
      packer_(loop, config_.packing,
              config_.packing.idle_gap_tenth_chars
                  ? config_.settings.chars_time_us(config_.packing.idle_gap_tenth_chars)
                  : config_.packing.idle_gap_us,
              EventLoop::scratch_size, [this](const uint8_t *data, size_t length) { deliver(data, length); }),
      busy_timer_(loop, [this] { retry_device(); }),
      wait_timer_(loop, [this] { on_wait_timer(); }),
      idle_timer_(loop, [this] { close_if_idle(); }),
      modem_timer_(loop, [this] { poll_modem_lines(); }),
      break_timer_(loop, [this] { end_break(); }) {}

SerialBackend::Impl::~Impl() {
  watch_.reset();
  close_device();
}

// ---- clients ---------------------------------------------------------------

SerialBackend::Impl::Client *SerialBackend::Impl::find(Connection &conn) {
  for (Client &client : clients_) {
    if (client.conn == &conn) return &client;
  }
  return nullptr;
}

// The client whose input reaches the device in exclusive and kick-old mode.
SerialBackend::Impl::Client *SerialBackend::Impl::writer() {
  for (Client &client : clients_) {
    if (!client.readonly) return &client;
  }
  return nullptr;
}

void SerialBackend::Impl::client_opened(Connection &conn) {
  if (!admit(conn)) return;
  if (config_.rfc2217.enabled) telnet_opened(*find(conn));
  idle_timer_.stop();
  drain_deadline_ms_ = 0;
  if (port_) return;
  std::string why;
  const int rc = try_device(why);
  if (port_ || !find(conn)) return;
  if (config_.on_missing == DeviceMissing::refuse) {
    const bool busy = rc == -EBUSY;
    refuse(conn, label_ + (busy ? " is busy: " : " is not available: ") + why + "\n",
           busy ? counters_.refused_busy : counters_.refused_missing);
    return;
  }
  // Held: its input waits in its socket until the device is there.
  conn.pause_reading();
  // One more millisecond: the loop's clock counts whole ones, and the wait
  // must never be shorter than device_wait.
  find(conn)->wait_deadline_ms = EventLoop::now_ms() + config_.device_wait_ms + 1;
  arm_wait_timer();
}

// Applies the client policy; true when `conn` joined clients_.
bool SerialBackend::Impl::admit(Connection &conn) {
  bool readonly = false;
  const IpKey ip = ip_key(conn.peer());
  for (const Cidr &cidr : config_.readonly_clients) readonly = readonly || cidr.contains(ip);
  Client *current = readonly || config_.clients == SerialClients::shared ? nullptr : writer();
  if (current && config_.clients == SerialClients::exclusive) {
    refuse(conn, label_ + " is in use by another client\n", counters_.refused_busy);
    return false;
  }
  if (current) {
    Connection &old = *current->conn;
    logger_.log(LogLevel::info, "%s: %s takes the port over from %s", label_.c_str(), conn.peer().to_string().c_str(),
                old.peer().to_string().c_str());
    Stats::add(counters_.kicked, 1);
    detach(old);
    say_and_close(old, label_ + " was taken over by a new client from " + conn.peer().to_string() + "\n");
  }
  clients_.push_back(Client{&conn, readonly});
  return true;
}

void SerialBackend::Impl::refuse(Connection &conn, const std::string &line, std::atomic<uint64_t> &counter) {
  Stats::add(counter, 1);
  logger_.log(LogLevel::info, "%s: refusing %s: %.*s", label_.c_str(), conn.peer().to_string().c_str(),
              static_cast<int>(line.size() - 1), line.c_str());
  detach(conn);
  say_and_close(conn, line);
}

// One line to the client, then a graceful close (its output is flushed).
void SerialBackend::Impl::say_and_close(Connection &conn, const std::string &line) {
  conn.send(line.data(), line.size());
  conn.close(CloseReason::local);
}

void SerialBackend::Impl::detach(Connection &conn) {
  auto it = std::find_if(clients_.begin(), clients_.end(), [&](const Client &c) { return c.conn == &conn; });
  if (it == clients_.end()) return;
  clients_.erase(it);
  after_client_left();
}

void SerialBackend::Impl::client_closed(Connection &conn) {
  telnet_closed(conn);
  detach(conn);
}

void SerialBackend::Impl::after_client_left() {
  if (writer() == nullptr && paused_for_client_) {
    paused_for_client_ = false;
    update_interest();
  }
  if (!clients_.empty() || config_.open == SerialOpen::always) return;
  // Not from inside this callback: the caller may be in the middle of
  // delivering device bytes, which closing the device would pull away.
  idle_timer_.start(0);
  if (!port_) {
    // Nobody waits for it any more. The phase stays: a device still missing
    // for the next client is not logged again.
    if (watch_) watch_->stop();
    busy_timer_.stop();
    wait_timer_.stop();
  }
}

bool SerialBackend::Impl::device_wanted() const noexcept {
  return config_.open == SerialOpen::always || !clients_.empty();
}

void SerialBackend::Impl::client_message(Connection &conn, const uint8_t *data, size_t length) {
  Client *client = find(conn);
  if (!client) return;
  if (client->telnet) return telnet_input(conn, data, length);
  if (client->readonly) {
    Stats::add(counters_.discarded_readonly, length);
    return;
  }
  const bool add_newline = conn.config().framing == Framing::line && !conn.message_unterminated();
  queue_for_device(*client, data, length, add_newline);
}

// Whole messages only: each message is appended in one piece, so the bytes
// of two shared clients never interleave inside one.
void SerialBackend::Impl::queue_for_device(Client &client, const uint8_t *data, size_t length, bool add_newline) {
  to_device_.append(data, length);
  if (add_newline) to_device_.append("\n", 1);
  if (to_device_.size() > device_queue_limit && !client.paused_for_queue) {
    client.paused_for_queue = true;
    client.conn->pause_reading();
  }
  if (port_ && !(interest_ & EPOLLOUT)) write_device();
}

void SerialBackend::Impl::client_drained(Connection &conn) {
  Client *current = writer();
  if (!paused_for_client_ || !current || current->conn != &conn) return;
  paused_for_client_ = false;
  update_interest();
}

void SerialBackend::Impl::resume_writers() {
  if (to_device_.size() >= device_queue_limit / 4) return;
  for (Client &client : clients_) {
    if (!client.paused_for_queue) continue;
    client.paused_for_queue = false;
    client.conn->resume_reading();
  }
}

// Held clients do not read (their bytes wait in their sockets); served ones
// do, unless the device queue is full.
void SerialBackend::Impl::set_clients_reading(bool reading) {
  for (Client &client : clients_) {
    if (reading && !client.paused_for_queue)
      client.conn->resume_reading();
    else
      client.conn->pause_reading();
  }
}

void SerialBackend::Impl::arm_wait_timer() {
  uint64_t earliest = 0;
  for (const Client &client : clients_) {
    if (client.wait_deadline_ms && (!earliest || client.wait_deadline_ms < earliest))
      earliest = client.wait_deadline_ms;
  }
  if (!earliest) return wait_timer_.stop();
  const uint64_t now = EventLoop::now_ms();
  wait_timer_.start(earliest > now ? earliest - now : 0);
}

void SerialBackend::Impl::on_wait_timer() {
  const uint64_t now = EventLoop::now_ms();
  std::vector<Connection *> expired;
  for (const Client &client : clients_) {
    if (client.wait_deadline_ms && client.wait_deadline_ms <= now) expired.push_back(client.conn);
  }
  const std::string line = label_ + " did not appear within " + std::to_string(config_.device_wait_ms) + " ms\n";
  for (Connection *conn : expired) refuse(*conn, line, counters_.refused_missing);
  arm_wait_timer();
}

// ---- SerialBackend -----------------------------------------------------------

SerialBackend::SerialBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SerialBackend::~SerialBackend() = default;

int SerialBackend::create(std::unique_ptr<SerialBackend> &out, EventLoop &loop, const Logger &logger,
                          SerialBackendConfig config, std::string label, std::string &why) {
  loop.assert_in_loop_thread("SerialBackend::create");
  if (int rc = config.validate(why)) return rc;
  auto impl = std::make_unique<Impl>(loop, logger, std::move(config), std::move(label));
  std::unique_ptr<SerialBackend> backend(new SerialBackend(std::move(impl)));
  if (backend->impl_->config_.open == SerialOpen::always) backend->impl_->start_always();
  out = std::move(backend);
  return 0;
}

void SerialBackend::on_open(Connection &conn) { impl_->client_opened(conn); }
void SerialBackend::on_message(Connection &conn, const uint8_t *data, size_t length) {
  impl_->client_message(conn, data, length);
}
void SerialBackend::on_drain(Connection &conn) { impl_->client_drained(conn); }
// A client's EOF ends its session: the port is freed for the next client at
// once (what it queued is still flushed to it by the graceful close).
bool SerialBackend::on_peer_eof(Connection &) { return false; }
bool SerialBackend::on_stop(Connection &) { return false; }
void SerialBackend::on_close(Connection &conn, CloseReason) { impl_->client_closed(conn); }

const SerialBackendConfig &SerialBackend::config() const noexcept { return impl_->config_; }
const std::string &SerialBackend::label() const noexcept { return impl_->label_; }
const SerialCounters &SerialBackend::counters() const noexcept { return impl_->counters_; }
bool SerialBackend::device_open() const noexcept { return static_cast<bool>(impl_->port_); }

}  // namespace gw
