// SPDX-License-Identifier: MIT
// Socket addresses: parsing the "host:port" forms the project accepts,
// formatting peers, and CIDR allow lists.
//
// These parsers are the only ones in the project: gatewayd's configuration
// check, the daemon and the C API all call them, so whatever a check accepts
// is exactly what the runtime applies. They are strict on purpose (no leading
// zeros, no NUL bytes, scopes that name an existing interface, no host bits in
// a CIDR): an input that could be read two ways is refused, never guessed at.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace gw {

/// A socket address of any family with its length. Plain value type.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const noexcept { return storage.ss_family; }
  const sockaddr *get() const noexcept { return reinterpret_cast<const sockaddr *>(&storage); }
  sockaddr *get() noexcept { return reinterpret_cast<sockaddr *>(&storage); }
  /// The port of an IPv4/IPv6 address, or -1.
  int port() const noexcept;
  /// "192.0.2.7:502", "[2001:db8::7]:502", "unix:/run/x.sock". An IPv4-mapped
  /// IPv6 address is shown as IPv4, since that is what the peer is.
  std::string to_string() const;
  /// The host part alone, as written in to_string() but without brackets or port.
  std::string host() const;
  /// Copies a getsockname()/accept() result; false if `length` does not fit.
  bool assign(const sockaddr *address, socklen_t address_length) noexcept;
};

/// A SocketAddress in as few bytes as it needs, for what is kept per
/// connection, where SocketAddress's 136 bytes would be a third of the whole:
/// IPv4, IPv6 and unnamed Unix peers (every TCP client, and most Unix ones)
/// inline in 32 bytes, anything longer (a Unix client bound to a path) in a
/// heap copy that it owns. Not copyable: one owner, the connection.
class CompactAddress {
 public:
  explicit CompactAddress(const SocketAddress &address);
  ~CompactAddress();
  CompactAddress(const CompactAddress &) = delete;
  CompactAddress &operator=(const CompactAddress &) = delete;
  /// The address as it was given.
  SocketAddress get() const noexcept;

 private:
  static constexpr uint8_t on_heap = 0xFF;  // length_ when the address is in heap()
  SocketAddress *heap() const noexcept;

  // The address itself, or (on_heap) the pointer to its heap copy. Bytes, not
  // a union with a pointer: that would align the whole to 8 and make it 40.
  alignas(sockaddr_in6) unsigned char bytes_[sizeof(sockaddr_in6)];
  uint8_t length_;
};

/// Why an address was refused. describe() gives the text; the parsers also
/// point at the offending part of the input (AddressIssue::part), so a caller
/// can quote it.
enum class AddressError : uint8_t {
  none,
  shape,                 ///< not HOST:PORT at all ("7000", "[::1]7000")
  ipv6_needs_brackets,   ///< "::1:7000"
  port_range,            ///< not a number in the allowed range
  port_leading_zero,     ///< "007"
  nul_byte,              ///< a NUL anywhere: C strings would see less than was written
  not_ipv4,              ///< host without brackets is not an IPv4 literal
  not_ipv6,              ///< host in brackets is not an IPv6 literal
  scope_unknown,         ///< "%eth9": no such interface (name or index)
  scope_not_link_local,  ///< a scope on an address that is not link-local
  scope_missing,         ///< a link-local address without a scope
  bad_host_name,         ///< a backend host that is neither an IP literal nor a DNS name
  prefix_range,          ///< a CIDR prefix length out of range or not a number
  prefix_leading_zero,   ///< "/08"
  host_bits,             ///< "10.0.0.1/8": bits set beyond the prefix
  not_ip,                ///< a CIDR whose address is no IP literal
  backend_scheme,        ///< not tcp://HOST:PORT or unix:/PATH
  unix_not_absolute,     ///< "unix:run/x.sock"
  unix_too_long,         ///< longer than sockaddr_un holds
};

/// A short English text for the error ("port must be a number between 0 and
/// 65535"); never null. The config layer builds its messages around it.
const char *describe(AddressError error) noexcept;

struct AddressIssue {
  AddressError error = AddressError::none;
  std::string_view part;  ///< the offending piece of the parsed text (host, scope, port, prefix)
};

