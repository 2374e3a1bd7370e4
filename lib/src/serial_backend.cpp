// SPDX-License-Identifier: MIT
// SerialBackend: a listener's clients and one serial device, with the client
// policies, packing and hot-plug of a device server (issue 9).
#include "gw/serial_backend.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "gw/buffer.hpp"
#include "gw/connection.hpp"
#include "gw/device_watch.hpp"
#include "gw/event_loop.hpp"
#include "serial_packer.hpp"

namespace gw {
namespace {

// Client -> device bytes queued past this pause the client that sent them
// (nothing is lost: the client's socket holds the rest); below a quarter of
// it the paused clients read again.
constexpr size_t device_queue_limit = 64 * 1024;
// How often a port held by another program is tried again: a lock file or
// TIOCEXCL going away makes no inotify event.
constexpr uint64_t busy_retry_ms = 1000;

int fail(std::string &why, std::string text) {
  why = std::move(text);
  return -EINVAL;
}

// The node `path` names now (symlinks followed), so that a watch started
// after a failed open does not call back for the same node again.
bool node_at(const std::string &path, DeviceNode &node) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  node.dev = st.st_dev;
  node.ino = st.st_ino;
  node.rdev = st.st_rdev;
  node.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return true;
}

}  // namespace

int SerialBackendConfig::validate(std::string &why) const {
  if (path.empty() || path[0] != '/')
    return fail(why, "serial device path \"" + path + "\" is not absolute: write it from the root, as in /dev/ttyUSB0");
  if (int rc = settings.validate(why)) return rc;
  if (packing.delimiter.size() > 2)
    return fail(why, "delimiter has " + std::to_string(packing.delimiter.size()) +
                         " bytes: a packet delimiter is one or two bytes, as in \"\\r\\n\"");
  if (on_missing == DeviceMissing::wait && device_wait_ms == 0)
    return fail(why, "device_wait is 0 with on_device_missing = \"wait\": give a time, as in \"10s\", or use \"refuse\"");
  return 0;
}

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
  };
  /// What the device is doing, for logging each change once.
  enum class Phase { closed, open, missing, busy, lost };

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
  void lose_device(const std::string &what);
  void enter_phase(Phase phase, const std::string &detail);

  void read_device();
  void write_device();
  void update_interest();
  void deliver(const uint8_t *data, size_t length);
  bool deliver_to(Connection &conn, const uint8_t *data, size_t length);
  void queue_for_device(Client &client, const uint8_t *data, size_t length, bool add_newline);
  void resume_writers();
  void set_clients_reading(bool reading);
  void on_wait_timer();
  void arm_wait_timer();
  void say_and_close(Connection &conn, const std::string &line);

  EventLoop &loop_;
  Logger logger_;
  std::vector<Client> clients_;
  Buffer to_device_;
  uint32_t interest_ = 0;
  bool paused_for_client_ = false;  // exclusive writer's queue is full: the device is not read
  Phase phase_ = Phase::closed;
  DeviceNode last_node_;
  bool has_last_node_ = false;
  SerialPacker packer_;
  std::unique_ptr<DeviceWatch> watch_;
  Timer busy_timer_;   // retries a port held by another program
  Timer wait_timer_;   // the earliest waiting client's device_wait deadline
  Timer idle_timer_;   // closes an on-connect device after the last client, outside its callbacks
};

SerialBackend::Impl::Impl(EventLoop &loop, const Logger &logger, SerialBackendConfig config, std::string label)
    : config_(std::move(config)),
      label_(std::move(label)),
      loop_(loop),
      logger_(logger),
      packer_(loop, config_.packing,
              config_.packing.idle_gap_tenth_chars ? config_.settings.chars_time_us(config_.packing.idle_gap_tenth_chars)
                                                   : config_.packing.idle_gap_us,
              EventLoop::scratch_size, [this](const uint8_t *data, size_t length) { deliver(data, length); }),
      busy_timer_(loop, [this] { retry_device(); }),
      wait_timer_(loop, [this] { on_wait_timer(); }),
      idle_timer_(loop, [this] { close_if_idle(); }) {}

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
  idle_timer_.stop();
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

