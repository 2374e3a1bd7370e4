// SPDX-License-Identifier: MIT
// The C facade. It only translates: it checks arguments and threads at the
// edge, converts options to the core's structs, maps C callbacks onto the
// core's ConnectionHandler, and turns every exception into an error code.
#include "gateway/gateway.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "gw/address.hpp"
#include "gw/errors.hpp"
#include "gw/fd.hpp"
#include "gw/forwarder.hpp"
#include "gw/resolver.hpp"
#include "gw/serial.hpp"
#include "gw/serial_backend.hpp"
#include "gw/server.hpp"
#include "gw/systemd.hpp"

// The core's codes and reasons are made from the same tables as the C ones;
// these check, row by row, that both sides still take them from there.
#define GW_CHECK_ERR_XX(name, value, text) \
  static_assert(GW_##name == gw::err::name, "gw::err::" #name " is not GW_" #name);
GW_ERRNO_GATEWAY_MAP(GW_CHECK_ERR_XX)
#undef GW_CHECK_ERR_XX
#define GW_CHECK_CLOSE_XX(NAME, name, value, text)                          \
  static_assert(static_cast<int>(gw::CloseReason::name) == GW_CLOSE_##NAME, \
                "gw::CloseReason::" #name " is not GW_CLOSE_" #NAME);
GW_CLOSE_REASON_MAP(GW_CHECK_CLOSE_XX)
#undef GW_CHECK_CLOSE_XX
static_assert(static_cast<int>(gw::Framing::u32be) == GW_FRAMING_U32BE, "framings differ");
// The serial options' enums: each C row's value is the core enumerator it
// names, so that converting is a cast of a value checked to be in the table.
#define GW_CHECK_ENUM_XX(prefix, core_enum, NAME, core, value)                 \
  static_assert(static_cast<int>(gw::core_enum::core) == GW_##prefix##_##NAME, \
                "gw::" #core_enum "::" #core " is not GW_" #prefix "_" #NAME);
#define GW_CHECK_PARITY_XX(NAME, core, value) GW_CHECK_ENUM_XX(PARITY, Parity, NAME, core, value)
GW_PARITY_MAP(GW_CHECK_PARITY_XX)
#define GW_CHECK_FLOW_XX(NAME, core, value) GW_CHECK_ENUM_XX(FLOW_CONTROL, FlowControl, NAME, core, value)
GW_FLOW_CONTROL_MAP(GW_CHECK_FLOW_XX)
#define GW_CHECK_CLIENTS_XX(NAME, core, value) GW_CHECK_ENUM_XX(SERIAL_CLIENTS, SerialClients, NAME, core, value)
GW_SERIAL_CLIENTS_MAP(GW_CHECK_CLIENTS_XX)
#define GW_CHECK_OPEN_XX(NAME, core, value) GW_CHECK_ENUM_XX(SERIAL_OPEN, SerialOpen, NAME, core, value)
GW_SERIAL_OPEN_MAP(GW_CHECK_OPEN_XX)
#define GW_CHECK_MISSING_XX(NAME, core, value) GW_CHECK_ENUM_XX(DEVICE_MISSING, DeviceMissing, NAME, core, value)
GW_DEVICE_MISSING_MAP(GW_CHECK_MISSING_XX)
#define GW_CHECK_LOSS_XX(NAME, core, value) GW_CHECK_ENUM_XX(DEVICE_LOSS, DeviceLoss, NAME, core, value)
GW_DEVICE_LOSS_MAP(GW_CHECK_LOSS_XX)
#undef GW_CHECK_PARITY_XX
#undef GW_CHECK_FLOW_XX
#undef GW_CHECK_CLIENTS_XX
#undef GW_CHECK_OPEN_XX
#undef GW_CHECK_MISSING_XX
#undef GW_CHECK_LOSS_XX
#undef GW_CHECK_ENUM_XX

struct gw_timer;

/// The C server: the core server plus what the C API adds (its listener
/// wrappers, its timers, the resolver of its forward listeners' host names,
/// and deferred self-destruction from callbacks).
struct gw_server {
  gw_log_fn log = nullptr;
  void *log_user_data = nullptr;
  std::unique_ptr<gw::Server> core;
  std::vector<std::unique_ptr<gw_listener>> listeners;
  std::vector<gw_timer *> timers;
  // Shared by the forward listeners whose backend is a host name, created
  // with the first one (as gatewayd's Daemon does). It must be destroyed
  // before core's loop: ~gw_server drops this reference before core.reset(),
  // and the Forwarders that still hold it go with core's listeners, which
  // the core frees before its loop.
  std::shared_ptr<gw::Resolver> resolver;
  // run/dispatch frames on the loop thread's stack (callbacks may nest
  // gw_server_dispatch()), and the teardown's own frame while it runs the
  // last posts. Only the frame that brings it back to 0 may free the server.
  int dispatch_depth = 0;
  bool destroy_pending = false;  // gw_server_destroy() was called from a callback

  ~gw_server();
};

/// One C listener: a ConnectionHandler that calls the C callbacks, or, for
/// gw_listener_create_serial()/_forward(), the owner of the backend that
/// handles its clients instead (then the callbacks are all null).
struct gw_listener final : gw::ConnectionHandler {
  gw_server *owner = nullptr;
  gw::Listener *core = nullptr;
  // The backend (a SerialBackend or a Forwarder), or null. Shared with the
  // core listener, which needs it for as long as it has connections: the
  // core frees its listeners, and with them this handler, before its loop,
  // where the backend's fds and timers live. ~gw_server drops this reference
  // before core.reset(), so that the core's is the last.
  std::shared_ptr<gw::ConnectionHandler> backend;
  gw_open_fn on_open_fn = nullptr;
  gw_message_fn on_message_fn = nullptr;
  gw_close_fn on_close_fn = nullptr;
  gw_drain_fn on_drain_fn = nullptr;
  void *user_data = nullptr;

  void on_open(gw::Connection &conn) override {
    if (on_open_fn) on_open_fn(to_c(conn), user_data);
  }
  void on_message(gw::Connection &conn, const uint8_t *data, size_t length) override {
    if (on_message_fn) on_message_fn(to_c(conn), data, length, user_data);
  }
  void on_close(gw::Connection &conn, gw::CloseReason reason) override {
    if (on_close_fn) on_close_fn(to_c(conn), static_cast<gw_close_reason>(reason), user_data);
  }
  void on_drain(gw::Connection &conn) override {
    if (on_drain_fn) on_drain_fn(to_c(conn), user_data);
  }
  static gw_conn_t *to_c(gw::Connection &conn) { return reinterpret_cast<gw_conn_t *>(&conn); }
};

struct gw_timer {
  gw_server *owner = nullptr;
  gw_timer_fn fn = nullptr;
  void *user_data = nullptr;
  std::unique_ptr<gw::Timer> core;
};

namespace {

gw::Connection *core_of(gw_conn_t *conn) { return reinterpret_cast<gw::Connection *>(conn); }
const gw::Connection *core_of(const gw_conn_t *conn) { return reinterpret_cast<const gw::Connection *>(conn); }

// The wrapper is owned by its gw_server, which outlives every connection: the
// core gets a non-owning shared_ptr.
std::shared_ptr<gw::ConnectionHandler> borrow(gw_listener &handler) {
  return std::shared_ptr<gw::ConnectionHandler>(std::shared_ptr<void>(), &handler);
}

// Connection entry points: a valid handle, on its loop thread.
int conn_edge(const gw_conn_t *conn) {
  if (!conn) return GW_EINVAL;
  return core_of(conn)->listener().server().loop().in_loop_thread() ? 0 : GW_EWRONGTHREAD;
}

bool on_loop_thread(const gw_server *server) { return server->core->loop().in_loop_thread(); }

// Every entry point runs its body through this: no exception reaches C.
template <typename Body>
int guarded(Body &&body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return GW_ENOMEM;
  } catch (...) {
    return -EIO;
  }
}

void log_to_c(gw::LogLevel level, const char *line, void *user_data) {
  auto *server = static_cast<gw_server *>(user_data);
  server->log(static_cast<gw_log_level>(level), line, server->log_user_data);
}

// C code may store any int in an enum field; in C++, loading a value outside
// the enumerators is undefined. Read the bytes as the underlying integer.
template <typename Enum>
long raw_enum(const Enum &value) {
  std::underlying_type_t<Enum> raw;
  std::memcpy(&raw, &value, sizeof raw);
  return static_cast<long>(raw);
}

// The bytes of gw_listener_options that each version has: a version-1
// caller (0.1.0) has a struct that ends before frame_timeout_ms, and reading
// past it would read whatever follows it in the caller's memory.
constexpr size_t listener_options_size(unsigned version) {
  return version == 1 ? offsetof(gw_listener_options, frame_timeout_ms) : sizeof(gw_listener_options);
}
static_assert(GW_LISTENER_OPTIONS_VERSION == 2, "a new version needs its size in listener_options_size()");

// The bytes of gw_serial_options that each version has (one version so far).
constexpr size_t serial_options_size(unsigned) { return sizeof(gw_serial_options); }
static_assert(GW_SERIAL_OPTIONS_VERSION == 1, "a new version needs its size in serial_options_size()");

// Copies the caller's options as its version has them; the fields it does
// not have are zero, their default. GW_EINVAL for versions 0 and > current.
template <typename Options>
int read_versioned(Options &out, const Options *in, unsigned current, size_t (*size_of)(unsigned)) {
  static_assert(std::is_trivially_copyable_v<Options>, "option structs are plain C structs");
  unsigned version;
  std::memcpy(&version, in, sizeof version);  // the first field of every version
  if (version < 1 || version > current) return GW_EINVAL;
  std::memset(&out, 0, sizeof out);
  std::memcpy(&out, in, size_of(version));
  return 0;
}

int read_listener_options(gw_listener_options &out, const gw_listener_options *in) {
  return read_versioned(out, in, GW_LISTENER_OPTIONS_VERSION, [](unsigned v) { return listener_options_size(v); });
}

// Zero means "the default" for every field (gateway.h): these are the
// defaults, the values that 0.1.0's GW_LISTENER_OPTIONS_INIT spelled out.
constexpr int default_backlog = 128;
constexpr unsigned default_stop_timeout_ms = 5000;
constexpr size_t default_max_frame = 65536;
constexpr size_t default_high_water = 64 * 1024;
constexpr size_t default_low_water = 16 * 1024;
constexpr size_t default_max_output = 1024 * 1024;

int to_listener_config(gw::ListenerConfig &out, const gw_listener_options &options) {
  long framing = raw_enum(options.framing);
  if (framing < GW_FRAMING_RAW || framing > GW_FRAMING_U32BE) return GW_EINVAL;
  if (options.backlog < 0) return GW_EINVAL;
  size_t high_water = options.high_water ? options.high_water : default_high_water;
  // An explicit high_water below the default low water keeps a zero
  // low_water valid: the default never turns valid options into GW_EINVAL.
  size_t low_water = options.low_water ? options.low_water : std::min(default_low_water, high_water);
  if (low_water > high_water) return GW_EINVAL;
  if (options.allow_count && !options.allow) return GW_EINVAL;
  out.backlog = options.backlog ? options.backlog : default_backlog;
  out.framing = static_cast<gw::Framing>(options.framing);
  out.max_frame = options.max_frame ? options.max_frame : default_max_frame;
  out.max_clients = options.max_clients;
  out.max_clients_per_ip = options.max_clients_per_ip;
  out.idle_timeout_ms = options.idle_timeout_ms;
  out.keepalive = options.keepalive != 0;
  out.keepalive_idle_s = options.keepalive_idle_s;
  out.keepalive_interval_s = options.keepalive_interval_s;
  out.keepalive_count = options.keepalive_count;
  out.high_water = high_water;
  out.low_water = low_water;
  out.max_output = options.max_output ? options.max_output : default_max_output;
  out.frame_timeout_ms = options.frame_timeout_ms;
  for (size_t i = 0; i < options.allow_count; ++i) {
    gw::Cidr cidr;
    if (!options.allow[i] || gw::parse_cidr(options.allow[i], cidr) != 0) return GW_EADDRESS;
    out.allow.push_back(cidr);
  }
  return 0;
}

// No backend: the listener's clients go to its callbacks.
struct CallbackHandler {
  int operator()(std::shared_ptr<gw::ConnectionHandler> &) const { return 0; }
  static constexpr bool is_backend = false;
};

// The core of every function that makes a listener: validates, lets
// `make_backend` make the handler of a backend listener (once the listener's
// own options are valid), then lets `open` make the core listener with that
// handler, or with the wrapper's callbacks when there is no backend.
template <typename Open, typename MakeBackend = CallbackHandler>
int make_listener(gw_listener_t **out, gw_server_t *server, const gw_listener_options *caller_options, Open &&open,
                  MakeBackend &&make_backend = {}) {
  if (!out || !server || !caller_options) return GW_EINVAL;
  if (!on_loop_thread(server)) return GW_EWRONGTHREAD;
  // From here on, only the copy: it has every field of the current version.
  gw_listener_options copy;
  if (int rc = read_listener_options(copy, caller_options)) return rc;
  const gw_listener_options *options = &copy;
  // A backend handles the connections: callbacks would never run.
  if (std::decay_t<MakeBackend>::is_backend &&
      (options->on_open || options->on_message || options->on_close || options->on_drain))
    return GW_EINVAL;
  return guarded([&] {
    gw::ListenerConfig config;
    if (int rc = to_listener_config(config, *options)) return rc;
    auto wrapper = std::make_unique<gw_listener>();
    wrapper->owner = server;
    if (int rc = make_backend(wrapper->backend)) return rc;
    wrapper->on_open_fn = options->on_open;
    wrapper->on_message_fn = options->on_message;
    wrapper->on_close_fn = options->on_close;
    wrapper->on_drain_fn = options->on_drain;
    wrapper->user_data = options->user_data;
    std::shared_ptr<gw::ConnectionHandler> handler = wrapper->backend ? wrapper->backend : borrow(*wrapper);
    server->listeners.reserve(server->listeners.size() + 1);  // no throw after the core owns the fd
    gw::Listener *core = nullptr;
    if (int rc = open(core, config, std::move(handler))) return rc;
    wrapper->core = core;
    *out = wrapper.get();
    server->listeners.push_back(std::move(wrapper));
    return 0;
  });
}

// ---- backends ---------------------------------------------------------------

// The values of one of <gateway/tables.h>'s enum tables.
#define GW_VALUE_XX(NAME, core, value) value,
constexpr long parity_values[] = {GW_PARITY_MAP(GW_VALUE_XX)};
constexpr long flow_control_values[] = {GW_FLOW_CONTROL_MAP(GW_VALUE_XX)};
constexpr long serial_clients_values[] = {GW_SERIAL_CLIENTS_MAP(GW_VALUE_XX)};
constexpr long serial_open_values[] = {GW_SERIAL_OPEN_MAP(GW_VALUE_XX)};
constexpr long device_missing_values[] = {GW_DEVICE_MISSING_MAP(GW_VALUE_XX)};
constexpr long device_loss_values[] = {GW_DEVICE_LOSS_MAP(GW_VALUE_XX)};
#undef GW_VALUE_XX

// Converts a C enum field to the core enum its table maps it to (the rows'
// values are the core's: see the static_asserts at the top). False, with
// `why`, for a value that is in no row: C lets any int be stored there.
template <typename Core, typename Enum, size_t N>
bool core_enum(Core &out, const Enum &field, const long (&values)[N], const char *field_name, std::string &why) {
  const long raw = raw_enum(field);
  if (std::find(std::begin(values), std::end(values), raw) == std::end(values)) {
    // As the caller wrote it: an enum whose constants are all positive may
    // be unsigned, and -1 would show as 4294967295.
    static_assert(sizeof(Enum) == sizeof(int), "the C enums are int-sized");
    int written;
    std::memcpy(&written, &field, sizeof written);
    why = std::string("gw_serial_options.") + field_name + " is " + std::to_string(written) +
          ", which is none of its enum's constants";
    return false;
  }
  out = static_cast<Core>(raw);
  return true;
}

// gw_line to the core's "leave alone" (nullopt), low or high. By reference:
// the field may hold any int, and loading it as a gw_line could be undefined.
bool core_line(std::optional<bool> &out, const gw_line &line, const char *field_name, std::string &why) {
  switch (raw_enum(line)) {
    case GW_LINE_KEEP: out.reset(); return true;
    case GW_LINE_LOW: out = false; return true;
    case GW_LINE_HIGH: out = true; return true;
    default: {
      int written;  // as the caller wrote it (see core_enum)
      std::memcpy(&written, &line, sizeof written);
      why = std::string("gw_serial_options.") + field_name + " is " + std::to_string(written) +
            ": use GW_LINE_KEEP, GW_LINE_LOW or GW_LINE_HIGH";
      return false;
    }
  }
}

// An unsigned count the core keeps as int: values beyond INT_MAX stay out
// of range (validate() then names them) instead of wrapping into it.
int saturated_int(unsigned value) { return value > INT_MAX ? INT_MAX : static_cast<int>(value); }

constexpr uint32_t default_baud = 9600;
constexpr int default_data_bits = 8;
constexpr int default_stop_bits = 1;
constexpr unsigned default_device_wait_ms = 10000;
static_assert(gw::SerialSettings{}.baud == default_baud && gw::SerialSettings{}.data_bits == default_data_bits &&
                  gw::SerialSettings{}.stop_bits == default_stop_bits,
              "gateway.h documents the core's line defaults");

// The line settings and policies of `options`, zero fields as their defaults.
int to_line_and_policies(gw::SerialBackendConfig &out, const gw_serial_options &options, std::string &why) {
  gw::SerialSettings &line = out.settings;
  line.baud = options.baud ? options.baud : default_baud;
  line.data_bits = options.data_bits ? saturated_int(options.data_bits) : default_data_bits;
  line.stop_bits = options.stop_bits ? saturated_int(options.stop_bits) : default_stop_bits;
  if (!core_enum(line.parity, options.parity, parity_values, "parity", why) ||
      !core_enum(line.flow_control, options.flow_control, flow_control_values, "flow_control", why) ||
      !core_line(line.dtr, options.dtr, "dtr", why) || !core_line(line.rts, options.rts, "rts", why) ||
      !core_enum(out.clients, options.clients, serial_clients_values, "clients", why) ||
      !core_enum(out.open, options.open, serial_open_values, "open", why) ||
      !core_enum(out.on_missing, options.on_missing, device_missing_values, "on_missing", why) ||
      !core_enum(out.on_loss, options.on_loss, device_loss_values, "on_loss", why))
    return GW_EINVAL;
  // The fields are named after the non-default levels (gateway.h): zero is
  // the core's default, RTS asserted while sending and deasserted after.
  line.rs485.enabled = options.rs485 != 0;
  line.rs485.rts_on_send = options.rs485_rts_on_send_low == 0;
  line.rs485.rts_after_send = options.rs485_rts_after_send_high != 0;
  line.rs485.delay_before_send_ms = options.rs485_delay_before_send_ms;
  line.rs485.delay_after_send_ms = options.rs485_delay_after_send_ms;
  return 0;
}

// The read-only clients' CIDRs, parsed by the one CIDR parser.
int to_readonly_clients(std::vector<gw::Cidr> &out, const gw_serial_options &options, std::string &why) {
  if (options.readonly_client_count && !options.readonly_clients) {
    why = "gw_serial_options.readonly_clients is NULL with readonly_client_count " +
          std::to_string(options.readonly_client_count);
    return GW_EINVAL;
  }
  for (size_t i = 0; i < options.readonly_client_count; ++i) {
    gw::Cidr cidr;
    gw::AddressIssue issue;
    const char *text = options.readonly_clients[i];
    if (!text || gw::parse_cidr(text, cidr, &issue) != 0) {
      why = "gw_serial_options.readonly_clients[" + std::to_string(i) + "] is not a CIDR such as 10.0.0.0/8" +
            (text ? std::string(": ") + gw::describe(issue.error) : std::string(" (NULL)"));
      return GW_EADDRESS;
    }
    out.push_back(cidr);
  }
  return 0;
}

// Packing device -> network.
int to_packing(gw::SerialPacking &packing, const gw_serial_options &options, std::string &why) {
  packing.idle_gap_us = options.idle_gap_us;
  packing.idle_gap_tenth_chars = options.idle_gap_tenth_chars;
  if (options.delimiter_length && !options.delimiter) {
    why = "gw_serial_options.delimiter is NULL with delimiter_length " + std::to_string(options.delimiter_length);
    return GW_EINVAL;
  }
  // Refused here rather than by validate(): a length such as strlen() of a
  // long string is not worth copying to be told it is too long.
  if (options.delimiter_length > 2) {
    why = "gw_serial_options.delimiter_length is " + std::to_string(options.delimiter_length) +
          ": a packet delimiter is one or two bytes, as in \"\\r\\n\"";
    return GW_EINVAL;
  }
  if (options.delimiter_length) packing.delimiter.assign(options.delimiter, options.delimiter_length);
  packing.keep_delimiter = options.strip_delimiter == 0;
  packing.max_packet = options.max_packet;
  packing.max_hold_ms = options.max_hold_ms;
  return 0;
}

// The core's config for `options` (a copy with every field of the current
// version), zero fields as their defaults. GW_EINVAL or GW_EADDRESS, with
// `why`, for what is wrong before the core's own validate() runs.
int to_serial_config(gw::SerialBackendConfig &out, const gw_serial_options &options, std::string &why) {
  if (!options.device) {
    why = "gw_serial_options.device is NULL: give the device's path, as in /dev/ttyUSB0";
    return GW_EINVAL;
  }
  out.path = options.device;
  if (int rc = to_line_and_policies(out, options, why)) return rc;
  if (int rc = to_readonly_clients(out.readonly_clients, options, why)) return rc;
  if (int rc = to_packing(out.packing, options, why)) return rc;
  out.device_wait_ms = options.device_wait_ms ? options.device_wait_ms : default_device_wait_ms;
  if (options.lock_dir) out.open_options.lock_dir = options.lock_dir;  // "" = no lock file
  return 0;
}

// make_listener()'s MakeBackend for gw_listener_create_serial(). Every
// refusal is logged at error level: the code alone (GW_EINVAL) cannot tell
// firmware which of thirty fields is wrong.
struct SerialBackendMaker {
  static constexpr bool is_backend = true;
  gw_server *server;
  const gw_serial_options *caller_options;

  int operator()(std::shared_ptr<gw::ConnectionHandler> &out) const {
    const gw::Logger &logger = server->core->logger();
    gw_serial_options options;
    if (read_versioned(options, caller_options, GW_SERIAL_OPTIONS_VERSION, serial_options_size) != 0) {
      unsigned version;
      std::memcpy(&version, caller_options, sizeof version);
      logger.log(gw::LogLevel::error, "gw_listener_create_serial: gw_serial_options version %u is not one of 1 to %u",
                 version, static_cast<unsigned>(GW_SERIAL_OPTIONS_VERSION));
      return GW_EINVAL;
    }
    gw::SerialBackendConfig config;
    std::string why;
    int rc = to_serial_config(config, options, why);
    const std::string label = std::string("serial:") + (options.device ? options.device : "");
    if (rc == 0) {
      std::unique_ptr<gw::SerialBackend> backend;
      rc = gw::SerialBackend::create(backend, server->core->loop(), logger, std::move(config), label, why);
      if (rc == 0) out = std::move(backend);
    }
    if (rc != 0) logger.log(gw::LogLevel::error, "gw_listener_create_serial: %s", why.c_str());
    return rc;
  }
};

// make_listener()'s MakeBackend for gw_listener_create_forward().
struct ForwarderMaker {
  static constexpr bool is_backend = true;
  gw_server *server;
  const char *backend_text;

  int operator()(std::shared_ptr<gw::ConnectionHandler> &out) const {
    gw::BackendAddress backend;
    gw::AddressIssue issue;
    if (gw::parse_backend_address(backend_text, backend, &issue) != 0) {
      server->core->logger().log(gw::LogLevel::error, "gw_listener_create_forward: bad backend address: %s",
                                 gw::describe(issue.error));
      return GW_EADDRESS;
    }
    if (backend.resolved) {  // an IP literal or a Unix socket: nothing to look up
      out = std::make_shared<gw::Forwarder>(backend.address, backend_text);
      return 0;
    }
    // A host name is resolved in the background, never here (a lookup can
    // take seconds, and a name that does not resolve yet must not keep the
    // listener from listening): as gatewayd's Daemon::make_handler does.
    if (!server->resolver) server->resolver = std::make_shared<gw::Resolver>(server->core->loop());
    auto name = std::make_unique<gw::ResolvedName>(server->resolver, backend.host, backend.port,
                                                   std::string("backend ") + backend_text, server->core->logger());
    out = std::make_shared<gw::Forwarder>(std::move(name), backend_text);
    return 0;
  }
};

// Runs the loop (to the end, or one pass) with the server marked as
// dispatching, so that gw_server_destroy() from a callback only stops it.
// `destroyed` tells the caller that gw_server_destroy() was called during (or
// before, in an outer frame) this call. The server is freed here only by the
// outermost frame: a nested gw_server_dispatch() returns into a callback of
// an outer run/dispatch that still uses the server, so freeing it in the
// inner frame was a use-after-free (and a double free when the outer frame
// freed it again).
template <typename Loop>
int drive(gw_server *server, bool &destroyed, Loop &&loop) {
  ++server->dispatch_depth;
  int rc = guarded([&] { return loop(*server->core); });
  --server->dispatch_depth;
  destroyed = server->destroy_pending;
  if (destroyed && server->dispatch_depth == 0) delete server;
  return rc;
}

}  // namespace

gw_server::~gw_server() {
  if (!core) return;
  // Close the connections while the listener wrappers (their handlers) live,
  // then the timers, which belong to the loop that the core frees last.
  core->stop_now();
  // Posts accepted before the stop (gw_server_post returned 0) run now,
  // exactly once, while the listeners and timers they may use still exist.
  // Inside them a gw_server_destroy() is this teardown (only marked), and a
  // nested gw_server_dispatch() must not free the server: hence the frame.
  ++dispatch_depth;
  destroy_pending = true;
  guarded([&] {
    core->loop().drain_posted();
    return 0;
  });
  --dispatch_depth;
  for (gw_timer *timer : timers) delete timer;
  timers.clear();
  // The backends and the resolver live on core's loop: their last
  // references are now the core listeners', which core frees before the loop.
  for (auto &listener : listeners) listener->backend.reset();
  resolver.reset();
  core.reset();
}

extern "C" {

const char *gw_version(void) { return GW_PROJECT_VERSION; }

const char *gw_strerror(int code) { return gw::err::describe(code); }

const char *gw_err_name(int code) { return gw::err::name(code); }

const char *gw_close_reason_name(gw_close_reason reason) {
  // Any int may arrive: compare the raw value, never load a bad enum.
  long raw = raw_enum(reason);
  if (raw < INT_MIN || raw > INT_MAX) return "unknown";
  const char *name = gw::close_reason_short_name(static_cast<gw::CloseReason>(raw));
  return name ? name : "unknown";
}

int gw_server_create(gw_server_t **out, const gw_server_options *options) {
  if (!out) return GW_EINVAL;
  *out = nullptr;
  gw_server_options defaults = GW_SERVER_OPTIONS_INIT;
  if (!options) options = &defaults;
  // Versions 1 to the current one (only 1 so far: when a version 2 adds a
  // field, copy the caller's prefix as read_listener_options() does).
  if (options->version < 1 || options->version > GW_SERVER_OPTIONS_VERSION) return GW_EINVAL;
  // Zero means the default (gateway.h); 0 is no syslog level of the enum.
  long level = raw_enum(options->log_level);
  if (level == 0) level = GW_LOG_WARNING;
  if (level < GW_LOG_ERROR || level > GW_LOG_DEBUG) return GW_EINVAL;
  return guarded([&] {
    auto server = std::make_unique<gw_server>();
    gw::ServerConfig config;
    config.max_clients = options->max_clients;
    config.stop_timeout_ms = options->stop_timeout_ms ? options->stop_timeout_ms : default_stop_timeout_ms;
    config.logger.max_level = static_cast<gw::LogLevel>(level);
    if (options->log) {
      server->log = options->log;
      server->log_user_data = options->log_user_data;
      config.logger.sink = &log_to_c;
      config.logger.user_data = server.get();
    }
    if (int rc = gw::Server::create(server->core, config)) return rc;
    *out = server.release();
    return 0;
  });
}

void gw_server_destroy(gw_server_t *server) {
  if (!server || !on_loop_thread(server)) return;
  if (server->dispatch_depth > 0) {
    // Inside a callback: stop now, free when run/dispatch unwinds.
    server->destroy_pending = true;
    guarded([&] {
      server->core->stop_now();
      return 0;
    });
    return;
  }
  delete server;
}

int gw_server_run(gw_server_t *server) {
  if (!server) return GW_EINVAL;
  bool destroyed = false;
  return drive(server, destroyed, [](gw::Server &core) { return core.run(); });
}

int gw_server_fd(const gw_server_t *server) {
  if (!server) return GW_EINVAL;
  return server->core->loop().poll_fd();
}

int gw_server_dispatch(gw_server_t *server) {
  if (!server) return GW_EINVAL;
  bool destroyed = false;
  int rc = drive(server, destroyed, [](gw::Server &core) { return core.dispatch_ready(); });
  return destroyed ? 1 : rc;
}

int gw_server_stop(gw_server_t *server) {
  if (!server) return GW_EINVAL;
  return guarded([&] {
    server->core->stop();
    return 0;
  });
}

int gw_server_wakeup(gw_server_t *server) {
  if (!server) return GW_EINVAL;
  server->core->loop().wake();
  return 0;
}

// Whether fn runs is decided once, under the loop's post mutex: the loop
// closes posts at the moment the server becomes stopped and then runs what
// was accepted (Server::run/dispatch_ready, or ~gw_server). A separate check
// of the state before queueing, as before, let a post slip in after the last
// run of the queue: 0 returned, fn never run.
int gw_server_post(gw_server_t *server, void (*fn)(void *), void *user_data) {
  if (!server || !fn) return GW_EINVAL;
  return guarded([&] { return server->core->loop().post([fn, user_data] { fn(user_data); }) ? 0 : GW_ESTATE; });
}

}  // extern "C"

// Fills a gw_stats of any layout that has the 0.1.0 fields first, and
// bytes_spliced only when the layout has it: each layout writes its own size.
template <typename Layout>
static void copy_stats(Layout *out, const gw::Stats &stats) {
  out->clients = stats.clients.load(std::memory_order_relaxed);
  out->accepted = stats.accepted.load(std::memory_order_relaxed);
  out->refused = stats.refused.load(std::memory_order_relaxed);
  out->bytes_in = stats.bytes_in.load(std::memory_order_relaxed);
  out->bytes_out = stats.bytes_out.load(std::memory_order_relaxed);
  if constexpr (std::is_same_v<Layout, gw_stats>)
    out->bytes_spliced = stats.bytes_spliced.load(std::memory_order_relaxed);
}

extern "C" {

int gw_server_stats(gw_stats *out, const gw_server_t *server) {
  if (!out || !server) return GW_EINVAL;
  copy_stats(out, server->core->stats());
  return 0;
}

int gw_listener_create(gw_listener_t **out, gw_server_t *server, const gw_listener_options *options) {
  if (options && !options->address) return GW_EINVAL;
  return make_listener(
      out, server, options,
      [&](gw::Listener *&core, const gw::ListenerConfig &config, std::shared_ptr<gw::ConnectionHandler> handler) {
        return server->core->listen(core, options->address, config, std::move(handler));
      });
}

int gw_listener_adopt(gw_listener_t **out, gw_server_t *server, int fd, const gw_listener_options *options) {
  return make_listener(
      out, server, options,
      [&](gw::Listener *&core, const gw::ListenerConfig &config, std::shared_ptr<gw::ConnectionHandler> handler) {
        gw::Fd owned(fd);  // nothing below throws before adopt() takes it
        int rc = server->core->adopt(core, std::move(owned), config, std::move(handler));
        if (rc != 0) owned.release();  // not moved from: still the caller's, untouched (the header's promise)
        return rc;
      });
}

int gw_listener_create_systemd(gw_listener_t **out, int *out_inherited, gw_server_t *server, const char *name,
                               const gw_listener_options *options) {
  if (out_inherited) *out_inherited = 0;
  if (!name || !*name) return GW_EINVAL;
  return make_listener(
      out, server, options,
      [&](gw::Listener *&core, const gw::ListenerConfig &config, std::shared_ptr<gw::ConnectionHandler> handler) {
        gw::sd::collect_listen_fds();  // a process started by hand has none: not an error
        int fd = -1;
        if (gw::sd::take_listen_fd(name, fd) == 0) {
          // Taken from the pool, the fd is ours: `pooled` owns it until the server
          // does. A failed adopt leaves it untouched, so it is closed here, once
          // (nobody else can claim it: it has left the pool).
          gw::Fd pooled(fd);
          int rc = server->core->adopt(core, std::move(pooled), config, handler);
          if (rc == -EBADF) pooled.release();  // not an open fd at all (on success pooled is empty: the server's now)
          if (rc == 0 && out_inherited) *out_inherited = 1;
          return rc;
        }
        if (options->address) return server->core->listen(core, options->address, config, std::move(handler));
        return gw::sd::available() ? GW_ENOTFOUND : GW_ENOSYS;
      });
}

int gw_listener_create_serial(gw_listener_t **out, gw_server_t *server, const gw_listener_options *listener,
                              const gw_serial_options *serial) {
  if (!serial || (listener && !listener->address)) return GW_EINVAL;
  return make_listener(
      out, server, listener,
      [&](gw::Listener *&core, const gw::ListenerConfig &config, std::shared_ptr<gw::ConnectionHandler> handler) {
        return server->core->listen(core, listener->address, config, std::move(handler));
      },
      SerialBackendMaker{server, serial});
}

int gw_listener_create_forward(gw_listener_t **out, gw_server_t *server, const gw_listener_options *listener,
                               const char *backend) {
  if (!backend || (listener && !listener->address)) return GW_EINVAL;
  return make_listener(
      out, server, listener,
      [&](gw::Listener *&core, const gw::ListenerConfig &config, std::shared_ptr<gw::ConnectionHandler> handler) {
        return server->core->listen(core, listener->address, config, std::move(handler));
      },
      ForwarderMaker{server, backend});
}

int gw_listener_port(const gw_listener_t *listener) {
  if (!listener) return GW_EINVAL;
  return listener->core->port();
}

int gw_listener_broadcast(gw_listener_t *listener, const void *data, size_t len) {
  // A backend listener's clients get the backend's bytes: a message put in
  // among them would corrupt that stream (a half-sent frame, a reply).
  if (!listener || (!data && len) || listener->backend) return GW_EINVAL;
  if (!on_loop_thread(listener->owner)) return GW_EWRONGTHREAD;
  return guarded([&] { return listener->core->broadcast(data, len); });
}

int gw_listener_stats(gw_stats *out, const gw_listener_t *listener) {
  if (!out || !listener) return GW_EINVAL;
  copy_stats(out, listener->core->stats());
  return 0;
}

// ---- gw_stats of 0.1.0 -----------------------------------------------------
// Programs linked against 0.1.0 have a five-field gw_stats and unversioned
// references to gw_server_stats/gw_listener_stats. ld.so binds an unversioned
// reference to the symbol of the first version node (index 2: GW_0 in
// gateway.map), so those programs get these, which write five fields; what
// is linked from now on gets gw_server_stats@@GW_0.2 (the functions above).
// The names do not start with gw_: under their own names they stay local
// (gateway.map); only the @GW_0 aliases are exported.
struct gw_stats_0_1 {
  uint64_t clients, accepted, refused, bytes_in, bytes_out;
};
static_assert(sizeof(gw_stats_0_1) == offsetof(gw_stats, bytes_spliced), "0.1.0's gw_stats is the prefix of today's");

__attribute__((visibility("default"))) int gwcompat_server_stats_0_1(gw_stats_0_1 *out, const gw_server_t *server) {
  if (!out || !server) return GW_EINVAL;
  copy_stats(out, server->core->stats());
  return 0;
}
__asm__(".symver gwcompat_server_stats_0_1, gw_server_stats@GW_0");

__attribute__((visibility("default"))) int gwcompat_listener_stats_0_1(gw_stats_0_1 *out,
                                                                       const gw_listener_t *listener) {
  if (!out || !listener) return GW_EINVAL;
  copy_stats(out, listener->core->stats());
  return 0;
}
__asm__(".symver gwcompat_listener_stats_0_1, gw_listener_stats@GW_0");

int gw_conn_send(gw_conn_t *conn, const void *data, size_t len) {
  if (int rc = conn_edge(conn)) return rc;
  if (!data && len) return GW_EINVAL;
  return guarded([&] { return core_of(conn)->send(data, len); });
}

int gw_conn_send_message(gw_conn_t *conn, const void *data, size_t len) {
  if (int rc = conn_edge(conn)) return rc;
  if (!data && len) return GW_EINVAL;
  return guarded([&] { return core_of(conn)->send_message(data, len); });
}

int gw_conn_close(gw_conn_t *conn) {
  if (int rc = conn_edge(conn)) return rc;
  return guarded([&] {
    core_of(conn)->close(gw::CloseReason::local);
    return 0;
  });
}

void gw_conn_set_user_data(gw_conn_t *conn, void *data) {
  if (conn_edge(conn) == 0) core_of(conn)->set_user_data(data);
}

void *gw_conn_user_data(const gw_conn_t *conn) { return conn_edge(conn) == 0 ? core_of(conn)->user_data() : nullptr; }

int gw_conn_peer(char *buf, size_t buflen, int *out_port, const gw_conn_t *conn) {
  if (!buf) return GW_EINVAL;
  if (int rc = conn_edge(conn)) return rc;
  return guarded([&] {
    const gw::SocketAddress &peer = core_of(conn)->peer();
    std::string host = peer.host();
    if (host.size() + 1 > buflen) return GW_ENOMEM;
    std::memcpy(buf, host.c_str(), host.size() + 1);
    if (out_port) *out_port = peer.port();
    return 0;
  });
}

gw_listener_t *gw_conn_listener(const gw_conn_t *conn) {
  if (conn_edge(conn) != 0) return nullptr;
  return static_cast<gw_listener *>(&core_of(conn)->handler());
}

uint64_t gw_conn_id(const gw_conn_t *conn) { return conn_edge(conn) == 0 ? core_of(conn)->id() : 0; }

int gw_timer_create(gw_timer_t **out, gw_server_t *server, gw_timer_fn fn, void *user_data) {
  if (!out || !server || !fn) return GW_EINVAL;
  if (!on_loop_thread(server)) return GW_EWRONGTHREAD;
  return guarded([&] {
    auto timer = std::make_unique<gw_timer>();
    timer->owner = server;
    timer->fn = fn;
    timer->user_data = user_data;
    gw_timer *raw = timer.get();
    timer->core = std::make_unique<gw::Timer>(server->core->loop(), [raw] { raw->fn(raw, raw->user_data); });
    server->timers.push_back(raw);
    *out = timer.release();
    return 0;
  });
}

int gw_timer_start(gw_timer_t *timer, uint64_t delay_ms, uint64_t repeat_ms) {
  if (!timer) return GW_EINVAL;
  if (!on_loop_thread(timer->owner)) return GW_EWRONGTHREAD;
  return guarded([&] {
    timer->core->start(delay_ms, repeat_ms);
    return 0;
  });
}

int gw_timer_stop(gw_timer_t *timer) {
  if (!timer) return GW_EINVAL;
  if (!on_loop_thread(timer->owner)) return GW_EWRONGTHREAD;
  timer->core->stop();
  return 0;
}

void gw_timer_destroy(gw_timer_t *timer) {
  if (!timer || !on_loop_thread(timer->owner)) return;
  timer->core->stop();
  auto &timers = timer->owner->timers;
  timers.erase(std::remove(timers.begin(), timers.end(), timer), timers.end());
  // It may be running its own callback right now: free it after the batch.
  guarded([&] {
    timer->owner->core->loop().defer([timer] { delete timer; });
    return 0;
  });
}

}  // extern "C"
