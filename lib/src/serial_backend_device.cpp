// SPDX-License-Identifier: MIT
// SerialBackend, the device side: opening it, waiting for it (inotify, or a
// retry for a port held by another program), losing it, its I/O and the
// delivery of its packets to the clients.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "serial_backend_impl.hpp"

namespace gw {

using namespace serial_limits;

// ---- the device --------------------------------------------------------------

void SerialBackend::Impl::start_always() { retry_device(); }

int SerialBackend::Impl::open_device(std::string &why) {
  std::unique_ptr<SerialPort> port;
  if (int rc = SerialPort::open(port, config_.path, config_.settings, config_.open_options, why)) return rc;
  if (int rc = loop_.add(port->fd(), EPOLLIN, this)) {
    why = label_ + ": cannot watch the device fd: " + std::strerror(-rc);
    return rc;
  }
  port_ = std::move(port);
  interest_ = EPOLLIN;
  paused_for_client_ = false;
  // RFC 2217's view of a new open: its own modem lines, the route's levels.
  no_modem_lines_ = false;
  virtual_dtr_ = config_.settings.dtr.value_or(true);
  virtual_rts_ = config_.settings.rts.value_or(true);
  last_modem_state_ = 0;
  Stats::add(counters_.opens, 1);
  return 0;
}

// Opens the device if it is wanted and not open: 0 once open, else the
// negated errno and `why`, with the device watched (or retried) from now on.
int SerialBackend::Impl::try_device(std::string &why) {
  busy_timer_.stop();
  if (port_ || !device_wanted()) return 0;
  const int rc = open_device(why);
  if (rc == 0) {
    device_ready();
    return 0;
  }
  device_unavailable(rc, why);
  return rc;
}

void SerialBackend::Impl::retry_device() {
  std::string why;
  try_device(why);
}

void SerialBackend::Impl::device_ready() {
  if (watch_) watch_->stop();
  busy_timer_.stop();
  enter_phase(Phase::open, port_->device() + ", " + port_->settings().summary());
  for (Client &client : clients_) client.wait_deadline_ms = 0;
  wait_timer_.stop();
  set_clients_reading(true);
  update_modem_poll();
  if (!to_device_.empty()) write_device();
}

// What an open's failure says about the device: gone, held by another
// program, or there but refused (permissions, not a tty, a setting its
// driver lacks: waiting for the node to change may still cure it).
SerialBackend::Impl::Phase SerialBackend::Impl::phase_for(int rc) noexcept {
  switch (rc) {
    case -EBUSY: return Phase::busy;
    case -ENOENT:
    case -ENODEV:
    case -ENXIO:
    case -ENOTDIR: return Phase::missing;
    default: return Phase::unusable;
  }
}

// Logs the change once (a device still missing at the next try is not news)
// and waits for it: a retry timer for a port held by another program (its
// lock going away makes no inotify event), else the inotify watch.
void SerialBackend::Impl::device_unavailable(int rc, const std::string &why) {
  const bool busy = rc == -EBUSY;
  if (phase_ != Phase::lost || busy) enter_phase(phase_for(rc), why);
  if (busy) return busy_timer_.start(busy_retry_ms);
  DeviceNode node;
  const bool exists = device_node_at(config_.path, node);
  watch_device(exists ? &node : nullptr);
}

// Waits for the device with inotify; `gone`: a node that does not count.
void SerialBackend::Impl::watch_device(const DeviceNode *gone) {
  std::string why;
  if (!watch_) {
    int rc = DeviceWatch::create(
        watch_, loop_, config_.path, [this] { retry_device(); }, why);
    if (rc) {
      logger_.log(LogLevel::error, "%s: %s", label_.c_str(), why.c_str());
      return;
    }
  }
  const int rc = gone ? watch_->start_after(*gone, why) : watch_->start(why);
  if (rc) logger_.log(LogLevel::error, "%s: %s", label_.c_str(), why.c_str());
}

void SerialBackend::Impl::close_device() noexcept {
  if (!port_) return;
  packer_.discard();
  loop_.remove(port_->fd());
  port_.reset();
  interest_ = 0;
  modem_timer_.stop();
  break_timer_.stop();
  break_on_ = false;
  break_owner_ = nullptr;
}

// The last client of an on-connect device has gone: close it once the
// bytes its clients sent have reached the line (our queue, then the
// driver's: closing discards what the driver still holds), or after
// idle_drain_ms if the device does not take them (a stopped flow must not
// keep the port and its lock forever).
void SerialBackend::Impl::close_if_idle() {
  if (!clients_.empty() || config_.open == SerialOpen::always) {
    drain_deadline_ms_ = 0;
    return;
  }
  if (port_ && !drained()) {
    const uint64_t now = EventLoop::now_ms();
    if (!drain_deadline_ms_) drain_deadline_ms_ = now + idle_drain_ms;
    if (now < drain_deadline_ms_) {
      // Our queue calls back from write_device() once empty; the driver's
      // queue has no event, so it is looked at again shortly.
      idle_timer_.start(to_device_.empty() ? driver_drain_check_ms : drain_deadline_ms_ - now);
      return;
    }
  }
  drain_deadline_ms_ = 0;
  idle_timer_.stop();
  to_device_.release();
  if (port_) {
    close_device();
    enter_phase(Phase::closed, "");
  }
  if (watch_) watch_->stop();
  busy_timer_.stop();
}

// True when nothing is left to send, here or in the driver.
bool SerialBackend::Impl::drained() const {
  size_t pending = 0;
  return to_device_.empty() && (port_->output_pending(pending) != 0 || pending == 0);
}

void SerialBackend::Impl::lose_device(const std::string &what) {
  packer_.flush();  // bytes already read still reach the clients
  const DeviceNode gone = port_->node();
  close_device();
  Stats::add(counters_.losses, 1);
  if (config_.on_loss == DeviceLoss::close) {
    to_device_.release();
    std::vector<Connection *> closing;
    for (const Client &client : clients_) closing.push_back(client.conn);
    const std::string line = label_ + ": the device was lost (" + what + ")\n";
    for (Connection *conn : closing) {
      detach(*conn);
      say_and_close(*conn, line);
    }
  } else {
    set_clients_reading(false);
  }
  // Logged once the clients are handled: only then is it known whether
  // anyone still wants the device back.
  const bool wanted = device_wanted();
  enter_phase(Phase::lost, what + (wanted ? "; watching for its return" : ""));
  if (wanted) watch_device(&gone);
}

void SerialBackend::Impl::enter_phase(Phase phase, const std::string &detail) {
  if (phase == phase_) return;
  const Phase previous = phase_;
  phase_ = phase;
  if (phase == Phase::closed && previous != Phase::open) return;  // it was never open: nothing changed
  const bool back = phase == Phase::open && previous == Phase::lost;
  const bool news = phase == Phase::closed || (phase == Phase::open && !back);
  logger_.log(news ? LogLevel::info : LogLevel::warning, "%s: device %s (%s)", label_.c_str(),
              back ? "back" : phase_name(phase), phase == Phase::closed ? "no client" : detail.c_str());
}

const char *SerialBackend::Impl::phase_name(Phase phase) noexcept {
  switch (phase) {
    case Phase::closed: return "closed";
    case Phase::open: return "open";
    case Phase::missing: return "missing";
    case Phase::busy: return "busy";
    case Phase::unusable: return "unusable";
    case Phase::lost: return "lost";
  }
  return "?";
}

// ---- device I/O --------------------------------------------------------------

void SerialBackend::Impl::on_io(uint32_t events) {
  if (!port_) return;  // closed earlier in this batch
  if (paused_for_client_ && !(events & (EPOLLHUP | EPOLLERR))) events &= ~static_cast<uint32_t>(EPOLLIN);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (paused_for_client_) {
      // Not reading now: only a real hang-up counts (the event may be a late
      // one of a port closed earlier in this batch under the same fd).
      if (port_->check_alive() != 0) return lose_device("hang-up");
    } else {
      read_device();
      if (!port_) return;
    }
  }
  if (events & EPOLLOUT) write_device();
}

