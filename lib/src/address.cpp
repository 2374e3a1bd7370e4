// SPDX-License-Identifier: MIT
#include "gw/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>

#include "gw/errors.hpp"

namespace gw {
namespace {

// Sets *issue (when there is one) and returns err::EADDRESS, so every
// refusal is one line: `return refuse(issue, AddressError::..., part);`.
int refuse(AddressIssue *issue, AddressError error, std::string_view part) noexcept {
  if (issue) *issue = AddressIssue{error, part};
  return err::EADDRESS;
}

bool all_digits(std::string_view text) noexcept {
  if (text.empty()) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  return true;
}

// A decimal number in [min, max], digits only, no leading zeros ("0" itself is
// fine): "017" would be 17 to us but 15 to a reader who thinks in C.
AddressError parse_decimal(std::string_view text, unsigned long min, unsigned long max, AddressError range_error,
                           AddressError zero_error, unsigned long &value) noexcept {
  if (!all_digits(text)) return range_error;
  if (text.size() > 1 && text.front() == '0') return zero_error;
  if (text.size() > 10) return range_error;
  unsigned long v = 0;
  for (char c : text) v = v * 10 + static_cast<unsigned long>(c - '0');
  if (v < min || v > max) return range_error;
  value = v;
  return AddressError::none;
}

AddressError parse_port(std::string_view text, unsigned long min, uint16_t &port) noexcept {
  unsigned long value = 0;
  AddressError e = parse_decimal(text, min, 65535, AddressError::port_range, AddressError::port_leading_zero, value);
  if (e == AddressError::none) port = static_cast<uint16_t>(value);
  return e;
}

// Splits "host:port" / "[v6]:port" / ":port". `bracketed` tells whether the
// host was an IPv6 literal in brackets.
AddressError split_host_port(std::string_view text, std::string_view &host, std::string_view &port,
                             bool &bracketed) noexcept {
  bracketed = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return AddressError::shape;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    bracketed = true;
    return AddressError::none;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return AddressError::shape;
  host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos) return AddressError::ipv6_needs_brackets;
  port = text.substr(colon + 1);
  return AddressError::none;
}

// inet_pton() wants a C string: copies `text` (which has no NUL, checked by the
// callers) into `buffer`. False if it cannot be an address at all.
template <size_t N>
bool c_string(std::string_view text, char (&buffer)[N]) noexcept {
  if (text.size() >= N) return false;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  return true;
}

bool is_link_local(const in6_addr &a) noexcept { return IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_MC_LINKLOCAL(&a); }

// "%eth0" or "%2": an interface of this host, by name or by index (decimal,
// no leading zeros). 0 if there is no such interface.
unsigned scope_index(std::string_view scope) noexcept {
  if (all_digits(scope)) {
    unsigned long index = 0;
    if (parse_decimal(scope, 1, 0xffffffffUL, AddressError::scope_unknown, AddressError::scope_unknown, index) !=
        AddressError::none)
      return 0;
    char name[IF_NAMESIZE];
    return if_indextoname(static_cast<unsigned>(index), name) ? static_cast<unsigned>(index) : 0;
  }
  char name[IF_NAMESIZE];
  if (!c_string(scope, name)) return 0;
  return if_nametoindex(name);
}

int parse_ipv4(std::string_view host, uint16_t port, SocketAddress &out, AddressIssue *issue) noexcept {
  char buffer[INET_ADDRSTRLEN];
  out = SocketAddress{};
  auto *v4 = reinterpret_cast<sockaddr_in *>(&out.storage);
  if (!c_string(host, buffer) || inet_pton(AF_INET, buffer, &v4->sin_addr) != 1)
    return refuse(issue, AddressError::not_ipv4, host);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  out.length = sizeof(sockaddr_in);
  return 0;
}

// The inside of "[...]": an IPv6 literal with a scope exactly when it is
// link-local, since only there does the kernel need (and use) one.
int parse_ipv6(std::string_view host, uint16_t port, SocketAddress &out, AddressIssue *issue) noexcept {
  std::string_view literal = host, scope;
  bool has_scope = false;
  if (size_t percent = host.find('%'); percent != std::string_view::npos) {
    literal = host.substr(0, percent);
    scope = host.substr(percent + 1);
    has_scope = true;
  }
  char buffer[INET6_ADDRSTRLEN];
  out = SocketAddress{};
  auto *v6 = reinterpret_cast<sockaddr_in6 *>(&out.storage);
  if (!c_string(literal, buffer) || inet_pton(AF_INET6, buffer, &v6->sin6_addr) != 1)
    return refuse(issue, AddressError::not_ipv6, literal);
  bool link_local = is_link_local(v6->sin6_addr);
  if (has_scope && !link_local) return refuse(issue, AddressError::scope_not_link_local, scope);
  if (!has_scope && link_local) return refuse(issue, AddressError::scope_missing, literal);
  if (has_scope) {
    v6->sin6_scope_id = scope_index(scope);
    if (v6->sin6_scope_id == 0) return refuse(issue, AddressError::scope_unknown, scope);
  }
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  out.length = sizeof(sockaddr_in6);
  return 0;
}

int parse_host(std::string_view host, bool bracketed, uint16_t port, SocketAddress &out, AddressIssue *issue) noexcept {
  return bracketed ? parse_ipv6(host, port, out, issue) : parse_ipv4(host, port, out, issue);
}

// A DNS-ish host name: dot-separated labels of letters, digits, '-' and '_'
// (the last for /etc/hosts entries), labels <= 63, total <= 253, one trailing
// dot allowed. All-numeric names are left to the IPv4 parser.
bool valid_host_name(std::string_view s) noexcept {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : s) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok || (label == 0 && c == '-') || ++label > 63) return false;
    }
    prev = c;
  }
  return prev != '-';
}

