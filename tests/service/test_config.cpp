// SPDX-License-Identifier: MIT
// gatewayd configuration layer (service/config.*): defaults, every error with its
// exact "PATH:LINE:COL: message", several errors at once, and the parsed forms.
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
// cmocka 1.1 declares its functions without extern "C".
extern "C" {
#include <cmocka.h>
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "activation.hpp"
#include "config.hpp"
#include "gw/errors.hpp"

using namespace gw::service;
using std::chrono::milliseconds;

namespace {

const std::string P = "gw.conf";

Config parse_ok(const std::string &text) {
  ConfigResult r = parse_config(text, P);
  if (!r.ok()) {
    for (const auto &e : r.errors) fprintf(stderr, "unexpected error: %s\n", e.c_str());
    fail_msg("config did not parse:\n%s", text.c_str());
  }
  assert_true(r.errors.empty());
  return *r.config;
}

// The exact list of errors, in order; prints both lists on a mismatch.
void expect_errors(const std::string &text, const std::vector<std::string> &want) {
  ConfigResult r = parse_config(text, P);
  assert_false(r.ok());
  bool same = r.errors == want;
  if (!same) {
    fprintf(stderr, "--- input:\n%s--- expected:\n", text.c_str());
    for (const auto &e : want) fprintf(stderr, "  %s\n", e.c_str());
    fprintf(stderr, "--- got:\n");
    for (const auto &e : r.errors) fprintf(stderr, "  %s\n", e.c_str());
  }
  assert_true(same);
}

void expect_error(const std::string &text, const std::string &want) { expect_errors(text, {want}); }

// Every key of a route, in the order of "valid keys: ..." (the key table's).
const std::string route_keys =
    "name, listen, backend, backlog, max_clients, max_clients_per_ip, idle_timeout, framing, max_frame, allow, "
    "keepalive, splice, frame_timeout, protocol, baud, data_bits, parity, stop_bits, flow_control, dtr, rts, rs485, "
    "rts_on_send, rts_after_send, delay_before_send, delay_after_send, serial_clients, readonly_clients, idle_gap, "
    "delimiter, keep_delimiter, max_packet, max_hold, serial_open, on_device_missing, device_wait, on_device_loss, "
    "lock_dir, response_timeout, retries, broadcast_delay, max_queue, unit_map, cache, rfc2217_allow_settings";

// A route with the two required keys, then `extra` lines (route starts on line 1,
// name on line 2, backend on line 3, extra from line 4).
std::string route(const std::string &extra) { return "[[route]]\nname = \"r\"\nbackend = \"echo\"\n" + extra; }

sockaddr_in v4(const char *addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, addr, &sa.sin_addr), 1);
  return sa;
}

sockaddr_in6 v6(const char *addr, uint16_t port) {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port);
  assert_int_equal(inet_pton(AF_INET6, addr, &sa.sin6_addr), 1);
  return sa;
}

template <typename Sockaddr>
gw::SocketAddress sa(const Sockaddr &s) {
  gw::SocketAddress out;
  assert_true(out.assign(reinterpret_cast<const sockaddr *>(&s), sizeof s));
  return out;
}

// The allow test the listener applies to a peer.
bool cidr_contains(const gw::Cidr &c, const gw::SocketAddress &peer) { return c.contains(gw::ip_key(peer)); }

int listen_family(const ListenAddress &l) { return l.address.dual_stack ? AF_UNSPEC : l.address.address.family(); }

void assert_route_defaults(const Route &r) {
  assert_int_equal(r.backlog, 128);
  assert_int_equal(r.max_clients, 256);
  assert_int_equal(r.max_clients_per_ip, 32);
  assert_int_equal(r.idle_timeout.count(), 60000);
  assert_int_equal(static_cast<int>(r.framing), static_cast<int>(Framing::raw));
  assert_int_equal(r.max_frame, 65536);
  assert_true(r.keepalive);
  assert_true(r.splice);
  assert_true(r.allow.empty());
  assert_true(r.allow_nets.empty());
  assert_int_equal(r.frame_timeout.count(), 30000);
}

// ---- valid files -----------------------------------------------------------------

void default_config_file(void **) {
  ConfigResult r = load_config(GWT_DEFAULT_CONF);
  for (const auto &e : r.errors) fprintf(stderr, "%s\n", e.c_str());
  assert_true(r.ok());
  const Config &c = *r.config;
  assert_int_equal(static_cast<int>(c.service.log_level), static_cast<int>(LogLevel::info));
  assert_int_equal(c.service.stop_timeout.count(), 5000);
  assert_int_equal(c.routes.size(), 1);
  const Route &e = c.routes[0];
  assert_string_equal(e.name.c_str(), "echo");
  assert_true(e.listen.has_value());
  assert_int_equal(listen_family(*e.listen), AF_INET);
  assert_string_equal(e.listen->canonical.c_str(), "127.0.0.1:7000");
  assert_int_equal(e.listen->port(), 7000);
  assert_int_equal(static_cast<int>(e.backend.kind), static_cast<int>(Backend::Kind::echo));
  assert_route_defaults(e);
  assert_true(e.where.line > 0);
}

// The commented-out examples of the default file, uncommented (a line "#key"
// or "#[[route]]" without the '#'), are a valid file too: the serial route is
// one, with every serial key, and the Modbus route another.
void default_config_examples(void **) {
  FILE *file = fopen(GWT_DEFAULT_CONF, "r");
  assert_non_null(file);
  std::string text;
  char line[512];
  while (fgets(line, sizeof line, file)) {
    const bool example = line[0] == '#' && (line[1] == '[' || (line[1] >= 'a' && line[1] <= 'z'));
    text += example ? line + 1 : line;
  }
  fclose(file);
  Config c = parse_ok(text);
  assert_int_equal(c.routes.size(), 3);
  const Route &serial = c.routes[1];
  assert_int_equal(static_cast<int>(serial.backend.kind), static_cast<int>(Backend::Kind::serial));
  assert_true(serial.serial.has_value());
  assert_int_equal(serial.serial->packing.idle_gap_tenth_chars, 35);
  assert_int_equal(c.routes[0].allow_nets.size(), 2);  // the echo route's allow example
  const Route &modbus = c.routes[2];
  assert_int_equal(static_cast<int>(modbus.protocol), static_cast<int>(Protocol::modbus));
  assert_true(modbus.modbus.has_value());
  assert_int_equal(modbus.modbus->unit_map.size(), 1);
  assert_int_equal(modbus.serial->settings.baud, 19200);
}

void empty_file_has_no_routes(void **) {
  for (const char *text : {"", "\n\n# only a comment\n", "[service]\n"}) {
    Config c = parse_ok(text);
    assert_int_equal(c.routes.size(), 0);
    assert_int_equal(static_cast<int>(c.service.log_level), static_cast<int>(LogLevel::info));
    assert_int_equal(c.service.stop_timeout.count(), 5000);
  }
}

void route_defaults(void **) {
  Config c = parse_ok("\n" + route(""));
  assert_int_equal(c.routes.size(), 1);
  const Route &r = c.routes[0];
  assert_string_equal(r.name.c_str(), "r");
  assert_false(r.listen.has_value());
  assert_int_equal(r.where.line, 2);
  assert_int_equal(r.where.column, 1);
  assert_route_defaults(r);
}

void every_key_set(void **) {
  Config c = parse_ok(R"(
[service]
log_level = "debug"
stop_timeout = "500ms"

[[route]]
name = "modbus-1.a_b"
listen = "[::1]:1502"
backend = "tcp://plc.example:502"
backlog = 65535
max_clients = 0
max_clients_per_ip = 0
idle_timeout = 0
framing = "u32be"
max_frame = 16777216
allow = ["10.0.0.0/8", "::1", "192.168.1.7"]
keepalive = false
splice = false
frame_timeout = "250ms"

[[route]]
name = "second"
backend = "unix:/run/app.sock"
framing = "u16be"
max_frame = 1
backlog = 1
idle_timeout = "1h"
)");
  assert_int_equal(static_cast<int>(c.service.log_level), static_cast<int>(LogLevel::debug));
  assert_int_equal(c.service.stop_timeout.count(), 500);
  assert_int_equal(c.routes.size(), 2);
  const Route &r = c.routes[0];
  assert_string_equal(r.name.c_str(), "modbus-1.a_b");
  assert_string_equal(r.listen->canonical.c_str(), "[::1]:1502");
  assert_int_equal(static_cast<int>(r.backend.kind), static_cast<int>(Backend::Kind::tcp));
  assert_string_equal(r.backend.host.c_str(), "plc.example");
  assert_int_equal(r.backend.port, 502);
  assert_int_equal(r.backlog, 65535);
  assert_int_equal(r.max_clients, 0);
  assert_int_equal(r.max_clients_per_ip, 0);
  assert_int_equal(r.idle_timeout.count(), 0);
  assert_int_equal(static_cast<int>(r.framing), static_cast<int>(Framing::u32be));
  assert_int_equal(r.max_frame, 16777216);
  assert_false(r.keepalive);
  assert_false(r.splice);
  assert_int_equal(r.frame_timeout.count(), 250);
  assert_false(r.backend.address.has_value());  // a host name: resolved by the daemon
  assert_int_equal(r.allow.size(), 3);
  assert_string_equal(r.allow[1].c_str(), "::1");
  assert_int_equal(r.allow_nets.size(), 3);
  assert_true(r.allow_nets[0].is_ipv4());
  assert_int_equal(r.allow_nets[0].written_prefix(), 8);
  assert_false(r.allow_nets[1].is_ipv4());
  assert_int_equal(r.allow_nets[1].written_prefix(), 128);
  assert_int_equal(r.allow_nets[2].written_prefix(), 32);

  const Route &s = c.routes[1];
  assert_int_equal(static_cast<int>(s.backend.kind), static_cast<int>(Backend::Kind::unix_socket));
  assert_string_equal(s.backend.path.c_str(), "/run/app.sock");
  assert_true(s.backend.address.has_value());
  assert_string_equal(s.backend.address->to_string().c_str(), "unix:/run/app.sock");
  assert_string_equal(s.backend.text.c_str(), "unix:/run/app.sock");
  assert_int_equal(static_cast<int>(s.framing), static_cast<int>(Framing::u16be));
  assert_int_equal(s.max_frame, 1);
  assert_int_equal(s.backlog, 1);
  assert_int_equal(s.idle_timeout.count(), 3600000);
  assert_true(s.keepalive);
  assert_int_equal(s.max_clients, 256);
}

void enum_names(void **) {
  const char *levels[] = {"error", "warning", "info", "debug"};
  for (int i = 0; i < 4; ++i) {
    Config c = parse_ok(std::string("[service]\nlog_level = \"") + levels[i] + "\"\n");
    assert_int_equal(static_cast<int>(c.service.log_level), i);
    assert_string_equal(to_string(c.service.log_level), levels[i]);
  }
  const char *framings[] = {"raw", "line", "u16be", "u32be"};
  for (int i = 0; i < 4; ++i) {
    Config c = parse_ok(route(std::string("framing = \"") + framings[i] + "\"\n"));
    assert_int_equal(static_cast<int>(c.routes[0].framing), i);
    assert_string_equal(to_string(c.routes[0].framing), framings[i]);
  }
  assert_string_equal(to_string(Backend::Kind::unix_socket), "unix");
}

// ---- file handling and syntax ----------------------------------------------------

void missing_file(void **) {
  char dir[] = "/tmp/gwt_config_XXXXXX";
  assert_non_null(mkdtemp(dir));
  const std::string path = std::string(dir) + "/gateway.conf";
  ConfigResult r = load_config(path);
  assert_false(r.ok());
  assert_int_equal(r.errors.size(), 1);
  assert_string_equal(r.errors[0].c_str(), (path + ": cannot open: No such file or directory").c_str());

  // A real file: errors carry its path.
  FILE *f = fopen(path.c_str(), "w");
  assert_non_null(f);
  fputs("[service]\nlog_level = 3\n", f);
  fclose(f);
  r = load_config(path);
  assert_int_equal(r.errors.size(), 1);
  assert_string_equal(r.errors[0].c_str(), (path + ":2:13: 'log_level' must be a string (got integer)").c_str());

  // An empty file is fine.
  f = fopen(path.c_str(), "w");
  fclose(f);
  r = load_config(path);
  assert_true(r.ok());
  assert_int_equal(r.config->routes.size(), 0);

  unlink(path.c_str());
  rmdir(dir);
}

