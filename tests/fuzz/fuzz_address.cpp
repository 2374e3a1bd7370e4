// SPDX-License-Identifier: MIT
// Fuzz target: the address parsers (gw::parse_listen_address, parse_cidr,
// parse_backend_address, parse_ip_port), differentially against the
// configuration check.
//
// Input: byte 0 picks the kind (listen, allow, backend, ip:port); the rest is
// the address text. It is put into a one-route config file (escaped as a TOML
// string) and parsed with parse_config, and parsed by lib directly. Checked:
// the config check accepts exactly when the runtime's parser does (so nothing
// --check-config passes can be dropped or fail at startup), both give the same
// bytes, rejections come with a reason, and accepted values survive a round
// trip through their canonical text. Text that is not valid UTF-8 cannot be a
// TOML string: the config check must then refuse the file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "config.hpp"
#include "gw/address.hpp"
#include "gw/serial_backend.hpp"

namespace {

using namespace gw::service;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_address: %s\n", what);
    std::abort();
  }
}

bool same(const gw::SocketAddress &a, const gw::SocketAddress &b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    char32_t cp = n == 1 ? c : c & (0xff >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

// A TOML basic string holding exactly `text` (UTF-8 passes through as is).
std::string toml_string(std::string_view text) {
  std::string out = "\"";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      out += escape;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

const Route *parse_one_route(const std::string &key_line, ConfigResult &result) {
  result = parse_config("[[route]]\nname = \"r\"\nbackend = \"echo\"\n" + key_line + "\n", "fuzz.conf");
  return result.ok() ? &result.config->routes.at(0) : nullptr;
}

void listen_case(std::string_view text, bool representable) {
  gw::ListenAddress runtime;
  gw::AddressIssue issue;
  const bool lib_ok = gw::parse_listen_address(text, runtime, &issue) == 0;
  require(lib_ok == (issue.error == gw::AddressError::none), "listen: result and reason disagree");
  if (lib_ok) {
    gw::ListenAddress again;
    require(gw::parse_listen_address(runtime.to_string(), again) == 0 && same(again.address, runtime.address) &&
                again.dual_stack == runtime.dual_stack,
            "listen: canonical form does not round-trip");
  }
  ConfigResult result;
  const Route *route = parse_one_route("listen = " + toml_string(text), result);
  if (!representable) return require(!route, "config accepted invalid UTF-8");
  require((route != nullptr) == lib_ok, "listen: the config check and the runtime disagree");
  if (route) {
    require(same(route->listen->address.address, runtime.address) &&
                route->listen->address.dual_stack == runtime.dual_stack,
            "listen: stored address differs");
    require(route->listen->text == text, "listen: stored text differs");
  }
}

void allow_case(std::string_view text, bool representable) {
  gw::Cidr runtime;
  gw::AddressIssue issue;
  const bool lib_ok = gw::parse_cidr(text, runtime, &issue) == 0;
  require(lib_ok == (issue.error == gw::AddressError::none), "allow: result and reason disagree");
  if (lib_ok) {
    gw::Cidr again;
    require(gw::parse_cidr(runtime.to_string(), again) == 0 && again.network == runtime.network &&
                again.prefix == runtime.prefix,
            "allow: canonical form does not round-trip");
    require(runtime.prefix <= 128 && (!runtime.is_ipv4() || runtime.prefix >= 96), "allow: prefix out of range");
  }
  ConfigResult result;
  const Route *route = parse_one_route("allow = [" + toml_string(text) + "]", result);
  if (!representable) return require(!route, "config accepted invalid UTF-8");
  require((route != nullptr) == lib_ok, "allow: the config check and the runtime disagree");
  if (route) {
    require(route->allow_nets.size() == 1 && route->allow.size() == 1, "allow: not one stored entry");
    require(route->allow_nets[0].network == runtime.network && route->allow_nets[0].prefix == runtime.prefix,
            "allow: stored network differs");
  }
}

void backend_case(std::string_view text, bool representable) {
  gw::BackendAddress runtime;
  gw::AddressIssue issue;
  const bool lib_ok = gw::parse_backend_address(text, runtime, &issue) == 0;
  require(lib_ok == (issue.error == gw::AddressError::none), "backend: result and reason disagree");
  const bool echo = text == "echo";  // the config layer's own, not an address
  // A serial backend names a device, not an address: the config checks its
  // path with SerialBackendConfig::validate, the check SerialBackend::create
  // makes, so that is the runtime's answer for it.
  constexpr std::string_view serial_scheme = "serial:";
  const bool serial = text.substr(0, serial_scheme.size()) == serial_scheme;
  gw::SerialBackendConfig device;
  if (serial) device.path = std::string(text.substr(serial_scheme.size()));
  std::string why;
  const bool serial_ok = serial && device.validate(why) == 0;
  ConfigResult result;
  result = parse_config("[[route]]\nname = \"r\"\nbackend = " + toml_string(text) + "\n", "fuzz.conf");
  const Route *route = result.ok() ? &result.config->routes.at(0) : nullptr;
  if (!representable) return require(!route, "config accepted invalid UTF-8");
  if (serial) {
    require((route != nullptr) == serial_ok, "serial backend: the config check and the runtime disagree");
    if (route) require(route->serial && route->serial->path == device.path, "serial backend: stored path differs");
    return;
  }
  require((route != nullptr) == (lib_ok || echo), "backend: the config check and the runtime disagree");
  if (route && !echo) {
    const Backend &b = route->backend;
    require(b.address.has_value() == runtime.resolved, "backend: resolved differs");
    if (b.address) require(same(*b.address, runtime.address), "backend: stored address differs");
    require(b.host == runtime.host && b.port == runtime.port && b.path == runtime.path, "backend: parts differ");
  }
}

void ip_port_case(std::string_view text) {
  gw::SocketAddress runtime;
  gw::AddressIssue issue;
  const bool lib_ok = gw::parse_ip_port(text, runtime, &issue) == 0;
  require(lib_ok == (issue.error == gw::AddressError::none), "ip:port: result and reason disagree");
  // An IP literal backend is the same parse with "tcp://" in front.
  gw::BackendAddress backend;
  std::string as_backend = "tcp://" + std::string(text);
  const bool backend_ok = gw::parse_backend_address(as_backend, backend) == 0;
  if (lib_ok) require(backend_ok && backend.resolved && same(backend.address, runtime), "ip:port: backend differs");
  if (backend_ok && backend.resolved) require(lib_ok, "ip:port: refused what the backend parser takes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  std::string_view text(reinterpret_cast<const char *>(data + 1), size - 1);
  const bool representable = valid_utf8(text);
  switch (data[0] % 4) {
    case 0: listen_case(text, representable); break;
    case 1: allow_case(text, representable); break;
    case 2: backend_case(text, representable); break;
    case 3: ip_port_case(text); break;
  }
  return 0;
}