bool looks_numeric(std::string_view host) noexcept {
  for (char c : host)
    if ((c < '0' || c > '9') && c != '.') return false;
  return true;
}

bool has_nul(std::string_view text) noexcept { return text.find('\0') != std::string_view::npos; }

const in6_addr &v6_addr(const SocketAddress &a) noexcept {
  return reinterpret_cast<const sockaddr_in6 *>(&a.storage)->sin6_addr;
}
const in_addr &v4_addr(const SocketAddress &a) noexcept {
  return reinterpret_cast<const sockaddr_in *>(&a.storage)->sin_addr;
}
uint32_t scope_of(const SocketAddress &a) noexcept {
  return a.family() == AF_INET6 ? reinterpret_cast<const sockaddr_in6 *>(&a.storage)->sin6_scope_id : 0;
}

bool is_wildcard(const SocketAddress &a) noexcept {
  if (a.family() == AF_INET) return v4_addr(a).s_addr == htonl(INADDR_ANY);
  return a.family() == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6_addr(a));
}

bool same_host(const SocketAddress &a, const SocketAddress &b) noexcept {
  if (a.family() != b.family()) return false;
  if (a.family() == AF_INET) return v4_addr(a).s_addr == v4_addr(b).s_addr;
  return a.family() == AF_INET6 && std::memcmp(&v6_addr(a), &v6_addr(b), sizeof(in6_addr)) == 0 &&
         scope_of(a) == scope_of(b);
}

}  // namespace

const char *describe(AddressError error) noexcept {
  switch (error) {
    case AddressError::none: return "no error";
    case AddressError::shape: return "must be ADDRESS:PORT such as \"127.0.0.1:7000\", \"[::1]:7000\" or \":7000\"";
    case AddressError::ipv6_needs_brackets: return "IPv6 addresses must be in brackets";
    case AddressError::port_range: return "port must be a number between 0 and 65535";
    case AddressError::port_leading_zero: return "port must be written without leading zeros";
    case AddressError::nul_byte: return "contains a NUL byte";
    case AddressError::not_ipv4: return "is not an IPv4 literal";
    case AddressError::not_ipv6: return "is not an IPv6 literal";
    case AddressError::scope_unknown: return "scope is not a network interface of this host (name or index)";
    case AddressError::scope_not_link_local: return "a scope is only valid on a link-local address (fe80::/10)";
    case AddressError::scope_missing: return "a link-local address needs a scope (%INTERFACE)";
    case AddressError::bad_host_name: return "host is not an IP address or host name";
    case AddressError::prefix_range: return "bad prefix length (0 to 32 for IPv4, 0 to 128 for IPv6)";
    case AddressError::prefix_leading_zero: return "prefix length must be written without leading zeros";
    case AddressError::host_bits: return "has host bits set beyond the prefix length";
    case AddressError::not_ip: return "is not an IP address or CIDR";
    case AddressError::backend_scheme: return "must be tcp://HOST:PORT or unix:/PATH";
    case AddressError::unix_not_absolute: return "unix socket path must be absolute";
    case AddressError::unix_too_long: return "unix socket path does not fit in sockaddr_un";
  }
  return "bad address";
}