void toml_syntax_error_stops(void **) {
  // Only the syntax error: the unknown key before it is never looked at.
  expect_error("bogus = 1\n" + route("backlog = 1\nbacklog = 2\n"),
               "gw.conf:6:11: Error while parsing key-value pair: cannot redefine existing integer 'backlog'");
  expect_error("[service\n", "gw.conf:1:9: Error while parsing table header: expected ']', saw '\\n'");
}

// ---- unknown keys, did you mean --------------------------------------------------

void unknown_keys(void **) {
  expect_error("[[route]]\nname = \"modbus\"\nbackend = \"echo\"\n  bakclog = 12\n",
               "gw.conf:4:3: unknown key 'bakclog' in route \"modbus\" (did you mean 'backlog'?)");
  expect_error(route("max_client = 3\n"),
               "gw.conf:4:1: unknown key 'max_client' in route \"r\" (did you mean 'max_clients'?)");
  expect_error(route("Framing = \"raw\"\n"),
               "gw.conf:4:1: unknown key 'Framing' in route \"r\" (did you mean 'framing'?)");
  expect_error(route("kepealive = true\n"),  // a transposition counts 1
               "gw.conf:4:1: unknown key 'kepealive' in route \"r\" (did you mean 'keepalive'?)");
  expect_error(route("baklogg = 1\n"),  // distance 2: still suggested
               "gw.conf:4:1: unknown key 'baklogg' in route \"r\" (did you mean 'backlog'?)");
  expect_error(route("bklogg = 1\n"),  // distance 3: the list instead
               "gw.conf:4:1: unknown key 'bklogg' in route \"r\" (valid keys: " + route_keys + ")");
  expect_error(route("tls = true\n"), "gw.conf:4:1: unknown key 'tls' in route \"r\" (valid keys: " + route_keys + ")");
  expect_error("[service]\nloglevel = \"info\"\n",
               "gw.conf:2:1: unknown key 'loglevel' in [service] (did you mean 'log_level'?)");
  expect_error("[service]\nuser = \"gw\"\n",
               "gw.conf:2:1: unknown key 'user' in [service] (valid keys: log_level, stop_timeout)");
  expect_error("[[routes]]\nname = \"x\"\n", "gw.conf:1:3: unknown top-level key 'routes' (did you mean 'route'?)");
  expect_error("log_level = \"info\"\n", "gw.conf:1:1: unknown top-level key 'log_level' (valid keys: service, route)");
  // Before its name is known (or when it is no string) a route is numbered.
  expect_errors(route("") + "[[route]]\nname = 5\nbackend = \"echo\"\nlisen = \":1\"\n",
                {"gw.conf:5:8: 'name' must be a string (got integer)",
                 "gw.conf:7:1: unknown key 'lisen' in route #2 (did you mean 'listen'?)"});
}

void unknown_key_in_unnamed_route(void **) {
  expect_errors(route("") + "[[route]]\nbackend = \"echo\"\nlisen = \":1\"\n",
                {"gw.conf:4:1: route #2: missing required key 'name' (a unique name, also the systemd "
                 "FileDescriptorName of its socket)",
                 "gw.conf:6:1: unknown key 'lisen' in route #2 (did you mean 'listen'?)"});
}

// ---- types, enums, ranges -------------------------------------------------------

void wrong_types(void **) {
  expect_error(route("backlog = \"128\"\n"), "gw.conf:4:11: 'backlog' must be an integer (got string)");
  expect_error(route("max_clients = 1.5\n"), "gw.conf:4:15: 'max_clients' must be an integer (got float)");
  expect_error(route("keepalive = \"yes\"\n"), "gw.conf:4:13: 'keepalive' must be a boolean (got string)");
  expect_error(route("splice = 1\n"), "gw.conf:4:10: 'splice' must be a boolean (got integer)");
  expect_error(route("framing = 1\n"), "gw.conf:4:11: 'framing' must be a string (got integer)");
  expect_error(route("listen = 7000\n"), "gw.conf:4:10: 'listen' must be a string (got integer)");
  expect_error(route("idle_timeout = true\n"),
               "gw.conf:4:16: 'idle_timeout' must be a duration string or an integer number of seconds "
               "(got boolean)");
  expect_error(route("max_frame = 1979-05-27\n"), "gw.conf:4:13: 'max_frame' must be an integer (got date)");
  expect_error("service = 1\n", "gw.conf:1:11: 'service' must be a table ([service]) (got integer)");
  expect_error("[route]\nname = \"x\"\n",
               "gw.conf:1:1: 'route' must be an array of tables: write [[route]], not [route] (got table)");
  expect_error("route = [1]\n", "gw.conf:1:10: route #1 must be a table ([[route]]) (got integer)");
}

void enum_errors(void **) {
  expect_error(route("framing = \"lines\"\n"),
               "gw.conf:4:11: 'framing' must be one of raw, line, u16be, u32be (got \"lines\")");
  expect_error("[service]\nlog_level = \"verbose\"\n",
               "gw.conf:2:13: 'log_level' must be one of error, warning, info, debug (got \"verbose\")");
  expect_error("[service]\nlog_level = \"INFO\"\n",
               "gw.conf:2:13: 'log_level' must be one of error, warning, info, debug (got \"INFO\")");
}

void range_errors(void **) {
  expect_error(route("backlog = 0\n"), "gw.conf:4:11: 'backlog' must be between 1 and 65535 (got 0)");
  expect_error(route("backlog = 65536\n"), "gw.conf:4:11: 'backlog' must be between 1 and 65535 (got 65536)");
  expect_error(route("max_frame = 16777217\n"),
               "gw.conf:4:13: 'max_frame' must be between 1 and 16777216 (got 16777217)");
  expect_error(route("max_frame = 0\n"), "gw.conf:4:13: 'max_frame' must be between 1 and 16777216 (got 0)");
  expect_error(route("max_clients = -1\n"), "gw.conf:4:15: 'max_clients' must be between 0 and 1000000 (got -1)");
  expect_error(route("max_clients_per_ip = 1000001\n"),
               "gw.conf:4:22: 'max_clients_per_ip' must be between 0 and 1000000 (got 1000001)");
}

// ---- names ------------------------------------------------------------------------

void names(void **) {
  const std::string n255(255, 'a');
  Config c = parse_ok("[[route]]\nname = \"" + n255 + "\"\nbackend = \"echo\"\n");
  assert_int_equal(c.routes[0].name.size(), 255);
  expect_error("[[route]]\nname = \"" + n255 + "b\"\nbackend = \"echo\"\n",
               "gw.conf:2:8: 'name' is 256 characters long; at most 255 are allowed");
  expect_error("[[route]]\nname = \"\"\nbackend = \"echo\"\n", "gw.conf:2:8: 'name' must not be empty");
  expect_error("[[route]]\nname = \"a:b\"\nbackend = \"echo\"\n",
               "gw.conf:2:8: 'name' may only contain letters, digits, '_', '.' and '-' (got \"a:b\")");
  expect_error("[[route]]\nname = \"tab\\there\"\nbackend = \"echo\"\n",
               "gw.conf:2:8: 'name' may only contain letters, digits, '_', '.' and '-' (got \"tab\\x09here\")");
  expect_error("[[route]]\nname = \"x\"\n",
               "gw.conf:1:1: route \"x\": missing required key 'backend' (echo, tcp://HOST:PORT, unix:/PATH or "
               "serial:/DEVICE)");
}

// ---- durations --------------------------------------------------------------------

void durations(void **) {
  struct {
    const char *value;
    long long ms;
  } ok[] = {
      {"\"60s\"", 60000}, {"\"500ms\"", 500}, {"\"5m\"", 300000}, {"\"1h\"", 3600000},      {"\"0\"", 0},
      {"\"0s\"", 0},      {"0", 0},           {"90", 90000},      {"\"596h\"", 2145600000}, {"2147483", 2147483000}};
  for (const auto &t : ok) {
    Config c = parse_ok(route(std::string("idle_timeout = ") + t.value + "\n"));
    assert_int_equal(c.routes[0].idle_timeout.count(), t.ms);
    c = parse_ok(std::string("[service]\nstop_timeout = ") + t.value + "\n");
    assert_int_equal(c.service.stop_timeout.count(), t.ms);
  }
  const std::string shape = R"(must be a duration such as "60s", "500ms", "5m", "1h" or "0")";
  expect_error(route("idle_timeout = \"60\"\n"),
               "gw.conf:4:16: 'idle_timeout' " + shape + " (got \"60\"; did you mean \"60s\"?)");
  expect_error(route("idle_timeout = \"1.5s\"\n"), "gw.conf:4:16: 'idle_timeout' " + shape + " (got \"1.5s\")");
  expect_error(route("idle_timeout = \"60 s\"\n"), "gw.conf:4:16: 'idle_timeout' " + shape + " (got \"60 s\")");
  expect_error(route("idle_timeout = \"-1s\"\n"), "gw.conf:4:16: 'idle_timeout' " + shape + " (got \"-1s\")");
  expect_error(route("idle_timeout = \"1d\"\n"), "gw.conf:4:16: 'idle_timeout' " + shape + " (got \"1d\")");
  expect_error(route("idle_timeout = -5\n"), "gw.conf:4:16: 'idle_timeout' must not be negative (got -5)");
  expect_error(route("idle_timeout = \"597h\"\n"),
               "gw.conf:4:16: 'idle_timeout' must be at most 2147483647ms (got \"597h\")");
  expect_error("[service]\nstop_timeout = 2147484\n",
               "gw.conf:2:16: 'stop_timeout' must be at most 2147483647ms (got 2147484)");
  expect_error("[service]\nstop_timeout = 5.0\n",
               "gw.conf:2:16: 'stop_timeout' must be a duration string or an integer number of seconds (got float)");

  milliseconds d{};
  assert_true(parse_duration("250ms", d));
  assert_int_equal(d.count(), 250);
  assert_false(parse_duration("", d));
  assert_false(parse_duration("s", d));
  assert_false(parse_duration("5", d));
  assert_false(parse_duration("99999999999999999999h", d));
  assert_string_equal(format_duration(milliseconds(0)).c_str(), "0");
  assert_string_equal(format_duration(milliseconds(60000)).c_str(), "1m");
  assert_string_equal(format_duration(milliseconds(7200000)).c_str(), "2h");
  assert_string_equal(format_duration(milliseconds(5000)).c_str(), "5s");
  assert_string_equal(format_duration(milliseconds(1500)).c_str(), "1500ms");
}

// ---- listen -----------------------------------------------------------------------

void listen_forms(void **) {
  // Scopes name interfaces of this host: "lo" (index 1) always exists.
  struct {
    const char *text;
    int family;  // AF_UNSPEC: ":PORT", every address (dual-stack)
    const char *canonical;
    uint16_t port;
    uint32_t scope_id;
  } ok[] = {
      {"127.0.0.1:7000", AF_INET, "127.0.0.1:7000", 7000, 0},
      {"0.0.0.0:0", AF_INET, "0.0.0.0:0", 0, 0},
      {":7000", AF_UNSPEC, ":7000", 7000, 0},
      {"[::1]:7000", AF_INET6, "[::1]:7000", 7000, 0},
      {"[::]:65535", AF_INET6, "[::]:65535", 65535, 0},
      {"[0:0:0:0:0:0:0:1]:80", AF_INET6, "[::1]:80", 80, 0},
      {"[FE80::1%lo]:7000", AF_INET6, "[fe80::1%lo]:7000", 7000, 1},
      {"[fe80::2%1]:1", AF_INET6, "[fe80::2%lo]:1", 1, 1},  // by index, shown by name
  };
  for (const auto &t : ok) {
    Config c = parse_ok(route(std::string("listen = \"") + t.text + "\"\n"));
    const ListenAddress &l = *c.routes[0].listen;
    assert_int_equal(listen_family(l), t.family);
    assert_string_equal(l.canonical.c_str(), t.canonical);
    assert_string_equal(l.text.c_str(), t.text);
    assert_int_equal(l.port(), t.port);
    if (t.family == AF_INET6)
      assert_int_equal(reinterpret_cast<const sockaddr_in6 *>(&l.address.address.storage)->sin6_scope_id, t.scope_id);
  }
  Config c = parse_ok(route("listen = \"[::1]:7000\"\n"));
  const auto &a = reinterpret_cast<const sockaddr_in6 *>(&c.routes[0].listen->address.address.storage)->sin6_addr;
  assert_int_equal(a.s6_addr[15], 1);
  assert_int_equal(a.s6_addr[0], 0);
}

