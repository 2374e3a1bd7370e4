// gatewayd configuration: the TOML file (/etc/gateway/gateway.conf), parsed and
// validated into plain structs.
//
// Pure parsing and validation: no event loop, no sockets, no systemd. toml++ is
// used header-only inside config.cpp and never appears in this header, so other
// translation units neither see nor link it.
//
// Every problem is reported as "PATH:LINE:COL: message", sorted by position, and
// all of them are reported, not only the first (a TOML syntax error stops the
// parse, so it is then the only one). Nothing throws.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace gw::service {

// 1-based, as toml++ reports them; 0 means "not from a file".
struct SourcePos {
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

enum class LogLevel { error, warning, info, debug };
enum class Framing { raw, line, u16be, u32be };

// A `listen` value: "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000",
// "0.0.0.0:7000", "[::]:7000" or ":7000" (all addresses; family left to the daemon).
struct ListenAddress {
    enum class Family { any, ipv4, ipv6 };
    Family family = Family::any;
    std::array<std::uint8_t, 16> addr{};  // network order; 4 bytes used for ipv4
    std::uint16_t port = 0;               // 0 = kernel picks (never a duplicate)
    std::string scope;                    // "eth0" or "3", ipv6 link-local only
    std::string text;                     // as written in the file
    std::string canonical;                // "127.0.0.1:7000", "[::1]:7000", ":7000"

    // True when a socket bound to `sa` (from getsockname) serves this address:
    // same port (any, if port is 0) and same address, where family any matches
    // 0.0.0.0 and ::. The scope is not compared (it is an interface *name*).
    bool matches(const sockaddr *sa) const noexcept;
};

struct Backend {
    enum class Kind { echo, tcp, unix_socket };
    Kind kind = Kind::echo;
    std::string host;       // tcp: IP literal (no brackets) or a host name
    std::uint16_t port = 0; // tcp: 1..65535
    std::string path;       // unix_socket: absolute path, fits sockaddr_un
    std::string text;       // as written: "echo", "tcp://127.0.0.1:502", "unix:/run/app.sock"
};

// An `allow` entry: "127.0.0.0/8", "::1/128", or a bare address (/32, /128).
struct Cidr {
    int family = 0;                       // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> addr{};  // network order, host bits zero
    unsigned prefix = 0;
    std::string text;                     // as written

    // IPv4-mapped IPv6 peers (::ffff:a.b.c.d, from a dual-stack listener) match
    // IPv4 entries. Other families never match.
    bool contains(const sockaddr *sa) const noexcept;
};

struct Route {
    SourcePos where;                      // the [[route]] header
    std::string name;                     // required, unique, [A-Za-z0-9_.-]{1,255}
    std::optional<ListenAddress> listen;  // absent: an inherited socket must serve it
    Backend backend;                      // required
    int backlog = 128;                    // 1..65535
    std::uint32_t max_clients = 256;      // 0 = unlimited
    std::uint32_t max_clients_per_ip = 32;// 0 = unlimited
    std::chrono::milliseconds idle_timeout{60'000};  // 0 = disabled
    Framing framing = Framing::raw;
    std::uint32_t max_frame = 65536;      // 1..16 MiB
    std::vector<std::string> allow;       // as written; empty (key absent) = everyone
    std::vector<Cidr> allow_nets;         // parsed, same order as `allow`
    bool keepalive = true;
    bool splice = true;                   // tcp/unix backends: zero-copy once a flow turns bulk

    // No allow list, or the peer is inside one of its networks.
    bool allows(const sockaddr *peer) const noexcept;
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
const char *to_string(Backend::Kind kind) noexcept;
// "60s", "500ms", "5m", "1h", "0"; false on anything else or overflow.
bool parse_duration(std::string_view text, std::chrono::milliseconds &out) noexcept;
// The shortest exact form: 60000ms -> "1m", 1500ms -> "1500ms", 0 -> "0".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace gw::service