void SerialBackend::Impl::client_closed(Connection &conn) { detach(conn); }

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
    if (client.wait_deadline_ms && (!earliest || client.wait_deadline_ms < earliest)) earliest = client.wait_deadline_ms;
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
  last_node_ = port_->node();
  has_last_node_ = true;
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
  if (!to_device_.empty()) write_device();
}

// Logs the change once (a device still missing at the next try is not news)
// and waits for it: a retry timer for a port held by another program (its
// lock going away makes no inotify event), else the inotify watch.
void SerialBackend::Impl::device_unavailable(int rc, const std::string &why) {
  const bool busy = rc == -EBUSY;
  if (phase_ != Phase::lost || busy) enter_phase(busy ? Phase::busy : Phase::missing, why);
  if (busy) return busy_timer_.start(busy_retry_ms);
  DeviceNode node;
  const bool exists = node_at(config_.path, node);
  watch_device(exists ? &node : nullptr);
}

// Waits for the device with inotify; `gone`: a node that does not count.
void SerialBackend::Impl::watch_device(const DeviceNode *gone) {
  std::string why;
  if (!watch_) {
    int rc = DeviceWatch::create(watch_, loop_, config_.path, [this] { retry_device(); }, why);
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
}

// The last client of an on-connect device has gone: close it once the
// bytes its clients sent have reached it.
void SerialBackend::Impl::close_if_idle() {
  if (!clients_.empty() || config_.open == SerialOpen::always) return;
  if (port_ && !to_device_.empty()) return;  // write_device() calls again once drained
  to_device_.release();
  if (port_) {
    close_device();
    enter_phase(Phase::closed, "");
  }
  if (watch_) watch_->stop();
  busy_timer_.stop();
}

void SerialBackend::Impl::lose_device(const std::string &what) {
  packer_.flush();  // bytes already read still reach the clients
  const DeviceNode gone = port_->node();
  close_device();
  Stats::add(counters_.losses, 1);
  enter_phase(Phase::lost, what);
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
  if (device_wanted()) watch_device(&gone);
}

void SerialBackend::Impl::enter_phase(Phase phase, const std::string &detail) {
  if (phase == phase_) return;
  const Phase previous = phase_;
  phase_ = phase;
  const char *name = label_.c_str();
  switch (phase) {
    case Phase::open:
      if (previous == Phase::lost)
        logger_.log(LogLevel::warning, "%s: device back (%s)", name, detail.c_str());
      else
        logger_.log(LogLevel::info, "%s: device open (%s)", name, detail.c_str());
      return;
    case Phase::lost:
      logger_.log(LogLevel::warning, "%s: device lost (%s); watching for its return", name, detail.c_str());
      return;
    case Phase::missing:
      logger_.log(LogLevel::warning, "%s: device missing: %s", name, detail.c_str());
      return;
    case Phase::busy:
      logger_.log(LogLevel::warning, "%s: device busy: %s", name, detail.c_str());
      return;
    case Phase::closed:
      if (previous == Phase::open) logger_.log(LogLevel::info, "%s: device closed (no client)", name);
      return;
  }
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
      const size_t queued = current->conn->queued_output() + packer_.held();
      room = std::min(room, limits.max_output > queued ? limits.max_output - queued : 0);
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
  for (const Client &client : clients_) {
    if (!deliver_to(*client.conn, data, length)) slow.push_back(client.conn);
    if (current && current->conn == client.conn && client.conn->queued_output() > client.conn->config().high_water)
      paused_for_client_ = true;
  }
  for (Connection *conn : slow) {
    Stats::add(counters_.dropped_slow, 1);
    logger_.log(LogLevel::warning, "%s: dropping %s: it does not read the device's output fast enough (%zu bytes queued)",
                label_.c_str(), conn->peer().to_string().c_str(), conn->queued_output());
    detach(*conn);
    conn->abort(CloseReason::limit);
  }
}

// False when the client's queue cannot take the packet.
bool SerialBackend::Impl::deliver_to(Connection &conn, const uint8_t *data, size_t length) {
  const ListenerConfig &limits = conn.config();
  // Device output is traffic for the idle timeout on every framing: a client
  // that only reads (a dashboard) stays while the device talks.
  conn.mark_active();
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