int SocketAddress::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in *>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_port);
  return -1;
}

bool SocketAddress::assign(const sockaddr *address, socklen_t address_length) noexcept {
  *this = SocketAddress{};
  if (!address || address_length > sizeof storage) return false;
  std::memcpy(&storage, address, address_length);
  length = address_length;
  return true;
}

static_assert(sizeof(sockaddr_storage) < 0xFF, "CompactAddress keeps a length in one byte, 0xFF meaning on the heap");
static_assert(sizeof(SocketAddress *) <= sizeof(sockaddr_in6),
              "CompactAddress keeps its heap pointer in its inline bytes");

CompactAddress::CompactAddress(const SocketAddress &address) {
  if (address.length <= sizeof bytes_) {
    // The whole inline part, not only `length` bytes: the family is read from
    // the storage even where the length is 0.
    std::memcpy(bytes_, &address.storage, sizeof bytes_);
    length_ = static_cast<uint8_t>(address.length);
  } else {
    auto *copy = new SocketAddress(address);
    std::memcpy(bytes_, &copy, sizeof copy);
    length_ = on_heap;
  }
}

CompactAddress::~CompactAddress() {
  if (length_ == on_heap) delete heap();
}

SocketAddress *CompactAddress::heap() const noexcept {
  SocketAddress *copy;
  std::memcpy(&copy, bytes_, sizeof copy);
  return copy;
}

SocketAddress CompactAddress::get() const noexcept {
  if (length_ == on_heap) return *heap();
  SocketAddress address;
  std::memcpy(&address.storage, bytes_, sizeof bytes_);
  address.length = length_;
  return address;
}

std::string SocketAddress::host() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(&storage)->sin_addr, text, sizeof text);
  } else if (family() == AF_INET6) {
    const auto &v6 = reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6))
      inet_ntop(AF_INET, &v6.s6_addr[12], text, sizeof text);
    else
      inet_ntop(AF_INET6, &v6, text, sizeof text);
  } else if (family() == AF_UNIX) {
    const auto *un = reinterpret_cast<const sockaddr_un *>(&storage);
    size_t max = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    return std::string(un->sun_path, strnlen(un->sun_path, max));
  }
  return text;
}

std::string SocketAddress::to_string() const {
  if (family() == AF_UNIX) return "unix:" + host();
  std::string h = host();
  bool bracket = h.find(':') != std::string::npos;
  return (bracket ? "[" + h + "]" : h) + ":" + std::to_string(port());
}

std::string ListenAddress::to_string() const {
  if (dual_stack) return ":" + std::to_string(address.port());
  if (address.family() != AF_INET6) return address.to_string();
  std::string text = "[";
  char literal[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, &v6_addr(address), literal, sizeof literal);
  text += literal;
  if (uint32_t scope = scope_of(address)) {
    char name[IF_NAMESIZE];
    text += "%";
    text += if_indextoname(scope, name) ? std::string(name) : std::to_string(scope);
  }
  return text + "]:" + std::to_string(address.port());
}

bool ListenAddress::conflicts_with(const ListenAddress &other) const noexcept {
  int port = address.port();
  if (port == 0 || port != other.address.port()) return false;
  if (dual_stack || other.dual_stack) {
    // ":PORT" takes the port on every address of both families.
    const ListenAddress &specific = dual_stack ? other : *this;
    return specific.dual_stack || is_wildcard(specific.address);
  }
  return same_host(address, other.address);
}

bool ListenAddress::matches(const SocketAddress &bound) const noexcept {
  if (bound.family() != AF_INET && bound.family() != AF_INET6) return false;
  int port = address.port();
  if (port != 0 && bound.port() != port) return false;
  if (dual_stack) return is_wildcard(bound);
  if (address.family() == AF_INET6)
    return bound.family() == AF_INET6 && std::memcmp(&v6_addr(address), &v6_addr(bound), sizeof(in6_addr)) == 0;
  // An IPv4 address also matches a socket systemd bound as its IPv4-mapped
  // IPv6 form: both accept the same clients.
  return address.family() == AF_INET && ip_key(address) == ip_key(bound);
}