void listen_errors(void **) {
  const std::string shape = R"(must be ADDRESS:PORT such as "127.0.0.1:7000", "[::1]:7000" or ":7000")";
  expect_error(route("listen = \"7000\"\n"), "gw.conf:4:10: 'listen' " + shape + " (got \"7000\")");
  expect_error(route("listen = \"[::1]7000\"\n"), "gw.conf:4:10: 'listen' " + shape + " (got \"[::1]7000\")");
  expect_error(route("listen = \"[]:7000\"\n"), "gw.conf:4:10: 'listen' " + shape + " (got \"[]:7000\")");
  expect_error(route("listen = \"127.0.0.1:70000\"\n"),
               "gw.conf:4:10: 'listen' port must be a number between 0 and 65535 (got \"127.0.0.1:70000\")");
  expect_error(route("listen = \"127.0.0.1:\"\n"),
               "gw.conf:4:10: 'listen' port must be a number between 0 and 65535 (got \"127.0.0.1:\")");
  expect_error(route("listen = \"127.0.0.1:-1\"\n"),
               "gw.conf:4:10: 'listen' port must be a number between 0 and 65535 (got \"127.0.0.1:-1\")");
  expect_error(route("listen = \"localhost:7000\"\n"),
               "gw.conf:4:10: 'listen' address \"localhost\" is not an IPv4 literal; use an address, not a "
               "host name (got \"localhost:7000\")");
  expect_error(route("listen = \"256.0.0.1:7000\"\n"),
               "gw.conf:4:10: 'listen' address \"256.0.0.1\" is not an IPv4 literal; use an address, not a "
               "host name (got \"256.0.0.1:7000\")");
  expect_error(route("listen = \"::1:7000\"\n"),
               "gw.conf:4:10: 'listen' IPv6 addresses must be in brackets, e.g. \"[::1]:7000\" (got \"::1:7000\")");
  expect_error(route("listen = \"[::g]:7000\"\n"),
               "gw.conf:4:10: 'listen' address \"::g\" is not an IPv6 literal (got \"[::g]:7000\")");
  expect_error(route("listen = \"[fe80::1]:7000\"\n"),
               "gw.conf:4:10: 'listen' link-local address needs a scope, e.g. \"[fe80::1%eth0]:7000\" "
               "(got \"[fe80::1]:7000\")");
  expect_error(route("listen = \"[::1%eth0]:7000\"\n"),
               "gw.conf:4:10: 'listen' scope %eth0 is only valid on a link-local address (fe80::/10) "
               "(got \"[::1%eth0]:7000\")");
  expect_error(route("listen = \"[fe80::1%]:7000\"\n"),
               "gw.conf:4:10: 'listen' scope \"\" is not an interface name or index of this host (see ip link) "
               "(got \"[fe80::1%]:7000\")");
}

void listen_matches_socket(void **) {
  Config c = parse_ok(
      "[[route]]\nname=\"a\"\nbackend=\"echo\"\nlisten=\":7000\"\n"
      "[[route]]\nname=\"b\"\nbackend=\"echo\"\nlisten=\"127.0.0.1:7001\"\n"
      "[[route]]\nname=\"c\"\nbackend=\"echo\"\nlisten=\"[::1]:7002\"\n");
  const gw::ListenAddress &any = c.routes[0].listen->address, &lo4 = c.routes[1].listen->address,
                          &lo6 = c.routes[2].listen->address;
  assert_true(any.matches(sa(v4("0.0.0.0", 7000))));
  assert_true(any.matches(sa(v6("::", 7000))));
  assert_false(any.matches(sa(v4("127.0.0.1", 7000))));
  assert_false(any.matches(sa(v4("0.0.0.0", 7001))));
  assert_true(lo4.matches(sa(v4("127.0.0.1", 7001))));
  assert_false(lo4.matches(sa(v4("127.0.0.2", 7001))));
  assert_true(lo4.matches(sa(v6("::ffff:127.0.0.1", 7001))));
  assert_true(lo6.matches(sa(v6("::1", 7002))));
  assert_false(lo6.matches(sa(v6("::1", 7000))));
  assert_false(lo6.matches(sa(v4("127.0.0.1", 7002))));
  assert_false(lo6.matches(gw::SocketAddress{}));  // getsockname gave nothing
}

// ---- backend ----------------------------------------------------------------------

void backends(void **) {
  using K = Backend::Kind;
  struct {
    const char *text;
    K kind;
    const char *host;
    uint16_t port;
    const char *path;
  } ok[] = {
      {"echo", K::echo, "", 0, ""},
      {"tcp://127.0.0.1:502", K::tcp, "127.0.0.1", 502, ""},
      {"tcp://[::1]:65535", K::tcp, "::1", 65535, ""},
      {"tcp://[fe80::1%lo]:1", K::tcp, "fe80::1%lo", 1, ""},
      {"tcp://plc-1.local:502", K::tcp, "plc-1.local", 502, ""},
      {"tcp://localhost:8080", K::tcp, "localhost", 8080, ""},
      {"unix:/run/app.sock", K::unix_socket, "", 0, "/run/app.sock"},
  };
  for (const auto &t : ok) {
    Config c = parse_ok(std::string("[[route]]\nname = \"r\"\nbackend = \"") + t.text + "\"\n");
    const Backend &b = c.routes[0].backend;
    assert_int_equal(static_cast<int>(b.kind), static_cast<int>(t.kind));
    assert_string_equal(b.host.c_str(), t.host);
    assert_int_equal(b.port, t.port);
    assert_string_equal(b.path.c_str(), t.path);
    assert_string_equal(b.text.c_str(), t.text);
    // Ready to connect to unless the host is a name, which the daemon resolves.
    const bool name = t.kind == K::tcp && (t.host[0] == 'p' || t.host[0] == 'l');
    assert_int_equal(b.address.has_value(), t.kind != K::echo && !name);
    if (b.address && t.kind == K::tcp) assert_int_equal(b.address->port(), t.port);
  }
}

void backend_errors(void **) {
  auto b = [](const std::string &v) { return "[[route]]\nname = \"r\"\nbackend = \"" + v + "\"\n"; };
  expect_error(b("serial/dev/ttyS0"),
               "gw.conf:3:11: 'backend' must be echo, tcp://HOST:PORT, unix:/PATH or "
               "serial:/DEVICE (got \"serial/dev/ttyS0\")");
  expect_error(b("Echo"),
               "gw.conf:3:11: 'backend' must be echo, tcp://HOST:PORT, unix:/PATH or serial:/DEVICE (got \"Echo\")");
  expect_error(b("tcp://127.0.0.1:0"),
               "gw.conf:3:11: 'backend' port must be a number between 1 and 65535 (got \"tcp://127.0.0.1:0\")");
  expect_error(b("tcp://127.0.0.1:65536"),
               "gw.conf:3:11: 'backend' port must be a number between 1 and 65535 (got \"tcp://127.0.0.1:65536\")");
  expect_error(b("tcp://127.0.0.1"),
               "gw.conf:3:11: 'backend' must be tcp://HOST:PORT, e.g. \"tcp://127.0.0.1:502\" or "
               "\"tcp://[::1]:502\" (got \"tcp://127.0.0.1\")");
  expect_error(b("tcp://:502"),
               "gw.conf:3:11: 'backend' must be tcp://HOST:PORT, e.g. \"tcp://127.0.0.1:502\" or "
               "\"tcp://[::1]:502\" (got \"tcp://:502\")");
  expect_error(b("tcp://::1:502"),
               "gw.conf:3:11: 'backend' IPv6 addresses must be in brackets, e.g. \"tcp://[::1]:502\" "
               "(got \"tcp://::1:502\")");
  expect_error(b("tcp://10.0.0.256:502"),
               "gw.conf:3:11: 'backend' address \"10.0.0.256\" is not a valid IPv4 address "
               "(got \"tcp://10.0.0.256:502\")");
  expect_error(b("tcp://bad host:502"),
               "gw.conf:3:11: 'backend' host \"bad host\" is not an IP address or host name "
               "(got \"tcp://bad host:502\")");
  expect_error(b("tcp://-x.example:502"),
               "gw.conf:3:11: 'backend' host \"-x.example\" is not an IP address or host name "
               "(got \"tcp://-x.example:502\")");
  expect_error(b("tcp://[::g]:502"),
               "gw.conf:3:11: 'backend' address \"::g\" is not an IPv6 literal (got \"tcp://[::g]:502\")");
  expect_error(b("unix:run/app.sock"),
               "gw.conf:3:11: 'backend' unix socket path must be absolute, e.g. \"unix:/run/app.sock\" "
               "(got \"unix:run/app.sock\")");
  const std::string longpath = "/" + std::string(107, 'p');
  expect_error(b("unix:" + longpath),
               "gw.conf:3:11: 'backend' unix socket path is 108 bytes long; at most 107 "
               "fit in sockaddr_un (got \"unix:" +
                   longpath + "\")");
  Config c = parse_ok(b("unix:/" + std::string(106, 'p')));  // 107 bytes fit
  assert_int_equal(c.routes[0].backend.path.size(), 107);
}

// ---- allow ------------------------------------------------------------------------

void allow_lists(void **) {
  Config c =
      parse_ok(route("allow = [\"127.0.0.0/8\", \"::1/128\", \"192.168.1.7\", \"2001:db8::/32\", "
                     "\"0.0.0.0/0\"]\n"));
  const Route &r = c.routes[0];
  assert_int_equal(r.allow_nets.size(), 5);
  assert_string_equal(r.allow[0].c_str(), "127.0.0.0/8");
  assert_string_equal(r.allow_nets[0].to_string().c_str(), "127.0.0.0/8");
  assert_int_equal(r.allow_nets[2].written_prefix(), 32);
  assert_int_equal(r.allow_nets[4].written_prefix(), 0);

  const gw::Cidr &lo = r.allow_nets[0], &lo6 = r.allow_nets[1], &host = r.allow_nets[2], &doc = r.allow_nets[3];
  assert_true(cidr_contains(lo, sa(v4("127.1.2.3", 1))));
  assert_false(cidr_contains(lo, sa(v4("128.0.0.1", 1))));
  assert_true(cidr_contains(lo, sa(v6("::ffff:127.0.0.9", 1))));  // dual-stack listener
  assert_false(cidr_contains(lo, sa(v6("::1", 1))));
  assert_true(cidr_contains(lo6, sa(v6("::1", 1))));
  assert_false(cidr_contains(lo6, sa(v4("127.0.0.1", 1))));
  assert_true(cidr_contains(host, sa(v4("192.168.1.7", 1))));
  assert_false(cidr_contains(host, sa(v4("192.168.1.8", 1))));
  assert_true(cidr_contains(doc, sa(v6("2001:db8:ffff::1", 1))));
  assert_false(cidr_contains(doc, sa(v6("2001:db9::1", 1))));

  Config only = parse_ok(route("allow = [\"10.0.0.0/8\"]\n"));
  assert_true(only.routes[0].allows(sa(v4("10.9.9.9", 5))));
  assert_false(only.routes[0].allows(sa(v4("11.0.0.1", 5))));
  Config open = parse_ok(route(""));
  assert_true(open.routes[0].allows(sa(v4("11.0.0.1", 5))));    // no list: everyone
  Config odd = parse_ok(route("allow = [\"10.1.2.0/23\"]\n"));  // prefix not on a byte boundary
  assert_true(odd.routes[0].allows(sa(v4("10.1.3.255", 5))));
  assert_false(odd.routes[0].allows(sa(v4("10.1.4.0", 5))));
}

