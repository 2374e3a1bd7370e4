// SPDX-License-Identifier: MIT
// gatewayd configuration: the TOML file (/etc/gateway/gateway.conf), parsed and
// validated into plain structs.
//
// Pure parsing and validation: no event loop, no sockets, no systemd. toml++ is
// used header-only inside config.cpp and never appears in this header, so other
// translation units neither see nor link it.
//
// Every problem is reported as "PATH:LINE:COL: message", sorted by position, and
// all of them are reported, not only the first (a TOML syntax error stops the
// parse, so it is then the only one). Each message is one printable line:
// control bytes, invalid UTF-8 and line separators are escaped, whatever the
// file (or its path) holds. Nothing throws, and no input crashes the parser.
//
// Addresses (listen, allow, backend) are parsed by lib's parsers, the ones the
// runtime uses, and stored as their results: what this layer accepts is what
// the daemon applies, and the daemon never parses them again.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gw/address.hpp"
#include "gw/modbus.hpp"
#include "gw/serial_backend.hpp"

namespace gw::service {

// 1-based, as toml++ reports them; 0 means "not from a file".
struct SourcePos {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

enum class LogLevel { error, warning, info, debug };
enum class Framing { raw, line, u16be, u32be };
// What a route speaks on top of its framing (the `protocol` key): raw passes
// bytes or messages on as they are; the others are decoded by the gateway.
//   modbus      Modbus TCP clients; a serial (RTU) or tcp (Modbus TCP) backend
//   modbus-rtu  RTU frames over TCP from clients; a serial backend
//   rfc2217     Telnet with the COM-PORT-OPTION; a serial backend, raw framing
enum class Protocol { raw, modbus, modbus_rtu, rfc2217 };

// A `listen` value, parsed by the runtime's own parser (gw::parse_listen_address):
// "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000", "0.0.0.0:7000",
// "[::]:7000" or ":7000" (every address, dual-stack).
struct ListenAddress {
  gw::ListenAddress address;  // what the daemon binds or matches
  std::string text;           // as written in the file
  std::string canonical;      // address.to_string(): "127.0.0.1:7000", "[::1]:7000", ":7000"

  std::uint16_t port() const noexcept { return static_cast<std::uint16_t>(address.address.port()); }
};

// A `backend` value. tcp and unix ones are parsed by gw::parse_backend_address;
// `address` is ready to connect to for an IP literal and a unix path, while a
// host name (address unset) is resolved by the daemon from `host` and `port`.
// A serial one names a device; the route's serial keys say how to use it
// (Route::serial).
struct Backend {
  enum class Kind { echo, tcp, unix_socket, serial };
  Kind kind = Kind::echo;
  std::string host;        // tcp: IP literal (no brackets, with any %scope) or a host name
  std::uint16_t port = 0;  // tcp: 1..65535
  std::string path;        // unix_socket: absolute path, fits sockaddr_un; serial: the device, absolute
  std::string text;        // as written: "echo", "tcp://127.0.0.1:502", "unix:/run/app.sock", "serial:/dev/ttyUSB0"
  std::optional<gw::SocketAddress> address;  // tcp IP literal or unix: no lookup needed
};

struct Route {
  SourcePos where;                                 // the [[route]] header
  std::string name;                                // required, unique, [A-Za-z0-9_.-]{1,255}
  std::optional<ListenAddress> listen;             // absent: an inherited socket must serve it
  Backend backend;                                 // required
  int backlog = 128;                               // 1..65535
  std::uint32_t max_clients = 256;                 // 0 = unlimited
  std::uint32_t max_clients_per_ip = 32;           // 0 = unlimited
  std::chrono::milliseconds idle_timeout{60'000};  // 0 = disabled
  Framing framing = Framing::raw;
  std::uint32_t max_frame = 65536;                  // 1..16 MiB
  std::chrono::milliseconds frame_timeout{30'000};  // framed routes: a started frame's deadline; 0 = none
  std::vector<std::string> allow;                   // as written; empty (key absent) = everyone
  std::vector<gw::Cidr> allow_nets;                 // parsed by gw::parse_cidr, same order as `allow`
  bool keepalive = true;
  bool splice = true;  // tcp/unix backends: zero-copy once a flow turns bulk
  // Set exactly for a serial backend: its device path and every serial key
  // of the route, checked by SerialBackendConfig::validate (the check
  // SerialBackend::create makes), so the daemon can use it as it is.
  std::optional<gw::SerialBackendConfig> serial;
  Protocol protocol = Protocol::raw;
  // Set exactly for a modbus or modbus-rtu route: its Modbus keys, checked
  // by ModbusConfig::validate (the check ModbusGateway's create makes).
  std::optional<gw::ModbusConfig> modbus;

  // No allow list, or the peer is inside one of its networks (the same
  // test the listener applies: IPv4 peers as IPv4-mapped IPv6).
  bool allows(const gw::SocketAddress &peer) const noexcept;
};

struct ServiceSection {
  LogLevel log_level = LogLevel::info;
  std::chrono::milliseconds stop_timeout{5'000};
};

struct Config {
  ServiceSection service;
  std::vector<Route> routes;
};

// Exactly one of the two is set: `config`, or a non-empty `errors`.
struct ConfigResult {
  std::optional<Config> config;
  std::vector<std::string> errors;  // "PATH:LINE:COL: message", by position
  bool ok() const noexcept { return config.has_value(); }
};

inline constexpr const char *default_config_path = "/etc/gateway/gateway.conf";

// Reads and parses `path`. A file that cannot be read gives the single error
// "PATH: cannot open: <strerror>" (or "cannot read"). An empty file is valid and
// has no routes.
ConfigResult load_config(const std::string &path);

// Parses `text`; `path_for_messages` prefixes every error.
ConfigResult parse_config(std::string_view text, const std::string &path_for_messages);

// Building blocks, also used by the daemon for command-line values.
const char *to_string(LogLevel level) noexcept;
const char *to_string(Framing framing) noexcept;
const char *to_string(Protocol protocol) noexcept;
const char *to_string(Backend::Kind kind) noexcept;
// `text` as one printable line: bytes below 0x20, DEL, invalid UTF-8 and the
// C1 controls as \xNN, U+2028/U+2029 as \u2028/\u2029; everything else as is.
std::string printable_line(std::string_view text);
// "60s", "500ms", "5m", "1h", "0"; false on anything else or overflow.
bool parse_duration(std::string_view text, std::chrono::milliseconds &out) noexcept;
// The shortest exact form: 60000ms -> "1m", 1500ms -> "1500ms", 0 -> "0".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace gw::service