int parse_listen_address(std::string_view text, ListenAddress &out, AddressIssue *issue) noexcept {
  if (has_nul(text)) return refuse(issue, AddressError::nul_byte, text);
  std::string_view host, port_text;
  bool bracketed = false;
  if (AddressError e = split_host_port(text, host, port_text, bracketed); e != AddressError::none)
    return refuse(issue, e, e == AddressError::ipv6_needs_brackets ? host : text);
  uint16_t port = 0;
  if (AddressError e = parse_port(port_text, 0, port); e != AddressError::none) return refuse(issue, e, port_text);
  if (host.empty() && bracketed) return refuse(issue, AddressError::shape, text);
  ListenAddress parsed;
  if (host.empty()) {
    auto *v6 = reinterpret_cast<sockaddr_in6 *>(&parsed.address.storage);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_any;
    v6->sin6_port = htons(port);
    parsed.address.length = sizeof(sockaddr_in6);
    parsed.dual_stack = true;
  } else if (int rc = parse_host(host, bracketed, port, parsed.address, issue)) {
    return rc;
  }
  out = parsed;
  return 0;
}

int parse_ip_port(std::string_view text, SocketAddress &out, AddressIssue *issue) noexcept {
  if (has_nul(text)) return refuse(issue, AddressError::nul_byte, text);
  std::string_view host, port_text;
  bool bracketed = false;
  if (AddressError e = split_host_port(text, host, port_text, bracketed); e != AddressError::none)
    return refuse(issue, e, e == AddressError::ipv6_needs_brackets ? host : text);
  if (host.empty()) return refuse(issue, AddressError::shape, text);
  uint16_t port = 0;
  if (AddressError e = parse_port(port_text, 1, port); e != AddressError::none) return refuse(issue, e, port_text);
  SocketAddress parsed;
  if (int rc = parse_host(host, bracketed, port, parsed, issue)) return rc;
  out = parsed;
  return 0;
}

namespace {

int parse_tcp_backend(std::string_view rest, BackendAddress &out, AddressIssue *issue) {
  std::string_view host, port_text;
  bool bracketed = false;
  if (AddressError e = split_host_port(rest, host, port_text, bracketed); e != AddressError::none)
    return refuse(issue, e, e == AddressError::ipv6_needs_brackets ? host : rest);
  if (host.empty()) return refuse(issue, AddressError::shape, rest);
  uint16_t port = 0;
  if (AddressError e = parse_port(port_text, 1, port); e != AddressError::none) return refuse(issue, e, port_text);
  BackendAddress parsed;
  parsed.kind = BackendAddress::Kind::tcp;
  parsed.port = port;
  if (bracketed || looks_numeric(host)) {
    if (int rc = parse_host(host, bracketed, port, parsed.address, issue)) return rc;
    parsed.resolved = true;
  } else if (!valid_host_name(host)) {
    return refuse(issue, AddressError::bad_host_name, host);
  }
  parsed.host = std::string(host);
  out = std::move(parsed);
  return 0;
}

int parse_unix_backend(std::string_view text, std::string_view path, BackendAddress &out, AddressIssue *issue) {
  if (path.empty() || path.front() != '/') return refuse(issue, AddressError::unix_not_absolute, path);
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) return refuse(issue, AddressError::unix_too_long, path);
  BackendAddress parsed;
  parsed.kind = BackendAddress::Kind::unix_socket;
  // The one builder of the sockaddr_un (parse_unix_address, below), so a
  // checked backend and a forwarder's connect agree on it.
  if (parse_unix_address(text, parsed.address) != 0) return refuse(issue, AddressError::unix_not_absolute, path);
  parsed.path = std::string(path);
  parsed.resolved = true;
  out = std::move(parsed);
  return 0;
}

}  // namespace

