// SPDX-License-Identifier: MIT
// Fuzz target: gatewayd's configuration parser (parse_config) on arbitrary bytes.
// Built twice, as `config` (the build's own NDEBUG setting: assertions on in
// the fuzz preset) and `config_ndebug` (config.cpp compiled with NDEBUG), since
// toml++ is header-only and changes with NDEBUG.
//
// Checked: no crash, sanitizer report or hang; a rejected file has errors, each
// one printable line that starts with the path; an accepted file holds only
// what the runtime applies: every listen address, allow entry and backend is
// exactly what lib's parser makes of its text, the canonical forms parse back
// to the same values, durations are within their limits and route names and
// listen addresses are unique; a serial route's device config passes
// SerialBackendConfig::validate.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "config.hpp"
#include "gw/address.hpp"

namespace {

using namespace gw::service;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_config: %s\n", what);
    std::abort();
  }
}

bool same(const gw::SocketAddress &a, const gw::SocketAddress &b) {
  return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

// No control byte, no DEL, valid UTF-8 without C1 controls or U+2028/U+2029.
bool one_printable_line(const std::string &m) {
  for (size_t i = 0; i < m.size();) {
    auto c = static_cast<unsigned char>(m[i]);
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || i + n > m.size()) return false;
    char32_t cp = c & (0xff >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      auto d = static_cast<unsigned char>(m[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029) return false;
    i += n;
  }
  return true;
}

void check_listen(const ListenAddress &listen) {
  gw::ListenAddress runtime;
  require(gw::parse_listen_address(listen.text, runtime) == 0, "stored listen address the runtime refuses");
  require(same(runtime.address, listen.address.address) && runtime.dual_stack == listen.address.dual_stack,
          "stored listen address differs from the runtime's");
  require(listen.canonical == runtime.to_string(), "canonical form is not the runtime's");
  gw::ListenAddress again;
  require(gw::parse_listen_address(listen.canonical, again) == 0, "canonical listen address does not parse");
  require(same(again.address, runtime.address) && again.dual_stack == runtime.dual_stack,
          "canonical listen address parses to another address");
  require(runtime.matches(runtime.address) || runtime.dual_stack, "a listen address does not match its own socket");
}

void check_allow(const Route &route) {
  require(route.allow.size() == route.allow_nets.size(), "allow texts and networks differ in number");
  for (size_t i = 0; i < route.allow.size(); ++i) {
    gw::Cidr runtime;
    require(gw::parse_cidr(route.allow[i], runtime) == 0, "stored allow entry the runtime refuses");
    require(runtime.network == route.allow_nets[i].network && runtime.prefix == route.allow_nets[i].prefix,
            "stored allow network differs from the runtime's");
    gw::Cidr again;
    require(gw::parse_cidr(runtime.to_string(), again) == 0, "canonical CIDR does not parse");
    require(again.network == runtime.network && again.prefix == runtime.prefix, "canonical CIDR differs");
    require(runtime.contains(runtime.network), "a network does not contain its own address");
  }
}

// A serial route's device config is what SerialBackend::create accepts, on
// the device its backend names; no other route has one.
void check_serial(const Route &route) {
  const Backend &backend = route.backend;
  require(route.serial.has_value() == (backend.kind == Backend::Kind::serial), "serial config on a non-serial route");
  if (!route.serial) return;
  const gw::SerialBackendConfig &serial = *route.serial;
  std::string why;
  require(serial.validate(why) == 0, "stored serial config the runtime refuses");
  require(!backend.address && backend.text == "serial:" + backend.path && serial.path == backend.path,
          "serial backend parts differ");
  require(serial.packing.max_packet <= 65536, "bad max_packet");
  require(serial.packing.delimiter.size() <= 2, "bad delimiter");
}

void check_backend(const Backend &backend) {
  if (backend.kind == Backend::Kind::echo) {
    require(backend.text == "echo" && !backend.address, "echo backend with an address");
    return;
  }
  if (backend.kind == Backend::Kind::serial) return;  // check_serial
  gw::BackendAddress runtime;
  require(gw::parse_backend_address(backend.text, runtime) == 0, "stored backend the runtime refuses");
  require(runtime.resolved == backend.address.has_value(), "backend address stored for a host name, or missing");
  if (backend.address) require(same(runtime.address, *backend.address), "stored backend address differs");
  require(runtime.host == backend.host && runtime.port == backend.port && runtime.path == backend.path,
          "stored backend parts differ");
}

void check_accepted(const Config &config) {
  constexpr long long max_ms = 2147483647;
  require(config.service.stop_timeout.count() >= 0 && config.service.stop_timeout.count() <= max_ms,
          "stop_timeout out of range");
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const Route &r = config.routes[i];
    require(!r.name.empty() && r.name.size() <= 255, "bad route name accepted");
    for (size_t j = 0; j < i; ++j) {
      require(config.routes[j].name != r.name, "duplicate route names accepted");
      if (r.listen && config.routes[j].listen)
        require(!r.listen->address.conflicts_with(config.routes[j].listen->address), "conflicting listens accepted");
    }
    for (auto d : {r.idle_timeout, r.frame_timeout}) require(d.count() >= 0 && d.count() <= max_ms, "bad duration");
    require(r.backlog >= 1 && r.backlog <= 65535, "bad backlog");
    require(r.max_frame >= 1 && r.max_frame <= 16u * 1024 * 1024, "bad max_frame");
    if (r.listen) check_listen(*r.listen);
    check_allow(r);
    check_backend(r.backend);
    check_serial(r);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string path = "fuzz.conf";
  ConfigResult result = parse_config(std::string_view(reinterpret_cast<const char *>(data), size), path);
  require(result.ok() != !result.errors.empty(), "exactly one of config and errors must be set");
  for (const std::string &message : result.errors) {
    if (!one_printable_line(message)) {
      std::fprintf(stderr, "fuzz_config: message: %s\n", printable_line(message).c_str());
      require(false, "an error message is not one printable line");
    }
    require(message.compare(0, path.size(), path) == 0, "an error message does not start with the path");
  }
  if (result.ok()) check_accepted(*result.config);
  return 0;
}