void allow_errors(void **) {
  expect_error(route("allow = [\"10.0.0.1/8\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)");
  expect_error(route("allow = [\"2001:db8::1/32\"]\n"),
               "gw.conf:4:10: 'allow' entry \"2001:db8::1/32\" has host bits set (did you mean \"2001:db8::/32\"?)");
  expect_error(route("allow = [\"10.0.0.0/33\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.0/33\" has a bad prefix length (must be 0 to 32)");
  expect_error(route("allow = [\"::/129\"]\n"),
               "gw.conf:4:10: 'allow' entry \"::/129\" has a bad prefix length (must be 0 to 128)");
  expect_error(route("allow = [\"10.0.0.0/\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.0/\" has a bad prefix length (must be 0 to 32)");
  expect_error(route("allow = [\"localhost\"]\n"),
               "gw.conf:4:10: 'allow' entry \"localhost\" is not an address or CIDR such as \"127.0.0.0/8\" or "
               "\"::1/128\"");
  expect_error(route("allow = \"127.0.0.1\"\n"),
               "gw.conf:4:9: 'allow' must be an array of strings (got string; write allow = [\"127.0.0.1\"])");
  expect_error(route("allow = []\n"), "gw.conf:4:9: 'allow' must not be empty (leave it out to allow every client)");
  // Every bad entry is reported, each at its own column.
  expect_errors(route("allow = [\"::1\", 7, \"1.2.3.4/40\"]\n"),
                {"gw.conf:4:17: 'allow' entries must be strings (got integer)",
                 "gw.conf:4:20: 'allow' entry \"1.2.3.4/40\" has a bad prefix length (must be 0 to 32)"});
}

// ---- duplicates -------------------------------------------------------------------

void duplicate_names(void **) {
  expect_error(
      "[service]\n\n[[route]]\nname = \"echo\"\nbackend = \"echo\"\n\n"
      "[[route]]\nname = \"echo\"\nbackend = \"echo\"\n",
      "gw.conf:8:8: duplicate route name \"echo\" (first defined at gw.conf:4:8)");
  // Three times: both repeats point at the first.
  expect_errors(
      "[[route]]\nname=\"a\"\nbackend=\"echo\"\n[[route]]\nname=\"a\"\nbackend=\"echo\"\n"
      "[[route]]\nname=\"a\"\nbackend=\"echo\"\n",
      {"gw.conf:5:6: duplicate route name \"a\" (first defined at gw.conf:2:6)",
       "gw.conf:8:6: duplicate route name \"a\" (first defined at gw.conf:2:6)"});
  // Names are case-sensitive, like systemd's FileDescriptorName.
  Config c = parse_ok("[[route]]\nname=\"a\"\nbackend=\"echo\"\n[[route]]\nname=\"A\"\nbackend=\"echo\"\n");
  assert_int_equal(c.routes.size(), 2);
}

std::string two_listens(const char *a, const char *b) {
  return std::string("[[route]]\nname = \"a\"\nbackend = \"echo\"\nlisten = \"") + a +
         "\"\n[[route]]\nname = \"b\"\nbackend = \"echo\"\nlisten = \"" + b + "\"\n";
}

void duplicate_listens(void **) {
  expect_error(two_listens("127.0.0.1:7000", "127.0.0.1:7000"),
               "gw.conf:8:10: duplicate listen address \"127.0.0.1:7000\" (already used by route \"a\" at "
               "gw.conf:4:10)");
  expect_error(two_listens("[::1]:7000", "[0:0::1]:7000"),
               "gw.conf:8:10: duplicate listen address \"[0:0::1]:7000\" (same as \"[::1]:7000\" of route \"a\" "
               "at gw.conf:4:10)");
  expect_error(two_listens(":7000", "0.0.0.0:7000"),
               "gw.conf:8:10: duplicate listen address \"0.0.0.0:7000\" (same as \":7000\" of route \"a\" at "
               "gw.conf:4:10)");
  expect_error(two_listens("[::]:7000", ":7000"),
               "gw.conf:8:10: duplicate listen address \":7000\" (same as \"[::]:7000\" of route \"a\" at "
               "gw.conf:4:10)");
  // Not duplicates: other port, other address, port 0 (each socket gets its own).
  parse_ok(two_listens("127.0.0.1:7000", "127.0.0.1:7001"));
  parse_ok(two_listens("127.0.0.1:7000", "127.0.0.2:7000"));
  parse_ok(two_listens("127.0.0.1:7000", "[::1]:7000"));
  parse_ok(two_listens(":7000", "127.0.0.1:7000"));
  parse_ok(two_listens("127.0.0.1:0", "127.0.0.1:0"));
  parse_ok(two_listens("[fe80::1%lo]:7000", "[fe80::2%lo]:7000"));
  // The same link-local address on two interfaces is two sockets. Only "lo"
  // is sure to exist here, so the second interface is set by its index.
  gw::ListenAddress on_lo, on_other;
  assert_int_equal(gw::parse_listen_address("[fe80::1%lo]:7000", on_lo), 0);
  on_other = on_lo;
  reinterpret_cast<sockaddr_in6 *>(&on_other.address.storage)->sin6_scope_id = 2;
  assert_false(on_lo.conflicts_with(on_other));
  assert_true(on_lo.conflicts_with(on_lo));
  // An interface by name or by index is the same socket.
  expect_error(two_listens("[fe80::1%lo]:7000", "[fe80::1%1]:7000"),
               "gw.conf:8:10: duplicate listen address \"[fe80::1%1]:7000\" (same as \"[fe80::1%lo]:7000\" of "
               "route \"a\" at gw.conf:4:10)");
}

// ---- many errors at once ------------------------------------------------------------

void many_errors_in_file_order(void **) {
  // Keys are visited in toml++'s (alphabetical) order; errors come out by position.
  expect_errors(R"([service]
log_level = "loud"
stop_timeout = "5"
colour = true

[[route]]
name = "modbus"
listen = "127.0.0.1:99999"
backend = "tcp://plc:502"
bakclog = 12
framing = "lines"
allow = ["10.0.0.1/8"]
keepalive = 1

[[route]]
name = "modbus"
listen = "0.0.0.0:502"
backend = "echo"

[[route]]
listen = "0.0.0.0:502"
)",
                {
                    "gw.conf:2:13: 'log_level' must be one of error, warning, info, debug (got \"loud\")",
                    "gw.conf:3:16: 'stop_timeout' must be a duration such as \"60s\", \"500ms\", \"5m\", \"1h\" or "
                    "\"0\" (got \"5\"; did you mean \"5s\"?)",
                    "gw.conf:4:1: unknown key 'colour' in [service] (valid keys: log_level, stop_timeout)",
                    "gw.conf:8:10: 'listen' port must be a number between 0 and 65535 (got \"127.0.0.1:99999\")",
                    "gw.conf:10:1: unknown key 'bakclog' in route \"modbus\" (did you mean 'backlog'?)",
                    "gw.conf:11:11: 'framing' must be one of raw, line, u16be, u32be (got \"lines\")",
                    "gw.conf:12:10: 'allow' entry \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)",
                    "gw.conf:13:13: 'keepalive' must be a boolean (got integer)",
                    "gw.conf:16:8: duplicate route name \"modbus\" (first defined at gw.conf:7:8)",
                    "gw.conf:20:1: route #3: missing required key 'name' (a unique name, also the systemd "
                    "FileDescriptorName of its socket)",
                    "gw.conf:20:1: route #3: missing required key 'backend' (echo, tcp://HOST:PORT, unix:/PATH or "
                    "serial:/DEVICE)",
                    "gw.conf:21:10: duplicate listen address \"0.0.0.0:502\" (already used by route \"modbus\" at "
                    "gw.conf:17:10)",
                });
}

void control_bytes_are_escaped(void **) {
  expect_error(route("framing = \"raw\\n\"\n"),
               "gw.conf:4:11: 'framing' must be one of raw, line, u16be, u32be (got \"raw\\x0a\")");
  expect_error(route("\"bad\\\"key\" = 1\n"),
               "gw.conf:4:1: unknown key 'bad\\\"key' in route \"r\" (valid keys: " + route_keys + ")");
}

// ---- fail closed: what the check accepts is what the runtime applies ----------------

// The entries that passed --check-config while the runtime dropped them, which
// left the allow list empty and let every client in.
void allow_entries_the_runtime_refuses(void **) {
  expect_error(route("allow = [\"10.0.0.0/0008\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.0/0008\" has a prefix length with leading zeros (must be 0 "
               "to 32, written without them: \"10.0.0.0/8\")");
  expect_error(route("allow = [\"10.0.0.0\\u0000:/8\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.0\\x00:/8\" contains a NUL byte");
  expect_error(route("allow = [\"::/0128\"]\n"),
               "gw.conf:4:10: 'allow' entry \"::/0128\" has a prefix length with leading zeros (must be 0 to 128, "
               "written without them: \"::/128\")");
  expect_error(route("allow = [\"10.0.0.0/0033\"]\n"),
               "gw.conf:4:10: 'allow' entry \"10.0.0.0/0033\" has a prefix length with leading zeros (must be 0 "
               "to 32, written without them)");
  expect_error(route("allow = [\"fe80::1%lo\"]\n"),
               "gw.conf:4:10: 'allow' entry \"fe80::1%lo\" is not an address or CIDR such as \"127.0.0.0/8\" or "
               "\"::1/128\"");
  // "0" alone is no leading zero.
  Config c = parse_ok(route("allow = [\"0.0.0.0/0\"]\n"));
  assert_int_equal(c.routes[0].allow_nets[0].written_prefix(), 0);
}

// Every accepted entry is stored exactly as lib's parser reads it, so the
// daemon's ListenerConfig::allow holds one network per entry.
void allow_entries_are_the_runtime_networks(void **) {
  const char *entries[] = {"127.0.0.0/8", "::1", "10.1.2.0/23", "0.0.0.0/0", "::ffff:10.0.0.0/104"};
  std::string list;
  for (const char *e : entries) list += std::string(list.empty() ? "" : ", ") + "\"" + e + "\"";
  Config c = parse_ok(route("allow = [" + list + "]\n"));
  const Route &r = c.routes[0];
  assert_int_equal(r.allow_nets.size(), 5);
  for (std::size_t i = 0; i < 5; ++i) {
    gw::Cidr runtime;
    assert_int_equal(gw::parse_cidr(entries[i], runtime), 0);
    assert_true(runtime.network == r.allow_nets[i].network);
    assert_int_equal(runtime.prefix, r.allow_nets[i].prefix);
  }
  // Route::allows is the listener's own test.
  assert_true(r.allows(sa(v6("::ffff:10.1.3.4", 9))));
  Config only = parse_ok(route("allow = [\"192.0.2.0/24\"]\n"));
  assert_false(only.routes[0].allows(sa(v4("198.51.100.1", 9))));
  assert_false(only.routes[0].allows(sa(v6("::1", 9))));
}

void listen_strictness(void **) {
  expect_error(route("listen = \"127.0.0.1:0017732\"\n"),
               "gw.conf:4:10: 'listen' port \"0017732\" must be written without leading zeros (got "
               "\"127.0.0.1:0017732\")");
  expect_error(route("listen = \":07000\"\n"),
               "gw.conf:4:10: 'listen' port \"07000\" must be written without leading zeros (got \":07000\")");
  expect_error(route("listen = \"127.0.0.1\\u0000:7000\"\n"),
               "gw.conf:4:10: 'listen' contains a NUL byte (got \"127.0.0.1\\x00:7000\")");
  expect_error(route("listen = \"[fe80::1%nosuch9]:7000\"\n"),
               "gw.conf:4:10: 'listen' scope \"nosuch9\" is not an interface name or index of this host (see ip "
               "link) (got \"[fe80::1%nosuch9]:7000\")");
  expect_error(route("listen = \"[fe80::1%01]:7000\"\n"),
               "gw.conf:4:10: 'listen' scope \"01\" is not an interface name or index of this host (see ip link) "
               "(got \"[fe80::1%01]:7000\")");
  expect_error(route("listen = \"[fe80::1%4294967295]:7000\"\n"),
               "gw.conf:4:10: 'listen' scope \"4294967295\" is not an interface name or index of this host (see "
               "ip link) (got \"[fe80::1%4294967295]:7000\")");
  // The same strings are refused by the runtime's parser, which is the one
  // the check used: nothing the check accepts can fail to parse at startup.
  for (const char *text : {"127.0.0.1:0017732", ":07000", "[fe80::1%nosuch9]:7000", "[fe80::1%01]:7000"}) {
    gw::ListenAddress la;
    assert_int_equal(gw::parse_listen_address(text, la), gw::err::EADDRESS);
  }
  gw::ListenAddress la;
  assert_int_equal(gw::parse_listen_address(std::string_view("127.0.0.1\0:1", 12), la), gw::err::EADDRESS);
}

void backend_strictness(void **) {
  auto b = [](const std::string &v) { return "[[route]]\nname = \"r\"\nbackend = \"" + v + "\"\n"; };
  expect_error(b("tcp://127.0.0.1:0502"),
               "gw.conf:3:11: 'backend' port \"0502\" must be written without leading zeros (got "
               "\"tcp://127.0.0.1:0502\")");
  expect_error(b("unix:/run/a\\u0000b"), "gw.conf:3:11: 'backend' contains a NUL byte (got \"unix:/run/a\\x00b\")");
  expect_error(b("tcp://[fe80::1]:502"),
               "gw.conf:3:11: 'backend' link-local address needs a scope, e.g. \"tcp://[fe80::1%eth0]:502\" "
               "(got \"tcp://[fe80::1]:502\")");
  expect_error(b("tcp://[fe80::1%nosuch9]:502"),
               "gw.conf:3:11: 'backend' scope \"nosuch9\" is not an interface name or index of this host (see ip "
               "link) (got \"tcp://[fe80::1%nosuch9]:502\")");
  // An IP literal is stored ready to connect to: the same bytes lib's parser gives.
  Config c = parse_ok(b("tcp://[::1]:502"));
  gw::SocketAddress runtime;
  assert_int_equal(gw::parse_ip_port("[::1]:502", runtime), 0);
  assert_true(c.routes[0].backend.address.has_value());
  assert_int_equal(c.routes[0].backend.address->length, runtime.length);
  assert_memory_equal(&c.routes[0].backend.address->storage, &runtime.storage, runtime.length);
}

void frame_timeout_key(void **) {
  Config c = parse_ok(route("frame_timeout = \"5s\"\n"));
  assert_int_equal(c.routes[0].frame_timeout.count(), 5000);
  c = parse_ok(route("frame_timeout = 0\n"));
  assert_int_equal(c.routes[0].frame_timeout.count(), 0);
  expect_error(route("frame_timeout = \"597h\"\n"),
               "gw.conf:4:17: 'frame_timeout' must be at most 2147483647ms (got \"597h\")");
  expect_error(route("frame_timeout = \"5\"\n"),
               "gw.conf:4:17: 'frame_timeout' must be a duration such as \"60s\", \"500ms\", \"5m\", \"1h\" or "
               "\"0\" (got \"5\"; did you mean \"5s\"?)");
  expect_error(route("frame_timout = \"5s\"\n"),
               "gw.conf:4:1: unknown key 'frame_timout' in route \"r\" (did you mean 'frame_timeout'?)");
}

// ---- serial routes (issue 9) ---------------------------------------------------------

// A serial route, then `extra` lines from line 4 (as route()).
std::string serial_route(const std::string &extra) {
  return "[[route]]\nname = \"r\"\nbackend = \"serial:/dev/ttyUSB0\"\n" + extra;
}

// Each {extra lines, the one error} on a serial route.
void expect_serial_errors(const std::vector<std::pair<std::string, std::string>> &cases) {
  for (const auto &[extra, want] : cases) expect_error(serial_route(extra), want);
}

const gw::SerialBackendConfig &serial_of(const Config &c) {
  assert_true(c.routes[0].serial.has_value());
  return *c.routes[0].serial;
}

void serial_defaults(void **) {
  Config c = parse_ok(serial_route(""));
  const Route &r = c.routes[0];
  assert_int_equal(static_cast<int>(r.backend.kind), static_cast<int>(Backend::Kind::serial));
  assert_string_equal(r.backend.path.c_str(), "/dev/ttyUSB0");
  assert_string_equal(r.backend.text.c_str(), "serial:/dev/ttyUSB0");
  assert_false(r.backend.address.has_value());
  assert_string_equal(to_string(r.backend.kind), "serial");
  // The route's own defaults hold for serial routes too: raw framing, and
  // an idle_timeout that only traffic either way resets.
  assert_route_defaults(r);
  const gw::SerialBackendConfig &s = serial_of(c);
  assert_string_equal(s.path.c_str(), "/dev/ttyUSB0");
  assert_int_equal(s.settings.baud, 9600);
  assert_int_equal(s.settings.data_bits, 8);
  assert_int_equal(static_cast<int>(s.settings.parity), static_cast<int>(gw::Parity::none));
  assert_int_equal(s.settings.stop_bits, 1);
  assert_int_equal(static_cast<int>(s.settings.flow_control), static_cast<int>(gw::FlowControl::none));
  assert_false(s.settings.dtr.has_value());
  assert_false(s.settings.rts.has_value());
  assert_false(s.settings.rs485.enabled);
  assert_int_equal(static_cast<int>(s.clients), static_cast<int>(gw::SerialClients::exclusive));
  assert_true(s.readonly_clients.empty());
  assert_int_equal(s.packing.idle_gap_us, 0);
  assert_int_equal(s.packing.idle_gap_tenth_chars, 0);
  assert_true(s.packing.delimiter.empty());
  assert_true(s.packing.keep_delimiter);
  assert_int_equal(s.packing.max_packet, 0);
  assert_int_equal(s.packing.max_hold_ms, 0);
  assert_int_equal(static_cast<int>(s.open), static_cast<int>(gw::SerialOpen::on_connect));
  assert_int_equal(static_cast<int>(s.on_missing), static_cast<int>(gw::DeviceMissing::refuse));
  assert_int_equal(s.device_wait_ms, 10000);
  assert_int_equal(static_cast<int>(s.on_loss), static_cast<int>(gw::DeviceLoss::close));
  assert_string_equal(s.open_options.lock_dir.c_str(), "/run/lock");
  // Any absolute path: a by-id name, a symlink, a device that is not there.
  c = parse_ok("[[route]]\nname = \"r\"\nbackend = \"serial:/dev/serial/by-id/usb-FTDI_FT232R-if00-port0\"\n");
  assert_string_equal(serial_of(c).path.c_str(), "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0");
  c = parse_ok("[[route]]\nname = \"r\"\nbackend = \"serial:/nonexistent/ttyX\"\n");
  assert_string_equal(serial_of(c).path.c_str(), "/nonexistent/ttyX");
  // Other backends have no serial config.
  assert_false(parse_ok(route("")).routes[0].serial.has_value());
}

void serial_every_key(void **) {
  Config c = parse_ok(serial_route(R"(baud = 250000
data_bits = 7
parity = "even"
stop_bits = 2
flow_control = "xonxoff"
dtr = false
rs485 = true
rts_on_send = false
rts_after_send = true
delay_before_send = "5ms"
delay_after_send = "100ms"
serial_clients = "shared"
readonly_clients = ["10.0.0.0/8", "::1"]
idle_gap = "3.5char"
delimiter = "\r\n"
keep_delimiter = false
max_packet = 65536
max_hold = "250ms"
serial_open = "always"
on_device_missing = "wait"
device_wait = "1m"
on_device_loss = "hold"
lock_dir = ""
)"));
  const gw::SerialBackendConfig &s = serial_of(c);
  assert_int_equal(s.settings.baud, 250000);
  assert_int_equal(s.settings.data_bits, 7);
  assert_int_equal(static_cast<int>(s.settings.parity), static_cast<int>(gw::Parity::even));
  assert_int_equal(s.settings.stop_bits, 2);
  assert_int_equal(static_cast<int>(s.settings.flow_control), static_cast<int>(gw::FlowControl::xonxoff));
  assert_true(s.settings.dtr.has_value());
  assert_false(*s.settings.dtr);
  assert_false(s.settings.rts.has_value());
  assert_true(s.settings.rs485.enabled);
  assert_false(s.settings.rs485.rts_on_send);
  assert_true(s.settings.rs485.rts_after_send);
  assert_int_equal(s.settings.rs485.delay_before_send_ms, 5);
  assert_int_equal(s.settings.rs485.delay_after_send_ms, 100);
  assert_int_equal(static_cast<int>(s.clients), static_cast<int>(gw::SerialClients::shared));
  assert_int_equal(s.readonly_clients.size(), 2);
  assert_string_equal(s.readonly_clients[0].to_string().c_str(), "10.0.0.0/8");
  assert_string_equal(s.readonly_clients[1].to_string().c_str(), "::1/128");
  assert_int_equal(s.packing.idle_gap_tenth_chars, 35);
  assert_int_equal(s.packing.idle_gap_us, 0);
  assert_string_equal(s.packing.delimiter.c_str(), "\r\n");
  assert_false(s.packing.keep_delimiter);
  assert_int_equal(s.packing.max_packet, 65536);
  assert_int_equal(s.packing.max_hold_ms, 250);
  assert_int_equal(static_cast<int>(s.open), static_cast<int>(gw::SerialOpen::always));
  assert_int_equal(static_cast<int>(s.on_missing), static_cast<int>(gw::DeviceMissing::wait));
  assert_int_equal(s.device_wait_ms, 60000);
  assert_int_equal(static_cast<int>(s.on_loss), static_cast<int>(gw::DeviceLoss::hold));
  assert_true(s.open_options.lock_dir.empty());

  // The other forms and edges of each.
  c = parse_ok(serial_route("baud = 50\ndata_bits = 5\nstop_bits = 1\nrts = true\ndtr = true\n"));
  assert_int_equal(serial_of(c).settings.baud, 50);
  assert_int_equal(serial_of(c).settings.data_bits, 5);
  assert_true(*serial_of(c).settings.rts);
  assert_true(*serial_of(c).settings.dtr);
  c = parse_ok(serial_route("baud = 4000000\nrs485 = true\ndelay_before_send = 0\n"));
  assert_int_equal(serial_of(c).settings.baud, 4000000);
  assert_int_equal(serial_of(c).settings.rs485.delay_before_send_ms, 0);
  c = parse_ok(serial_route("idle_gap = \"5ms\"\nmax_packet = 1\nlock_dir = \"/tmp/locks\"\n"));
  assert_int_equal(serial_of(c).packing.idle_gap_us, 5000);
  assert_int_equal(serial_of(c).packing.idle_gap_tenth_chars, 0);
  assert_int_equal(serial_of(c).packing.max_packet, 1);
  assert_string_equal(serial_of(c).open_options.lock_dir.c_str(), "/tmp/locks");
  c = parse_ok(serial_route("idle_gap = \"3char\"\ndelimiter = \"\\u0003\"\n"));
  assert_int_equal(serial_of(c).packing.idle_gap_tenth_chars, 30);
  assert_string_equal(serial_of(c).packing.delimiter.c_str(), "\x03");
  c = parse_ok(serial_route("idle_gap = \"9999.9char\"\n"));
  assert_int_equal(serial_of(c).packing.idle_gap_tenth_chars, 99999);
  c = parse_ok(serial_route("idle_gap = \"4294967ms\"\n"));
  assert_int_equal(serial_of(c).packing.idle_gap_us, 4294967000u);
  c = parse_ok(serial_route("idle_gap = \"0\"\ndelimiter = \"\\n\"\ndevice_wait = 0\nmax_hold = 2\n"));
  assert_int_equal(serial_of(c).packing.idle_gap_us, 0);
  assert_string_equal(serial_of(c).packing.delimiter.c_str(), "\n");
  assert_int_equal(serial_of(c).device_wait_ms, 0);
  assert_int_equal(serial_of(c).packing.max_hold_ms, 2000);
  // A serial route's framing applies client -> device, as on any route.
  c = parse_ok(serial_route("framing = \"line\"\n"));
  assert_int_equal(static_cast<int>(c.routes[0].framing), static_cast<int>(Framing::line));
}

// Every word of the core's name tables is accepted, and is what it names.
template <typename Enum, size_t N>
void check_names(const char *key, const gw::EnumName<Enum> (&names)[N], Enum gw::SerialBackendConfig::*field) {
  for (const auto &row : names) {
    Config c = parse_ok(serial_route(std::string(key) + " = \"" + row.name + "\"\n"));
    assert_int_equal(static_cast<int>(serial_of(c).*field), static_cast<int>(row.value));
  }
}

void serial_enum_names(void **) {
  check_names("serial_clients", gw::serial_clients_names, &gw::SerialBackendConfig::clients);
  check_names("serial_open", gw::serial_open_names, &gw::SerialBackendConfig::open);
  check_names("on_device_missing", gw::device_missing_names, &gw::SerialBackendConfig::on_missing);
  check_names("on_device_loss", gw::device_loss_names, &gw::SerialBackendConfig::on_loss);
  for (const auto &row : gw::parity_names) {
    Config c = parse_ok(serial_route(std::string("parity = \"") + row.name + "\"\n"));
    assert_int_equal(static_cast<int>(serial_of(c).settings.parity), static_cast<int>(row.value));
  }
  for (const auto &row : gw::flow_control_names) {
    Config c = parse_ok(serial_route(std::string("flow_control = \"") + row.name + "\"\n"));
    assert_int_equal(static_cast<int>(serial_of(c).settings.flow_control), static_cast<int>(row.value));
  }
}

// The reasons are SerialSettings::validate's and SerialBackendConfig::validate's,
// at the value, with the route.
void serial_value_errors(void **) {
  const std::string in = " in route \"r\"";
  expect_serial_errors({
      {"baud = 3\n", "gw.conf:4:8: baud 3 is out of range (50 to 4000000)" + in},
      {"baud = 4000001\n", "gw.conf:4:8: baud 4000001 is out of range (50 to 4000000)" + in},
      // Numbers no field can hold are named as written.
      {"baud = -9600\n", "gw.conf:4:8: baud -9600 is out of range (50 to 4000000)" + in},
      {"baud = 4294967296\n", "gw.conf:4:8: baud 4294967296 is out of range (50 to 4000000)" + in},
      {"data_bits = 9\n", "gw.conf:4:13: data_bits 9 is out of range (5 to 8)" + in},
      {"data_bits = -1\n", "gw.conf:4:13: data_bits -1 is out of range (5 to 8)" + in},
      {"data_bits = 9999999999\n", "gw.conf:4:13: data_bits 9999999999 is out of range (5 to 8)" + in},
      {"stop_bits = 0\n", "gw.conf:4:13: stop_bits 0 is out of range (1 or 2)" + in},
      {"delay_before_send = \"101ms\"\n",
       "gw.conf:4:21: rs485 delay_before_send 101 ms is out of range (0 to 100 ms, the kernel's limit)" + in},
      // Checked whether rs485 is on or not: a value out of range is a mistake either way.
      {"rs485 = false\ndelay_after_send = 1\n",
       "gw.conf:5:20: rs485 delay_after_send 1000 ms is out of range (0 to 100 ms, the kernel's limit)" + in},
      {"delay_after_send = -1\n", "gw.conf:4:20: 'delay_after_send' must not be negative (got -1)"},
      {"max_hold = \"1x\"\n",
       "gw.conf:4:12: 'max_hold' must be a duration such as \"60s\", \"500ms\", \"5m\", \"1h\" or \"0\" "
       "(got \"1x\")"},
      {"delimiter = \"abc\"\n",
       "gw.conf:4:13: delimiter has 3 bytes: a packet delimiter is one or two bytes, as in \"\\r\\n\"" + in},
      // U+00E9 is two bytes in UTF-8.
      {"delimiter = \"\\u00e9\\n\"\n",
       "gw.conf:4:13: delimiter has 3 bytes: a packet delimiter is one or two bytes, as in \"\\r\\n\"" + in},
      {"delimiter = \"\"\n",
       "gw.conf:4:13: 'delimiter' must not be empty (leave it out for packets without a delimiter)"},
      {"max_packet = 0\n", "gw.conf:4:14: 'max_packet' must be between 1 and 65536 (got 0)"},
      {"max_packet = 65537\n", "gw.conf:4:14: 'max_packet' must be between 1 and 65536 (got 65537)"},
      {"device_wait = \"597h\"\n", "gw.conf:4:15: 'device_wait' must be at most 2147483647ms (got \"597h\")"},
  });
}

void serial_type_and_name_errors(void **) {
  expect_serial_errors({
      {"baud = \"9600\"\n", "gw.conf:4:8: 'baud' must be an integer (got string)"},
      {"stop_bits = 1.5\n", "gw.conf:4:13: 'stop_bits' must be an integer (got float)"},
      {"dtr = \"on\"\n", "gw.conf:4:7: 'dtr' must be a boolean (got string)"},
      {"rs485 = 1\n", "gw.conf:4:9: 'rs485' must be a boolean (got integer)"},
      {"keep_delimiter = \"yes\"\n", "gw.conf:4:18: 'keep_delimiter' must be a boolean (got string)"},
      {"delimiter = 13\n", "gw.conf:4:13: 'delimiter' must be a string (got integer)"},
      {"lock_dir = false\n", "gw.conf:4:12: 'lock_dir' must be a string (got boolean)"},
      {"parity = \"N\"\n", "gw.conf:4:10: 'parity' must be one of none, even, odd, mark, space (got \"N\")"},
      {"flow_control = \"hardware\"\n",
       "gw.conf:4:16: 'flow_control' must be one of none, rtscts, xonxoff (got \"hardware\")"},
      {"serial_clients = \"single\"\n",
       "gw.conf:4:18: 'serial_clients' must be one of exclusive, kick-old, shared (got \"single\")"},
      {"serial_open = \"boot\"\n", "gw.conf:4:15: 'serial_open' must be one of on-connect, always (got \"boot\")"},
      {"on_device_missing = \"block\"\n",
       "gw.conf:4:21: 'on_device_missing' must be one of refuse, wait (got \"block\")"},
      {"on_device_loss = \"keep\"\n", "gw.conf:4:18: 'on_device_loss' must be one of close, hold (got \"keep\")"},
      {"parity = 0\n", "gw.conf:4:10: 'parity' must be a string (got integer)"},
      {"idle_gap = \"10000char\"\n", "gw.conf:4:12: 'idle_gap' must be at most 9999.9char (got \"10000char\")"},
      {"idle_gap = \"2h\"\n", "gw.conf:4:12: 'idle_gap' must be at most 4294967ms (got \"2h\")"},
      {"idle_gap = 5\n", "gw.conf:4:12: 'idle_gap' must be a string such as \"5ms\" or \"3.5char\" (got integer)"},
  });
  for (const char *bad :
       {"5", "3.55char", ".5char", "3.char", "char", "3.5 char", "3.5chars", "-1ms", "123456789char"}) {
    expect_error(serial_route(std::string("idle_gap = \"") + bad + "\"\n"),
                 std::string("gw.conf:4:12: 'idle_gap' must be a time such as \"5ms\" or a number of characters "
                             "such as \"3.5char\" (got \"") +
                     bad + "\")");
  }
}

void serial_readonly_clients_errors(void **) {
  // Fail closed, as `allow`: one wrong entry is an error, never dropped.
  expect_error(serial_route("readonly_clients = \"10.0.0.0/8\"\n"),
               "gw.conf:4:20: 'readonly_clients' must be an array of strings (got string; write "
               "readonly_clients = [\"10.0.0.0/8\"])");
  expect_error(serial_route("readonly_clients = []\n"),
               "gw.conf:4:20: 'readonly_clients' must not be empty (leave it out to let every client write)");
  expect_errors(serial_route("readonly_clients = [\"10.0.0.1/8\", 7, \"::1/129\", \"192.168.1.0/24\"]\n"),
                {"gw.conf:4:21: 'readonly_clients' entry \"10.0.0.1/8\" has host bits set (did you mean "
                 "\"10.0.0.0/8\"?)",
                 "gw.conf:4:35: 'readonly_clients' entries must be strings (got integer)",
                 "gw.conf:4:38: 'readonly_clients' entry \"::1/129\" has a bad prefix length (must be 0 to 128)"});
  // The same parser as `allow`: what one accepts, the other does.
  Config c = parse_ok(serial_route("readonly_clients = [\"192.0.2.7\", \"fe80::/10\"]\n"));
  assert_int_equal(serial_of(c).readonly_clients.size(), 2);
  assert_int_equal(serial_of(c).readonly_clients[0].written_prefix(), 32);
  assert_int_equal(serial_of(c).readonly_clients[1].written_prefix(), 10);
}

// Values that must agree are checked once the whole route is known, and
// reported at the key the reason names first.
void serial_values_that_disagree(void **) {
  const std::string in = " in route \"r\"";
  expect_error(serial_route("rs485 = true\nrts_on_send = false\n"),
               "gw.conf:4:9: rs485 rts_on_send and rts_after_send are both low: RTS would never switch the "
               "transceiver's direction; set one of them to the other level" +
                   in);
  expect_error(serial_route("flow_control = \"rtscts\"\nrs485 = true\n"),
               "gw.conf:5:9: rs485 and flow_control rtscts both need RTS: use flow_control none or xonxoff with "
               "rs485" +
                   in);
  expect_error(serial_route("rs485 = true\nrts = false\n"),
               "gw.conf:5:7: rts cannot be set while rs485 is enabled: the driver drives RTS; remove the rts "
               "setting" +
                   in);
  expect_error(serial_route("flow_control = \"rtscts\"\nrts = true\n"),
               "gw.conf:5:7: rts cannot be set with flow_control rtscts: the driver drives RTS; remove the rts "
               "setting" +
                   in);
  expect_error(serial_route("on_device_missing = \"wait\"\ndevice_wait = 0\n"),
               "gw.conf:5:15: device_wait is 0 with on_device_missing = \"wait\": give a time, as in \"10s\", or "
               "use \"refuse\"" +
                   in);
  // Off, RS-485's levels are left alone and may be anything.
  parse_ok(serial_route("rts_on_send = false\nrts_after_send = false\n"));
}

void serial_backend_errors(void **) {
  auto b = [](const std::string &v) { return "[[route]]\nname = \"r\"\nbackend = \"" + v + "\"\n"; };
  expect_error(b("serial:ttyUSB0"),
               "gw.conf:3:11: serial device path \"ttyUSB0\" is not absolute: write it from "
               "the root, as in /dev/ttyUSB0 in route \"r\"");
  expect_error(b("serial:"),
               "gw.conf:3:11: serial device path \"\" is not absolute: write it from the root, as "
               "in /dev/ttyUSB0 in route \"r\"");
  // Serial keys are not "not for this backend" when the backend is wrong.
  expect_error(b("serial:dev/ttyS0") + "baud = 9600\n",
               "gw.conf:3:11: serial device path \"dev/ttyS0\" is not absolute: write it from the root, as in "
               "/dev/ttyUSB0 in route \"r\"");
}

// A serial key anywhere else is an error naming the key and the backend:
// ignored, it would hide a backend written wrong.
void serial_keys_on_other_backends(void **) {
  expect_error(route("baud = 9600\n"),
               "gw.conf:4:1: 'baud' is a serial setting, not one for the echo backend \"echo\" in route \"r\" "
               "(remove it, or use a serial backend such as \"serial:/dev/ttyUSB0\")");
  expect_errors(
      "[[route]]\nname = \"plc\"\nbackend = \"tcp://127.0.0.1:502\"\nparity = \"even\"\n"
      "readonly_clients = [\"::1\"]\n",
      {"gw.conf:4:1: 'parity' is a serial setting, not one for the tcp backend \"tcp://127.0.0.1:502\" "
       "in route \"plc\" (remove it, or use a serial backend such as \"serial:/dev/ttyUSB0\")",
       "gw.conf:5:1: 'readonly_clients' is a serial setting, not one for the tcp backend "
       "\"tcp://127.0.0.1:502\" in route \"plc\" (remove it, or use a serial backend such as "
       "\"serial:/dev/ttyUSB0\")"});
  expect_error("[[route]]\nname = \"app\"\nbackend = \"unix:/run/app.sock\"\n  lock_dir = \"\"\n",
               "gw.conf:4:3: 'lock_dir' is a serial setting, not one for the unix backend \"unix:/run/app.sock\" "
               "in route \"app\" (remove it, or use a serial backend such as \"serial:/dev/ttyUSB0\")");
  // A backend that is wrong is reported alone: its kind is unknown.
  expect_error("[[route]]\nname = \"r\"\nbackend = \"tcp://x\"\nbaud = 9600\n",
               "gw.conf:3:11: 'backend' must be tcp://HOST:PORT, e.g. \"tcp://127.0.0.1:502\" or "
               "\"tcp://[::1]:502\" (got \"tcp://x\")");
  expect_error("[[route]]\nname = \"r\"\nbaud = 9600\n",
               "gw.conf:1:1: route \"r\": missing required key 'backend' (echo, tcp://HOST:PORT, unix:/PATH or "
               "serial:/DEVICE)");
}

void serial_key_suggestions(void **) {
  expect_error(serial_route("buad = 9600\n"), "gw.conf:4:1: unknown key 'buad' in route \"r\" (did you mean 'baud'?)");
  expect_error(serial_route("flow_contrl = \"none\"\n"),
               "gw.conf:4:1: unknown key 'flow_contrl' in route \"r\" (did you mean 'flow_control'?)");
  expect_error(serial_route("readonly_client = []\n"),
               "gw.conf:4:1: unknown key 'readonly_client' in route \"r\" (did you mean 'readonly_clients'?)");
  expect_error(serial_route("on_device_los = \"hold\"\n"),
               "gw.conf:4:1: unknown key 'on_device_los' in route \"r\" (did you mean 'on_device_loss'?)");
  expect_error(serial_route("databits = 8\n"),
               "gw.conf:4:1: unknown key 'databits' in route \"r\" (did you mean 'data_bits'?)");
}

// ---- Modbus routes (issue 10) --------------------------------------------------------

// A Modbus route on a serial device, `extra` lines from line 5.
std::string modbus_route(const std::string &extra, const char *protocol = "modbus") {
  return "[[route]]\nname = \"r\"\nbackend = \"serial:/dev/ttyUSB0\"\nprotocol = \"" + std::string(protocol) + "\"\n" +
         extra;
}

const gw::ModbusConfig &modbus_of(const Config &c) {
  assert_true(c.routes[0].modbus.has_value());
  return *c.routes[0].modbus;
}

// With no Modbus key, a Modbus route has ModbusConfig's defaults, and the
// frames its protocol names; a raw route has no Modbus config at all.
void modbus_defaults(void **) {
  const Config c = parse_ok(modbus_route(""));
  const gw::ModbusConfig &m = modbus_of(c);
  assert_int_equal(static_cast<int>(m.client_frames), static_cast<int>(gw::ModbusClientFrames::tcp));
  assert_int_equal(m.response_timeout_ms, 1000);
  assert_int_equal(m.retries, 0);
  assert_int_equal(m.broadcast_delay_ms, 100);
  assert_int_equal(m.max_queue, 64);
  assert_true(m.unit_map.empty());
  assert_int_equal(m.cache_ms, 0);
  const Config rtu_config = parse_ok(modbus_route("", "modbus-rtu"));
  const gw::ModbusConfig &rtu = modbus_of(rtu_config);
  assert_int_equal(static_cast<int>(rtu.client_frames), static_cast<int>(gw::ModbusClientFrames::rtu));
  assert_false(parse_ok(serial_route("")).routes[0].modbus.has_value());
  assert_false(parse_ok(route("")).routes[0].modbus.has_value());
}

void modbus_every_key(void **) {
  Config c = parse_ok(modbus_route(
      "response_timeout = \"250ms\"\nretries = 2\nbroadcast_delay = \"20ms\"\nmax_queue = 8\n"
      "unit_map = { \"1\" = 17, \"2\" = 18, \"10\" = 5 }\ncache = \"500ms\"\nbaud = 9600\nparity = \"even\"\n"
      "lock_dir = \"\"\non_device_missing = \"wait\"\n"));
  const gw::ModbusConfig &m = modbus_of(c);
  assert_int_equal(m.response_timeout_ms, 250);
  assert_int_equal(m.retries, 2);
  assert_int_equal(m.broadcast_delay_ms, 20);
  assert_int_equal(m.max_queue, 8);
  assert_int_equal(m.cache_ms, 500);
  // The table's order (its keys as strings): "1", "10", "2".
  assert_int_equal(m.unit_map.size(), 3);
  assert_int_equal(m.unit_map[0].from, 1);
  assert_int_equal(m.unit_map[0].to, 17);
  assert_int_equal(m.unit_map[1].from, 10);
  assert_int_equal(m.unit_map[1].to, 5);
  assert_int_equal(m.unit_map[2].from, 2);
  assert_int_equal(m.unit_map[2].to, 18);
  // The serial line and device keys still drive the device.
  assert_int_equal(serial_of(c).settings.baud, 9600);
  assert_true(serial_of(c).open_options.lock_dir.empty());
  // Integers are seconds, as for every duration key.
  assert_int_equal(modbus_of(parse_ok(modbus_route("response_timeout = 3\n"))).response_timeout_ms, 3000);
  assert_int_equal(modbus_of(parse_ok(modbus_route("cache = \"0\"\n"))).cache_ms, 0);
  // A Modbus TCP device by its IP address.
  Config tcp =
      parse_ok("[[route]]\nname = \"r\"\nbackend = \"tcp://127.0.0.1:1502\"\nprotocol = \"modbus\"\nretries = 1\n");
  assert_int_equal(modbus_of(tcp).retries, 1);
  assert_false(tcp.routes[0].serial.has_value());
}

void modbus_value_errors(void **) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"retries = \"3\"\n", "gw.conf:5:11: 'retries' must be an integer (got string)"},
      {"retries = -1\n", "gw.conf:5:11: 'retries' must be between 0 and 4294967295 (got -1)"},
      {"max_queue = 1.5\n", "gw.conf:5:13: 'max_queue' must be an integer (got float)"},
      {"response_timeout = \"1x\"\n",
       "gw.conf:5:20: 'response_timeout' must be a duration such as \"60s\", \"500ms\", \"5m\", \"1h\" or \"0\" "
       "(got \"1x\")"},
      {"cache = \"500\"\n",
       "gw.conf:5:9: 'cache' must be a duration such as \"60s\", \"500ms\", \"5m\", \"1h\" or \"0\" (got \"500\"; "
       "did you mean \"500s\"?)"},
      {"broadcast_delay = true\n",
       "gw.conf:5:19: 'broadcast_delay' must be a duration string or an integer number of seconds (got boolean)"},
      {"unit_map = 3\n",
       "gw.conf:5:12: 'unit_map' must be an inline table of unit ids to bus addresses, e.g. { \"1\" = 17 } (got "
       "integer)"},
      {"unit_map = { \"x\" = 17 }\n",
       "gw.conf:5:14: 'unit_map' entry \"x\": the unit id must be a number from 1 to 255 written without leading "
       "zeros, e.g. \"1\" = 17 in route \"r\""},
      {"unit_map = { \"01\" = 17 }\n",
       "gw.conf:5:14: 'unit_map' entry \"01\": the unit id must be a number from 1 to 255 written without leading "
       "zeros, e.g. \"1\" = 17 in route \"r\""},
      {"unit_map = { \"256\" = 17 }\n",
       "gw.conf:5:14: 'unit_map' entry \"256\": the unit id must be a number from 1 to 255 written without leading "
       "zeros, e.g. \"1\" = 17 in route \"r\""},
      {"unit_map = { \"1\" = \"17\" }\n",
       "gw.conf:5:20: 'unit_map' entry \"1\" must map to a bus address from 1 to 247 (got string) in route \"r\""},
      {"unit_map = { \"1\" = 300 }\n",
       "gw.conf:5:20: 'unit_map' entry \"1\" must map to a bus address from 1 to 247 (got 300) in route \"r\""},
  };
  for (const auto &[extra, want] : cases) expect_error(modbus_route(extra), want);
  // Every wrong entry is reported, not only the first.
  expect_errors(modbus_route("unit_map = { \"a\" = 1, \"2\" = -1 }\n"),
                {"gw.conf:5:14: 'unit_map' entry \"a\": the unit id must be a number from 1 to 255 written without "
                 "leading zeros, e.g. \"1\" = 17 in route \"r\"",
                 "gw.conf:5:29: 'unit_map' entry \"2\" must map to a bus address from 1 to 247 (got -1) in route "
                 "\"r\""});
}

// The ranges are ModbusConfig::validate's, the check the daemon's
// ModbusGateway::create makes: its reason, at the value, with the route.
void modbus_values_the_gateway_refuses(void **) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"retries = 11\n", "gw.conf:5:11: retries 11 is out of range (0 to 10) in route \"r\""},
      {"max_queue = 0\n", "gw.conf:5:13: max_queue 0 is out of range (1 to 65535) in route \"r\""},
      {"max_queue = 65536\n", "gw.conf:5:13: max_queue 65536 is out of range (1 to 65535) in route \"r\""},
      {"response_timeout = \"0\"\n",
       "gw.conf:5:20: response_timeout 0 ms is out of range (1 ms to 60 s) in route \"r\""},
      {"response_timeout = \"61s\"\n",
       "gw.conf:5:20: response_timeout 61000 ms is out of range (1 ms to 60 s) in route \"r\""},
      {"unit_map = { \"0\" = 17 }\n",
       "gw.conf:5:20: 'unit_map' entry \"0\": unit_map from = 0 is out of range (1 to 255; unit 0 is the broadcast "
       "and cannot be mapped) in route \"r\""},
      {"unit_map = { \"1\" = 248 }\n",
       "gw.conf:5:20: 'unit_map' entry \"1\": unit_map to = 248 (for unit 1) is out of range: a bus address is 1 to "
       "247 in route \"r\""},
  };
  for (const auto &[extra, want] : cases) expect_error(modbus_route(extra), want);
  // On a tcp route as on a serial one.
  expect_error("[[route]]\nname = \"r\"\nbackend = \"tcp://127.0.0.1:502\"\nprotocol = \"modbus\"\nretries = 99\n",
               "gw.conf:5:11: retries 99 is out of range (0 to 10) in route \"r\"");
}