int parse_backend_address(std::string_view text, BackendAddress &out, AddressIssue *issue) {
  if (has_nul(text)) return refuse(issue, AddressError::nul_byte, text);
  constexpr std::string_view tcp = "tcp://", unix_prefix = "unix:";
  if (text.substr(0, tcp.size()) == tcp) return parse_tcp_backend(text.substr(tcp.size()), out, issue);
  if (text.substr(0, unix_prefix.size()) == unix_prefix)
    return parse_unix_backend(text, text.substr(unix_prefix.size()), out, issue);
  return refuse(issue, AddressError::backend_scheme, text);
}

int parse_unix_address(std::string_view text, SocketAddress &out) noexcept {
  constexpr std::string_view prefix = "unix:";
  if (text.substr(0, prefix.size()) != prefix) return err::EADDRESS;
  std::string_view path = text.substr(prefix.size());
  auto *un = reinterpret_cast<sockaddr_un *>(&out.storage);
  if (path.empty() || path.front() != '/' || path.size() >= sizeof un->sun_path) return err::EADDRESS;
  out = SocketAddress{};
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return 0;
}

IpKey ip_key(const SocketAddress &address) noexcept {
  IpKey key{};
  if (address.family() == AF_INET) {
    key[10] = key[11] = 0xff;
    std::memcpy(&key[12], &reinterpret_cast<const sockaddr_in *>(&address.storage)->sin_addr, 4);
  } else if (address.family() == AF_INET6) {
    std::memcpy(key.data(), &reinterpret_cast<const sockaddr_in6 *>(&address.storage)->sin6_addr, 16);
  }
  return key;
}

namespace {

uint8_t prefix_mask(unsigned prefix, size_t byte) noexcept {
  unsigned first_bit = static_cast<unsigned>(byte * 8);
  if (prefix >= first_bit + 8) return 0xff;
  if (prefix <= first_bit) return 0;
  return static_cast<uint8_t>(0xff << (8 - (prefix - first_bit)));
}

}  // namespace

bool Cidr::contains(const IpKey &ip) const noexcept {
  for (size_t i = 0; i < ip.size(); ++i) {
    uint8_t mask = prefix_mask(prefix, i);
    if ((ip[i] & mask) != (network[i] & mask)) return false;
  }
  return true;
}

bool Cidr::is_ipv4() const noexcept {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return prefix >= 96 && std::memcmp(network.data(), mapped, sizeof mapped) == 0;
}

std::string Cidr::to_string() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (is_ipv4())
    inet_ntop(AF_INET, &network[12], text, sizeof text);
  else
    inet_ntop(AF_INET6, network.data(), text, sizeof text);
  return std::string(text) + "/" + std::to_string(written_prefix());
}

int parse_cidr(std::string_view text, Cidr &out, AddressIssue *issue) noexcept {
  if (has_nul(text)) return refuse(issue, AddressError::nul_byte, text);
  std::string_view host = text, bits;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    host = text.substr(0, slash);
    bits = text.substr(slash + 1);
  }
  char buffer[INET6_ADDRSTRLEN];
  SocketAddress address;
  bool v6 = host.find(':') != std::string_view::npos;
  int family = v6 ? AF_INET6 : AF_INET;
  void *into = v6 ? static_cast<void *>(&reinterpret_cast<sockaddr_in6 *>(&address.storage)->sin6_addr)
                  : static_cast<void *>(&reinterpret_cast<sockaddr_in *>(&address.storage)->sin_addr);
  if (!c_string(host, buffer) || inet_pton(family, buffer, into) != 1) return refuse(issue, AddressError::not_ip, host);
  address.storage.ss_family = static_cast<sa_family_t>(family);
  unsigned long max = v6 ? 128 : 32, prefix = max;
  if (slash != std::string_view::npos) {
    AddressError e = parse_decimal(bits, 0, max, AddressError::prefix_range, AddressError::prefix_leading_zero, prefix);
    if (e != AddressError::none) return refuse(issue, e, bits);
  }
  Cidr parsed;
  parsed.prefix = static_cast<unsigned>(v6 ? prefix : prefix + 96);
  IpKey key = ip_key(address);
  for (size_t i = 0; i < key.size(); ++i) parsed.network[i] = key[i] & prefix_mask(parsed.prefix, i);
  if (parsed.network != key) {
    // The network the writer probably meant, for the caller's suggestion.
    out = parsed;
    return refuse(issue, AddressError::host_bits, text);
  }
  out = parsed;
  return 0;
}

}  // namespace gw