void SerialBackend::Impl::read_device() {
  uint8_t *scratch = loop_.scratch();
  for (int round = 0; round < 4 && port_ && !paused_for_client_; ++round) {
    size_t room = EventLoop::scratch_size;
    Client *current = config_.clients == SerialClients::shared ? nullptr : writer();
    if (current) {
      // Never read more than the writer can queue: read bytes must not be dropped.
      const ListenerConfig &limits = current->conn->config();
      const size_t queued = queued_for(*current) + packer_.held();
      room = std::min(room, limits.max_output > queued ? limits.max_output - queued : 0);
      // Escaping may double what was read (every byte 0xFF).
      if (current->telnet) room /= 2;
    }
    if (room == 0) {
      paused_for_client_ = true;
      break;
    }
    const ssize_t n = ::read(port_->fd(), scratch, room);
    if (n > 0) {
      Stats::add(counters_.bytes_from_device, static_cast<uint64_t>(n));
      packer_.feed(scratch, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < room) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return lose_device(n == 0 ? "hang-up" : std::strerror(errno));
  }
  update_interest();
}

void SerialBackend::Impl::write_device() {
  while (port_ && !to_device_.empty()) {
    const ssize_t n = ::write(port_->fd(), to_device_.data(), to_device_.size());
    if (n > 0) {
      to_device_.consume(static_cast<size_t>(n));
      Stats::add(counters_.bytes_to_device, static_cast<uint64_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return lose_device(std::strerror(n < 0 ? errno : EIO));
  }
  update_interest();
  resume_writers();
  if (to_device_.empty() && clients_.empty()) close_if_idle();
}

void SerialBackend::Impl::update_interest() {
  if (!port_) return;
  uint32_t want = paused_for_client_ ? 0u : static_cast<uint32_t>(EPOLLIN);
  if (!to_device_.empty()) want |= EPOLLOUT;
  if (want == interest_) return;
  interest_ = want;
  loop_.modify(port_->fd(), want, this);
}

// One packet from the device to every client. The writer of an exclusive
// port is backpressured (the device is not read while its queue is full);
// any other client that cannot take it is dropped, so that it never stalls
// the device or the others.
void SerialBackend::Impl::deliver(const uint8_t *data, size_t length) {
  if (clients_.empty()) {
    Stats::add(counters_.discarded_no_client, length);
    return;
  }
  std::vector<Connection *> slow;
  Client *current = config_.clients == SerialClients::shared ? nullptr : writer();
  for (Client &client : clients_) {
    if (!deliver_to(client, data, length)) slow.push_back(client.conn);
    if (current && current->conn == client.conn && queued_for(client) > client.conn->config().high_water)
      paused_for_client_ = true;
  }
  for (Connection *conn : slow) {
    Stats::add(counters_.dropped_slow, 1);
    logger_.log(LogLevel::warning,
                "%s: dropping %s: it does not read the device's output fast enough (%zu bytes queued)", label_.c_str(),
                conn->peer().to_string().c_str(), conn->queued_output());
    detach(*conn);
    conn->abort(CloseReason::limit);
  }
}

// False when the client's queue cannot take the packet.
bool SerialBackend::Impl::deliver_to(Client &client, const uint8_t *data, size_t length) {
  Connection &conn = *client.conn;
  const ListenerConfig &limits = conn.config();
  // Device output is traffic for the idle timeout on every framing: a client
  // that only reads (a dashboard) stays while the device talks.
  conn.mark_active();
  if (client.telnet) return deliver_telnet(client, data, length);
  if (limits.framing == Framing::raw) return length == 0 || conn.send(data, length) != -EAGAIN;
  // A packet longer than the route's max_frame goes out as several messages.
  do {
    const size_t piece = std::min(length, limits.max_frame);
    if (conn.send_message(data, piece) == -EAGAIN) return false;
    data += piece;
    length -= piece;
  } while (length > 0);
  return true;
}

// What the client has still to take: its socket queue and, while an rfc2217
// client has suspended the flow, the output held for it.
size_t SerialBackend::Impl::queued_for(const Client &client) const noexcept {
  return client.conn->queued_output() + (client.telnet ? client.telnet->held.size() : 0);
}

}  // namespace gw