// A Modbus key elsewhere is an error naming the key and the protocol, as a
// serial key on a tcp route is: ignored, it would hide a missing protocol.
void modbus_keys_on_other_routes(void **) {
  expect_error(serial_route("retries = 2\n"),
               "gw.conf:4:1: 'retries' is a Modbus setting, not one for a route with protocol \"raw\" in route \"r\" "
               "(remove it, or add protocol = \"modbus\" or \"modbus-rtu\")");
  expect_errors(route("cache = \"1s\"\nunit_map = { \"1\" = 2 }\n"),
                {"gw.conf:4:1: 'cache' is a Modbus setting, not one for a route with protocol \"raw\" in route \"r\" "
                 "(remove it, or add protocol = \"modbus\" or \"modbus-rtu\")",
                 "gw.conf:5:1: 'unit_map' is a Modbus setting, not one for a route with protocol \"raw\" in route "
                 "\"r\" (remove it, or add protocol = \"modbus\" or \"modbus-rtu\")"});
}

// A Modbus route frames RTU itself and queues all its clients: the serial
// keys for a raw byte stream and its clients are refused, each with why.
void serial_stream_keys_on_modbus(void **) {
  const char *frames = " (the gateway frames RTU messages itself; remove it)";
  const char *queue = " (its requests from every client wait their turn in one queue; remove it)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"idle_gap = \"5ms\"\n",
       "gw.conf:5:1: 'idle_gap' does not apply to a Modbus route in route \"r\"" + std::string(frames)},
      {"delimiter = \"\\n\"\n",
       "gw.conf:5:1: 'delimiter' does not apply to a Modbus route in route \"r\"" + std::string(frames)},
      {"keep_delimiter = true\n",
       "gw.conf:5:1: 'keep_delimiter' does not apply to a Modbus route in route \"r\"" + std::string(frames)},
      {"max_packet = 64\n",
       "gw.conf:5:1: 'max_packet' does not apply to a Modbus route in route \"r\"" + std::string(frames)},
      {"max_hold = \"1s\"\n",
       "gw.conf:5:1: 'max_hold' does not apply to a Modbus route in route \"r\"" + std::string(frames)},
      {"serial_clients = \"shared\"\n",
       "gw.conf:5:1: 'serial_clients' does not apply to a Modbus route in route \"r\"" + std::string(queue)},
      {"readonly_clients = [\"::1\"]\n",
       "gw.conf:5:1: 'readonly_clients' does not apply to a Modbus route in route \"r\"" + std::string(queue)},
  };
  for (const auto &[extra, want] : cases) expect_error(modbus_route(extra, "modbus-rtu"), want);
}

