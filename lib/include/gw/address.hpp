// Socket addresses: parsing the "host:port" forms the project accepts,
// formatting peers, and CIDR allow lists.
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
};

/// How a listen address was written, which decides IPV6_V6ONLY.
struct ListenAddress {
  SocketAddress address;
  /// ":PORT" means every address: an IPv6 wildcard with IPV6_V6ONLY off
  /// (dual-stack), falling back to 0.0.0.0 where the host has no IPv6.
  bool dual_stack = false;
};

/// Parses "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000", "0.0.0.0:7000",
/// "[::]:7000" or ":7000". Host names are not resolved: a board's listen address
/// is one of its own IP addresses. Returns 0 or err::bad_address.
int parse_listen_address(std::string_view text, ListenAddress &out) noexcept;

/// Parses "HOST:PORT" with HOST an IP literal (IPv6 in brackets), as for
/// backends. Returns 0 or err::bad_address.
int parse_ip_port(std::string_view text, SocketAddress &out) noexcept;

/// An IP address as 16 bytes: IPv4 as IPv4-mapped IPv6, so one key serves both
/// families (and a v4 client of a dual-stack socket counts as that v4 address).
using IpKey = std::array<uint8_t, 16>;
IpKey ip_key(const SocketAddress &address) noexcept;

/// A network in CIDR notation. A bare address is a /32 or /128.
struct Cidr {
  IpKey network{};
  unsigned prefix = 0;  ///< in bits of the 128-bit key (an IPv4 /8 is stored as /104)

  bool contains(const IpKey &ip) const noexcept;
};

/// Parses "10.0.0.0/8", "::1/128", "192.0.2.7". Host bits beyond the prefix are
/// ignored. Returns 0 or err::bad_address.
int parse_cidr(std::string_view text, Cidr &out) noexcept;

}  // namespace gw
