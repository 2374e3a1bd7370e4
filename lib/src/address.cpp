#include "gw/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "gw/errors.hpp"

namespace gw {
namespace {

bool parse_port(std::string_view text, uint16_t &port) noexcept {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

// Splits "host:port" / "[v6]:port" / ":port". `bracketed` tells whether the
// host was an IPv6 literal in brackets.
bool split_host_port(std::string_view text, std::string_view &host, std::string_view &port, bool &bracketed) noexcept {
  bracketed = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    bracketed = true;
    return true;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos) return false;  // IPv6 needs brackets
  port = text.substr(colon + 1);
  return true;
}

bool parse_ip(std::string_view host, bool want_v6, uint16_t port, SocketAddress &out) noexcept {
  char buffer[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  if (host.size() >= sizeof buffer) return false;
  std::memcpy(buffer, host.data(), host.size());
  buffer[host.size()] = '\0';
  out = SocketAddress{};
  if (!want_v6) {
    auto *v4 = reinterpret_cast<sockaddr_in *>(&out.storage);
    if (inet_pton(AF_INET, buffer, &v4->sin_addr) != 1) return false;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return true;
  }
  auto *v6 = reinterpret_cast<sockaddr_in6 *>(&out.storage);
  char *scope = std::strchr(buffer, '%');
  if (scope) {
    *scope++ = '\0';
    unsigned index = if_nametoindex(scope);
    if (index == 0) {
      char *end = nullptr;
      unsigned long numeric = std::strtoul(scope, &end, 10);
      if (*scope == '\0' || *end != '\0' || numeric == 0) return false;
      index = static_cast<unsigned>(numeric);
    }
    v6->sin6_scope_id = index;
  }
  if (inet_pton(AF_INET6, buffer, &v6->sin6_addr) != 1) return false;
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  out.length = sizeof(sockaddr_in6);
  return true;
}

}  // namespace

int SocketAddress::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in *>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_port);
  return -1;
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
    return length > offsetof(sockaddr_un, sun_path) ? std::string(un->sun_path) : std::string();
  }
  return text;
}

std::string SocketAddress::to_string() const {
  if (family() == AF_UNIX) return "unix:" + host();
  std::string h = host();
  bool bracket = h.find(':') != std::string::npos;
  return (bracket ? "[" + h + "]" : h) + ":" + std::to_string(port());
}

int parse_listen_address(std::string_view text, ListenAddress &out) noexcept {
  std::string_view host, port_text;
  bool bracketed = false;
  uint16_t port = 0;
  if (!split_host_port(text, host, port_text, bracketed) || !parse_port(port_text, port)) return err::bad_address;
  out = ListenAddress{};
  if (host.empty() && !bracketed) {
    auto *v6 = reinterpret_cast<sockaddr_in6 *>(&out.address.storage);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_any;
    v6->sin6_port = htons(port);
    out.address.length = sizeof(sockaddr_in6);
    out.dual_stack = true;
    return 0;
  }
  return parse_ip(host, bracketed, port, out.address) ? 0 : err::bad_address;
}

int parse_ip_port(std::string_view text, SocketAddress &out) noexcept {
  std::string_view host, port_text;
  bool bracketed = false;
  uint16_t port = 0;
  if (!split_host_port(text, host, port_text, bracketed) || host.empty() || !parse_port(port_text, port))
    return err::bad_address;
  return parse_ip(host, bracketed, port, out) ? 0 : err::bad_address;
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

bool Cidr::contains(const IpKey &ip) const noexcept {
  unsigned bits = prefix;
  for (size_t i = 0; i < 16 && bits > 0; ++i) {
    unsigned take = bits >= 8 ? 8 : bits;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - take));
    if ((ip[i] & mask) != (network[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

int parse_cidr(std::string_view text, Cidr &out) noexcept {
  std::string_view host = text;
  long prefix = -1;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    host = text.substr(0, slash);
    std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3) return err::bad_address;
    prefix = 0;
    for (char c : bits) {
      if (c < '0' || c > '9') return err::bad_address;
      prefix = prefix * 10 + (c - '0');
    }
  }
  SocketAddress address;
  bool v6 = host.find(':') != std::string_view::npos;
  if (!parse_ip(host, v6, 0, address)) return err::bad_address;
  long max = v6 ? 128 : 32;
  if (prefix < 0) prefix = max;
  if (prefix > max) return err::bad_address;
  out.network = ip_key(address);
  out.prefix = static_cast<unsigned>(v6 ? prefix : prefix + 96);
  return 0;
}

}  // namespace gw