// Any client-side unit but the broadcast can be mapped, 255 included (what
// Modbus TCP clients send to "the device behind this gateway").
void modbus_unit_255_maps(void **) {
  const Config c = parse_ok(modbus_route("unit_map = { \"255\" = 1, \"248\" = 247 }\n"));
  const gw::ModbusConfig &m = modbus_of(c);
  assert_int_equal(m.unit_map.size(), 2);
  assert_int_equal(m.unit_map[0].from, 248);
  assert_int_equal(m.unit_map[0].to, 247);
  assert_int_equal(m.unit_map[1].from, 255);
  assert_int_equal(m.unit_map[1].to, 1);
}

// The gateway connects to its Modbus TCP device by address: a host name is
// refused at once, with the fix.
void modbus_tcp_backend_by_name(void **) {
  expect_error("[[route]]\nname = \"r\"\nbackend = \"tcp://plc.local:502\"\nprotocol = \"modbus\"\n",
               "gw.conf:3:11: protocol \"modbus\" needs an IP address in its tcp backend, not the host name "
               "\"plc.local\" in route \"r\" (write the device's address, e.g. \"tcp://192.168.1.10:502\")");
}

// protocol = "rfc2217" turns the serial backend's Telnet sessions on;
// rfc2217_allow_settings belongs to such routes only.
void rfc2217_route_keys(void **) {
  Config c = parse_ok(serial_route("protocol = \"rfc2217\"\n"));
  assert_true(serial_of(c).rfc2217.enabled);
  assert_true(serial_of(c).rfc2217.allow_settings);
  c = parse_ok(serial_route("protocol = \"rfc2217\"\nrfc2217_allow_settings = false\n"));
  assert_true(serial_of(c).rfc2217.enabled);
  assert_false(serial_of(c).rfc2217.allow_settings);
  c = parse_ok(serial_route(""));
  assert_false(serial_of(c).rfc2217.enabled);
  expect_error(serial_route("rfc2217_allow_settings = false\n"),
               "gw.conf:4:1: 'rfc2217_allow_settings' is for protocol \"rfc2217\" routes only in route \"r\" "
               "(add protocol = \"rfc2217\", or remove it)");
  expect_error(serial_route("protocol = \"raw\"\nrfc2217_allow_settings = true\n"),
               "gw.conf:5:1: 'rfc2217_allow_settings' is for protocol \"rfc2217\" routes only in route \"r\" "
               "(add protocol = \"rfc2217\", or remove it)");
  expect_error(route("rfc2217_allow_settings = true\n"),
               "gw.conf:4:1: 'rfc2217_allow_settings' is a serial setting, not one for the echo backend \"echo\" in "
               "route \"r\" (remove it, or use a serial backend such as \"serial:/dev/ttyUSB0\")");
  expect_error(serial_route("protocol = \"rfc2217\"\nrfc2217_allow_settings = 1\n"),
               "gw.conf:5:26: 'rfc2217_allow_settings' must be a boolean (got integer)");
  expect_error(serial_route("rfc2217_allow_setting = true\n"),
               "gw.conf:4:1: unknown key 'rfc2217_allow_setting' in route \"r\" (did you mean "
               "'rfc2217_allow_settings'?)");
}