/// How a listen address was written, which decides IPV6_V6ONLY.
struct ListenAddress {
  SocketAddress address;
  /// ":PORT" means every address: an IPv6 wildcard with IPV6_V6ONLY off
  /// (dual-stack), falling back to 0.0.0.0 where the host has no IPv6.
  bool dual_stack = false;

  /// The canonical form: "127.0.0.1:7000", "[::1]:7000", ":7000",
  /// "[fe80::1%eth0]:7000" (the scope by interface name where it has one).
  std::string to_string() const;
  /// True when both cannot be bound at once: same port (never for port 0,
  /// where each socket gets its own) and the same address and scope, where
  /// ":PORT" is the same socket as 0.0.0.0:PORT and [::]:PORT.
  bool conflicts_with(const ListenAddress &other) const noexcept;
  /// True when a socket bound to `bound` (from getsockname) serves this
  /// address: same port (any, if this port is 0) and the same address, where
  /// ":PORT" matches 0.0.0.0 and ::, and an IPv4 address also matches its
  /// IPv4-mapped IPv6 form. The scope is not compared.
  bool matches(const SocketAddress &bound) const noexcept;
};

/// Parses "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000", "0.0.0.0:7000",
/// "[::]:7000" or ":7000". Host names are not resolved: a board's listen address
/// is one of its own IP addresses. Ports 0..65535 in decimal without leading
/// zeros; a link-local IPv6 address needs a scope, which must name an existing
/// interface (or its index); other addresses take none. Returns 0 or
/// err::EADDRESS, with the reason in *issue when given.
int parse_listen_address(std::string_view text, ListenAddress &out, AddressIssue *issue = nullptr) noexcept;

/// Parses "HOST:PORT" with HOST an IP literal (IPv6 in brackets) and PORT
/// 1..65535, under the same rules as listen addresses. Returns 0 or
/// err::EADDRESS.
int parse_ip_port(std::string_view text, SocketAddress &out, AddressIssue *issue = nullptr) noexcept;

/// A backend: "tcp://HOST:PORT" (HOST an IP literal, IPv6 in brackets, or a
/// DNS host name; PORT 1..65535) or "unix:/ABSOLUTE/PATH".
struct BackendAddress {
  enum class Kind { tcp, unix_socket };
  Kind kind = Kind::tcp;
  std::string host;   ///< tcp: the IP literal (no brackets, with any %scope) or host name
  uint16_t port = 0;  ///< tcp
  std::string path;   ///< unix_socket
  /// Ready to connect to: set for an IP literal and a unix path; a host name
  /// must be resolved first (resolved is then false).
  SocketAddress address;
  bool resolved = false;
};

/// Parses a backend address as above. Returns 0 or err::EADDRESS.
int parse_backend_address(std::string_view text, BackendAddress &out, AddressIssue *issue = nullptr);

/// Parses "unix:/ABSOLUTE/PATH" into an AF_UNIX address. Returns 0 or err::EADDRESS.
int parse_unix_address(std::string_view text, SocketAddress &out) noexcept;

/// An IP address as 16 bytes: IPv4 as IPv4-mapped IPv6, so one key serves both
/// families (and a v4 client of a dual-stack socket counts as that v4 address).
using IpKey = std::array<uint8_t, 16>;
IpKey ip_key(const SocketAddress &address) noexcept;

/// A network in CIDR notation. A bare address is a /32 or /128.
struct Cidr {
  IpKey network{};
  unsigned prefix = 0;  ///< in bits of the 128-bit key (an IPv4 /8 is stored as /104)

  bool contains(const IpKey &ip) const noexcept;
  /// True for a network inside ::ffff:0:0/96, i.e. written as IPv4.
  bool is_ipv4() const noexcept;
  /// The prefix length as written: 8 for an IPv4 /8 (stored as /104).
  unsigned written_prefix() const noexcept { return is_ipv4() ? prefix - 96 : prefix; }
  /// "10.0.0.0/8", "::1/128".
  std::string to_string() const;
};

/// Parses "10.0.0.0/8", "::1/128", "192.0.2.7". The prefix is decimal without
/// leading zeros (0..32 or 0..128); bits set beyond it are refused (the
/// writer meant another network, or a host). No scopes. Returns 0 or
/// err::EADDRESS.
int parse_cidr(std::string_view text, Cidr &out, AddressIssue *issue = nullptr) noexcept;

}  // namespace gw