// ---- the TOML parser never crashes the daemon ------------------------------------------

// "[/" trips an assertion in toml++ 3.3.0's parse_key, and U+FCFF (ef b3 bf)
// reaches a __builtin_unreachable() in its whitespace table: an abort in a
// debug build, undefined behaviour in a release one. Both are a plain error.
void toml_parser_crash_inputs(void **) {
  ConfigResult r = parse_config("[/", P);
  assert_false(r.ok());
  assert_int_equal(r.errors.size(), 1);
  assert_string_equal(r.errors[0].c_str(),
                      "gw.conf: cannot parse this file: the TOML parser (toml++ 3.3.0) failed an internal check "
                      "(assertion failed: is_bare_key_character(*cp) || is_string_delimiter(*cp)); look for a "
                      "stray character or bracket near the start of a line");
  for (const char *text : {"\xef\xb3\xbf\x78", "a = 1\n\xef\xb3\xbf = 2\n", "[a\xef\xb3\xbf]\n", "[[/", "[a./"}) {
    r = parse_config(text, P);
    assert_false(r.ok());
    assert_int_equal(r.errors.size(), 1);
    assert_true(r.errors[0].rfind("gw.conf", 0) == 0);
  }
}

bool printable_one_line(const std::string &m) {
  for (unsigned char c : m)
    if (c < 0x20 || c == 0x7f) return false;
  return m.find("\xe2\x80\xa8") == std::string::npos && m.find("\xe2\x80\xa9") == std::string::npos;
}

void messages_are_one_printable_line(void **) {
  // A value with a CR, VT, ESC, NUL, a C1 control and a line separator.
  expect_error(route("framing = \"a\\r\\u000b\\u001b\\u0000\\u0085\\u2028z\"\n"),
               "gw.conf:4:11: 'framing' must be one of raw, line, u16be, u32be (got "
               "\"a\\x0d\\x0b\\x1b\\x00\\xc2\\x85\\u2028z\")");
  // Invalid UTF-8 in the file, in a key, and in the path of the file itself.
  for (const std::string &text :
       {std::string("x = \"\xff\"\n"), std::string("\xc3\x28 = 1\n"), route("\"k\\u001b[2J\" = 1\n"),
        std::string("a = \"\r\"\n"), std::string("[\x0b]\n"), std::string("\x1b[31m\n")}) {
    ConfigResult r = parse_config(text, "dir\nwith\rcontrols\xff/gw.conf");
    assert_false(r.ok());
    for (const std::string &m : r.errors) {
      if (!printable_one_line(m)) fail_msg("not one printable line: %s", m.c_str());
      assert_true(m.rfind("dir\\x0awith\\x0dcontrols\\xff/gw.conf:", 0) == 0);
    }
  }
  assert_string_equal(printable_line("ok \xc3\xa9 \xe2\x80\xa9 \xed\xa0\x80 \xf4\x90\x80\x80").c_str(),
                      "ok \xc3\xa9 \\u2029 \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80");
}

// ---- socket activation: inherited fds to routes -------------------------------------------

InheritedSocket passed(int fd, const char *name, const char *address, bool listening = true) {
  InheritedSocket s;
  s.fd = fd;
  s.name = name;
  s.listening = listening;
  if (address) {
    gw::ListenAddress la;
    assert_int_equal(gw::parse_listen_address(address, la), 0);
    s.local = la.address;
  }
  return s;
}

void activation_matching(void **) {
  Config c = parse_ok(
      "[[route]]\nname=\"a\"\nbackend=\"echo\"\nlisten=\"127.0.0.1:7001\"\n"
      "[[route]]\nname=\"b\"\nbackend=\"echo\"\n"
      "[[route]]\nname=\"c\"\nbackend=\"echo\"\nlisten=\":7003\"\n");
  // By name, by address, and a named one that comes after an address match
  // for the same route still gets it.
  ActivationPlan plan = match_inherited(
      c.routes, {passed(3, "unknown", "127.0.0.1:7001"), passed(4, "b", nullptr), passed(5, "unknown", "[::]:7003")});
  assert_true(plan.ok());
  assert_true(plan.route_of == std::vector<int>({0, 1, 2}));
  plan = match_inherited(c.routes, {passed(3, "unknown", "127.0.0.1:7001"), passed(4, "a", "127.0.0.1:9")});
  assert_true(plan.route_of == std::vector<int>({-1, 0}));
  assert_int_equal(plan.errors.size(), 1);
  assert_string_equal(plan.errors[0].c_str(),
                      "inherited socket fd 3 (FileDescriptorName=unknown, bound to 127.0.0.1:7001) matches no "
                      "route: name a route \"unknown\" or give a route listen = \"127.0.0.1:7001\"");
  // Not listening: still matched (adopting it then names the precise
  // reason); unmatched, it is reported as not listening. A name with control
  // bytes: one line.
  plan = match_inherited(c.routes, {passed(3, "a", "127.0.0.1:7001", false), passed(4, "x\ny", "127.0.0.9:1"),
                                    passed(5, "zz", "127.0.0.9:2", false)});
  assert_true(plan.route_of == std::vector<int>({0, -1, -1}));
  assert_int_equal(plan.errors.size(), 2);
  assert_true(printable_one_line(plan.errors[0]));
  assert_string_equal(plan.errors[1].c_str(),
                      "inherited socket fd 5 (FileDescriptorName=zz, bound to 127.0.0.9:2) is not a listening "
                      "stream socket: give its socket unit ListenStream= and Accept=no");
  // Two sockets for one route: the second is reported.
  plan = match_inherited(c.routes, {passed(3, "b", nullptr), passed(4, "b", nullptr)});
  assert_true(plan.route_of == std::vector<int>({1, -1}));
  assert_int_equal(plan.errors.size(), 1);
}

}  // namespace

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(default_config_file),
      cmocka_unit_test(default_config_examples),
      cmocka_unit_test(empty_file_has_no_routes),
      cmocka_unit_test(route_defaults),
      cmocka_unit_test(every_key_set),
      cmocka_unit_test(enum_names),
      cmocka_unit_test(missing_file),
      cmocka_unit_test(toml_syntax_error_stops),
      cmocka_unit_test(unknown_keys),
      cmocka_unit_test(unknown_key_in_unnamed_route),
      cmocka_unit_test(wrong_types),
      cmocka_unit_test(enum_errors),
      cmocka_unit_test(range_errors),
      cmocka_unit_test(names),
      cmocka_unit_test(durations),
      cmocka_unit_test(listen_forms),
      cmocka_unit_test(listen_errors),
      cmocka_unit_test(listen_matches_socket),
      cmocka_unit_test(backends),
      cmocka_unit_test(backend_errors),
      cmocka_unit_test(allow_lists),
      cmocka_unit_test(allow_errors),
      cmocka_unit_test(duplicate_names),
      cmocka_unit_test(duplicate_listens),
      cmocka_unit_test(many_errors_in_file_order),
      cmocka_unit_test(control_bytes_are_escaped),
      cmocka_unit_test(allow_entries_the_runtime_refuses),
      cmocka_unit_test(allow_entries_are_the_runtime_networks),
      cmocka_unit_test(listen_strictness),
      cmocka_unit_test(backend_strictness),
      cmocka_unit_test(frame_timeout_key),
      cmocka_unit_test(serial_defaults),
      cmocka_unit_test(serial_every_key),
      cmocka_unit_test(serial_enum_names),
      cmocka_unit_test(serial_value_errors),
      cmocka_unit_test(serial_type_and_name_errors),
      cmocka_unit_test(serial_readonly_clients_errors),
      cmocka_unit_test(serial_values_that_disagree),
      cmocka_unit_test(serial_backend_errors),
      cmocka_unit_test(serial_keys_on_other_backends),
      cmocka_unit_test(serial_key_suggestions),
      cmocka_unit_test(modbus_defaults),
      cmocka_unit_test(modbus_every_key),
      cmocka_unit_test(modbus_value_errors),
      cmocka_unit_test(modbus_values_the_gateway_refuses),
      cmocka_unit_test(modbus_keys_on_other_routes),
      cmocka_unit_test(serial_stream_keys_on_modbus),
      cmocka_unit_test(modbus_unit_255_maps),
      cmocka_unit_test(modbus_tcp_backend_by_name),
      cmocka_unit_test(rfc2217_route_keys),
      cmocka_unit_test(toml_parser_crash_inputs),
      cmocka_unit_test(messages_are_one_printable_line),
      cmocka_unit_test(activation_matching),
  };
  return cmocka_run_group_tests_name("config", tests, nullptr, nullptr);
}
