// SPDX-License-Identifier: MIT
// Fuzz target: the C API's option validation (gw_server_create,
// gw_listener_create, gw_listener_adopt, gw_listener_create_systemd,
// gw_listener_create_serial), through the public header only, as firmware
// would call it.
//
// The input is read as a sequence of fields (see Input): the server options
// (any version, any log level int), then up to three listener calls, each
// with its own options (any version, any framing int, any sizes, an allow
// array of arbitrary strings or NULLs, an address). Addresses are either
// "127.0.0.1:0", NULL, or "127.0.0.1" followed by fuzzed characters from an
// alphabet without the digits 1-9 and without hex letters, so that whatever
// the parser accepts can only be 127.0.0.1 with port 0: the fuzzer never
// binds anything else.
//
// Serial options (any version, any enum int, any numbers, a delimiter of any
// length) name a device that cannot exist (/nonexistent/...), or a relative
// path, or NULL, and never a lock directory (lock_dir ""): the fuzzer opens
// no device and writes no lock file.
//
// Checked: invalid options return the GW_E* code the header documents
// (GW_EINVAL before anything else, GW_EADDRESS for an address or CIDR that
// does not parse) and nothing else; valid options succeed and the listener
// works (a port, zero stats, optionally a client that is accepted or
// refused); a failed adopt leaves the caller's fd open; after the server is
// destroyed no fd is left open (and LeakSanitizer finds no memory).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gateway/gateway.h"

namespace {

void require(bool condition, const char *what, int rc = 0) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_capi_options: %s (rc %d: %s)\n", what, rc, gw_strerror(rc));
    std::abort();
  }
}

// Reads fields from the input; past its end every field is 0.
struct Input {
  const uint8_t *data;
  size_t size;
  size_t at = 0;

  uint8_t u8() { return at < size ? data[at++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | u8();
    return v;
  }
  uint64_t u64() { return (static_cast<uint64_t>(u32()) << 32) | u32(); }
  // Mostly the given default, sometimes a small value, sometimes anything:
  // the interesting sizes are near the limits the validation checks.
  uint64_t size_like(uint64_t usual) {
    switch (u8() % 4) {
      case 0: return usual;
      case 1: return u8();
      case 2: return u32();
      default: return u64();
    }
  }
  // Up to max_len arbitrary bytes (no NUL inside: it is a C string).
  std::string text(size_t max_len) {
    size_t len = u8() % (max_len + 1);
    std::string s;
    for (size_t i = 0; i < len && at < size; ++i) {
      char c = static_cast<char>(u8());
      s.push_back(c ? c : '?');
    }
    return s;
  }
  bool done() const { return at >= size; }
};

// C code may store any int in an enum field. In C++ even loading such a value
// is undefined, so the bytes are copied in place and never read as the enum.
template <typename Enum>
void set_raw_enum(Enum &field, uint32_t value) {
  static_assert(sizeof field == sizeof(int), "enum is int-sized");
  int v = static_cast<int>(value);
  std::memcpy(&field, &v, sizeof field);
}

void quiet_log(gw_log_level, const char *, void *user_data) { ++*static_cast<unsigned long *>(user_data); }
void on_open(gw_conn_t *, void *) {}
void on_message(gw_conn_t *conn, const void *data, size_t len, void *) { gw_conn_send_message(conn, data, len); }
void on_close(gw_conn_t *, gw_close_reason, void *) {}

// The lowest free fd number: unchanged after a whole input when no fd leaked.
int lowest_free_fd() {
  int fd = ::dup(0);
  if (fd >= 0) ::close(fd);
  return fd;
}

int loopback_listening_socket() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  require(s >= 0, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  require(::bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0, "bind 127.0.0.1:0");
  require(::listen(s, 4) == 0, "listen");
  return s;
}

// Known CIDRs: the valid ones must parse, the invalid ones must not.
const char *const valid_cidrs[] = {"127.0.0.1/32", "10.0.0.0/8", "::1/128", "0.0.0.0/0", "fe80::/10", "127.0.0.0/8"};
const char *const invalid_cidrs[] = {"", "127.0.0.1/33", "::1/129", "10.0.0.0/", "/8", "300.0.0.0/8", "1.2.3.4/-1"};

// An address that can only ever mean 127.0.0.1 port 0 (see the top).
std::string loopback_variant(Input &in) {
  static const char alphabet[] = ":0[]%. /-+xlo,\t";
  std::string s = "127.0.0.1";
  size_t len = in.u8() % 12;
  for (size_t i = 0; i < len; ++i) {
    char c = alphabet[in.u8() % (sizeof alphabet - 1)];
    // A digit right after the host would make another host (127.0.0.10).
    if (i == 0 && c == '0') s.push_back(':');
    s.push_back(c);
  }
  return s;
}

enum class Certainty { valid, invalid, unknown };

struct ListenerCase {
  gw_listener_options options;
  std::string address;
  bool address_null = false;
  Certainty address_ok = Certainty::valid;
  std::vector<std::string> allow_text;
  std::vector<const char *> allow;
  bool must_einval = false;  // a check that comes before any parsing fails
  Certainty allow_ok = Certainty::valid;
};

void build_listener(Input &in, ListenerCase &c) {
  c.options = GW_LISTENER_OPTIONS_INIT;
  gw_listener_options &o = c.options;
  uint8_t shape = in.u8();
  if (shape & 1)
    o.version = (shape & 2) ? in.u32() : GW_LISTENER_OPTIONS_VERSION + 1;
  else if (shape & 128)
    o.version = 1;  // 0.1.0's version: frame_timeout_ms is not read
  if (shape & 4)
    set_raw_enum(o.framing, in.u32());
  else
    o.framing = static_cast<gw_framing>(in.u8() % 4);
  if (shape & 8) o.backlog = static_cast<int>(in.u32());
  o.max_frame = static_cast<size_t>(in.size_like(o.max_frame));
  o.high_water = static_cast<size_t>(in.size_like(o.high_water));
  o.low_water = static_cast<size_t>(in.size_like(o.low_water));
  o.max_output = static_cast<size_t>(in.size_like(o.max_output));
  if (shape & 16) {
    o.max_clients = in.u8() % 3;
    o.max_clients_per_ip = in.u8() % 3;
    o.idle_timeout_ms = in.u32();
    o.keepalive = static_cast<int>(in.u32());
    o.keepalive_idle_s = in.u32();
    o.keepalive_interval_s = in.u32();
    o.keepalive_count = in.u32();
  }
  if (shape & 64) o.frame_timeout_ms = in.u8();  // version 2; ignored for version 1
  if (shape & 32) {
    o.on_open = on_open;
    o.on_message = on_message;
    o.on_close = on_close;
  }

  // The allow list: NULL, or entries that are valid, invalid, NULL or fuzzed.
  uint8_t allow_shape = in.u8();
  size_t count = allow_shape % 5;
  if (count) {
    if (allow_shape & 0x80) {
      o.allow = nullptr;  // with a count: invalid
      o.allow_count = count;
    } else {
      c.allow_text.resize(count);
      for (size_t i = 0; i < count; ++i) {
        uint8_t kind = in.u8() % 4;
        const char *entry = nullptr;
        if (kind == 0) {
          entry = valid_cidrs[in.u8() % (sizeof valid_cidrs / sizeof *valid_cidrs)];
        } else if (kind == 1) {
          entry = invalid_cidrs[in.u8() % (sizeof invalid_cidrs / sizeof *invalid_cidrs)];
          if (c.allow_ok != Certainty::invalid) c.allow_ok = Certainty::invalid;
        } else if (kind == 2) {
          entry = nullptr;
          c.allow_ok = Certainty::invalid;
        } else {
          c.allow_text[i] = in.text(48);
          entry = c.allow_text[i].c_str();
          if (c.allow_ok == Certainty::valid) c.allow_ok = Certainty::unknown;
        }
        c.allow.push_back(entry);
      }
      o.allow = c.allow.data();
      o.allow_count = count;
    }
  }

  uint8_t where = in.u8() % 8;
  if (where == 0) {
    c.address_null = true;
  } else if (where < 4) {
    c.address = "127.0.0.1:0";
  } else {
    c.address = loopback_variant(in);
    c.address_ok = c.address == "127.0.0.1:0" ? Certainty::valid : Certainty::unknown;
  }
  o.address = c.address_null ? nullptr : c.address.c_str();

  long framing;
  int framing_int;
  std::memcpy(&framing_int, &o.framing, sizeof framing_int);
  framing = framing_int;
  // Every version from 1 to the current one; zero is each field's default
  // (gateway.h), which a zero low_water never lets exceed high_water.
  size_t high_water = o.high_water ? o.high_water : 64 * 1024;
  size_t low_water = o.low_water ? o.low_water : std::min<size_t>(16 * 1024, high_water);
  c.must_einval = o.version < 1 || o.version > GW_LISTENER_OPTIONS_VERSION || framing < GW_FRAMING_RAW ||
                  framing > GW_FRAMING_U32BE || o.backlog < 0 || low_water > high_water || (o.allow_count && !o.allow);
}

// What the documented validation must return, when it is certain.
void check_result(int rc, const ListenerCase &c, bool address_used, const char *call) {
  char what[96];
  if (c.must_einval) {
    std::snprintf(what, sizeof what, "%s: invalid options not refused with GW_EINVAL", call);
    require(rc == GW_EINVAL, what, rc);
    return;
  }
  if (c.allow_ok == Certainty::invalid) {
    std::snprintf(what, sizeof what, "%s: an invalid allow entry not refused with GW_EADDRESS", call);
    require(rc == GW_EADDRESS, what, rc);
    return;
  }
  bool certain = c.allow_ok == Certainty::valid && (!address_used || c.address_ok == Certainty::valid);
  if (certain) {
    std::snprintf(what, sizeof what, "%s: valid options refused", call);
    require(rc == 0, what, rc);
  } else {
    std::snprintf(what, sizeof what, "%s: neither success nor GW_EADDRESS", call);
    require(rc == 0 || rc == GW_EADDRESS, what, rc);
  }
}

// A working listener: a port, empty stats, and (sometimes) a client that it
// accepts or refuses (allow list, limits).
void check_listener(gw_server_t *server, gw_listener_t *listener, bool connect) {
  int port = gw_listener_port(listener);
  require(port > 0 && port < 65536, "no port", port);
  gw_stats stats;
  require(gw_listener_stats(&stats, listener) == 0, "listener stats");
  require(stats.clients == 0 && stats.accepted == 0 && stats.refused == 0, "a new listener has counts");
  if (!connect) return;
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  require(client >= 0, "client socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  int rc = ::connect(client, reinterpret_cast<sockaddr *>(&a), sizeof a);
  if (rc != 0 && errno == EINTR) {
    // A signal (libFuzzer's timer) interrupted the connect, which goes on
    // in the kernel: wait for it to finish, and take its result.
    pollfd p{client, POLLOUT, 0};
    int error = ::poll(&p, 1, 5000) == 1 ? 0 : ETIMEDOUT;
    socklen_t length = sizeof error;
    if (!error) ::getsockopt(client, SOL_SOCKET, SO_ERROR, &error, &length);
    rc = error ? -1 : 0;
    errno = error;
  }
  require(rc == 0, "connect to the listener", -errno);
  for (int i = 0; i < 200; ++i) {
    require(gw_server_dispatch(server) == 0, "dispatch");
    require(gw_listener_stats(&stats, listener) == 0, "listener stats");
    if (stats.accepted + stats.refused == 1) break;
    ::usleep(100);
  }
  require(stats.accepted + stats.refused == 1, "the client was neither accepted nor refused");
  ::close(client);
}

// Serial options from the input; the listener's come from build_listener().
struct SerialCase {
  gw_serial_options options;
  std::string device;
  std::string delimiter;
  std::vector<const char *> readonly;
};

void build_serial(Input &in, SerialCase &c) {
  c.options = GW_SERIAL_OPTIONS_INIT;
  gw_serial_options &o = c.options;
  uint8_t shape = in.u8();
  if (shape & 1) o.version = (shape & 2) ? in.u32() : GW_SERIAL_OPTIONS_VERSION + 1;
  uint8_t device = in.u8() % 4;
  if (device == 0) {
    o.device = nullptr;
  } else {
    c.device = device == 1 ? "ttyFUZZ" : "/nonexistent/gw-fuzz/tty" + in.text(8);
    o.device = c.device.c_str();
  }
  o.baud = static_cast<unsigned>(in.size_like(115200));
  o.data_bits = in.u8() % 10;
  o.stop_bits = in.u8() % 4;
  set_raw_enum(o.parity, (shape & 4) ? in.u32() : in.u8() % 6);
  set_raw_enum(o.flow_control, (shape & 4) ? in.u32() : in.u8() % 4);
  set_raw_enum(o.dtr, in.u8() % 4);
  set_raw_enum(o.rts, in.u8() % 4);
  if (shape & 8) {
    o.rs485 = in.u8() & 1;
    o.rs485_rts_on_send_low = in.u8() & 1;
    o.rs485_rts_after_send_high = in.u8() & 1;
    o.rs485_delay_before_send_ms = in.u8();
    o.rs485_delay_after_send_ms = in.u8();
  }
  set_raw_enum(o.clients, in.u8() % 4);
  set_raw_enum(o.open, in.u8() % 3);
  set_raw_enum(o.on_missing, in.u8() % 3);
  set_raw_enum(o.on_loss, in.u8() % 3);
  o.device_wait_ms = in.u8();
  if (shape & 16) {
    size_t count = in.u8() % 3;
    for (size_t i = 0; i < count; ++i)
      c.readonly.push_back(in.u8() & 1 ? valid_cidrs[in.u8() % (sizeof valid_cidrs / sizeof *valid_cidrs)]
                                       : invalid_cidrs[in.u8() % (sizeof invalid_cidrs / sizeof *invalid_cidrs)]);
    o.readonly_clients = c.readonly.empty() ? nullptr : c.readonly.data();
    o.readonly_client_count = count;
  }
  if (shape & 32) {
    c.delimiter = in.text(4);
    o.delimiter = (shape & 64) ? nullptr : c.delimiter.data();
    o.delimiter_length = c.delimiter.size();
    o.strip_delimiter = in.u8() & 1;
  }
  o.idle_gap_us = in.u8();
  o.idle_gap_tenth_chars = in.u8();
  o.max_packet = in.u8();
  o.max_hold_ms = in.u8();
  o.lock_dir = "";  // never a lock file
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Input in{data, size};
  int fd_mark = lowest_free_fd();
  unsigned long log_lines = 0;

  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  uint8_t shape = in.u8();
  if (shape & 1) so.version = (shape & 2) ? in.u32() : GW_SERVER_OPTIONS_VERSION + 1;
  if (shape & 4) set_raw_enum(so.log_level, in.u32());
  so.max_clients = in.u8() % 4;
  so.stop_timeout_ms = in.u8();
  so.log = quiet_log;
  so.log_user_data = &log_lines;
  int level;
  std::memcpy(&level, &so.log_level, sizeof level);
  bool server_valid = so.version >= 1 && so.version <= GW_SERVER_OPTIONS_VERSION &&
                      (level == 0 || (level >= GW_LOG_ERROR && level <= GW_LOG_DEBUG));  // 0: the default

  gw_server_t *server = reinterpret_cast<gw_server_t *>(&log_lines);  // must be overwritten
  int rc = (shape & 8) ? gw_server_create(&server, nullptr) : gw_server_create(&server, &so);
  if (!(shape & 8) && !server_valid) {
    require(rc == GW_EINVAL, "invalid server options not refused with GW_EINVAL", rc);
    require(server == nullptr, "*out not cleared on failure");
    require(lowest_free_fd() == fd_mark, "an fd leaked from a failed gw_server_create");
    return 0;
  }
  require(rc == 0 && server != nullptr, "valid server options refused", rc);

  for (int call = 0; call < 3 && !in.done(); ++call) {
    ListenerCase c;
    build_listener(in, c);
    uint8_t how = in.u8();
    bool connect = (how & 0x10) != 0;
    gw_listener_t *listener = nullptr;
    if ((how & 0xC0) == 0xC0) {
      // A serial listener: the documented codes only, and a working
      // listener (clients refused with a reason: the device is missing).
      SerialCase serial;
      build_serial(in, serial);
      c.options.on_open = nullptr;
      c.options.on_message = nullptr;
      c.options.on_close = nullptr;
      rc = gw_listener_create_serial(&listener, server, &c.options, &serial.options);
      if (c.address_null || c.must_einval) {
        require(rc == GW_EINVAL, "gw_listener_create_serial: invalid listener options not refused", rc);
      } else {
        require(rc == 0 || rc == GW_EINVAL || rc == GW_EADDRESS, "gw_listener_create_serial: an undocumented code", rc);
        require(rc != 0 || serial.options.device, "gw_listener_create_serial: no device accepted");
      }
      if (std::getenv("GW_FUZZ_VERBOSE"))
        std::fprintf(stderr, "call %d: serial device %s baud %u: rc %d\n", call,
                     serial.options.device ? serial.options.device : "(null)", serial.options.baud, rc);
      if (rc == 0) {
        require(listener != nullptr, "success without a listener");
        check_listener(server, listener, connect);
      }
      continue;
    }
    switch (how % 3) {
      case 0: {
        rc = gw_listener_create(&listener, server, &c.options);
        if (c.address_null) {
          require(rc == GW_EINVAL, "gw_listener_create without an address", rc);
          break;
        }
        check_result(rc, c, true, "gw_listener_create");
        break;
      }
      case 1: {
        int s = loopback_listening_socket();
        rc = gw_listener_adopt(&listener, server, s, &c.options);
        check_result(rc, c, false, "gw_listener_adopt");
        if (rc != 0) {
          // Still the caller's: open, and ours to close.
          require(::fcntl(s, F_GETFD) >= 0, "a failed adopt closed the caller's fd", rc);
          ::close(s);
        }
        break;
      }
      default: {
        // No LISTEN_FDS in this process: binds the address, if any.
        std::string name = in.text(16);
        bool name_null = (how & 0x20) != 0;
        int inherited = -1;
        rc = gw_listener_create_systemd(&listener, &inherited, server, name_null ? nullptr : name.c_str(), &c.options);
        if (name_null || name.empty()) {
          require(rc == GW_EINVAL, "gw_listener_create_systemd without a name", rc);
        } else if (c.must_einval || c.allow_ok == Certainty::invalid || !c.address_null) {
          check_result(rc, c, true, "gw_listener_create_systemd");
        } else {
          // No address: the allow list is still parsed first.
          bool allow_failed = c.allow_ok == Certainty::unknown && rc == GW_EADDRESS;
          require(rc == GW_ENOTFOUND || rc == GW_ENOSYS || allow_failed, "no inherited socket and no address", rc);
        }
        require(inherited <= 0, "inherited without LISTEN_FDS");
        break;
      }
    }
    if (std::getenv("GW_FUZZ_VERBOSE"))
      std::fprintf(stderr, "call %d: how %u address %s backlog %d allow_count %zu max_clients %u/%u: rc %d\n", call,
                   how % 3, c.address_null ? "(null)" : c.address.c_str(), c.options.backlog, c.options.allow_count,
                   c.options.max_clients, c.options.max_clients_per_ip, rc);
    if (rc == 0) {
      require(listener != nullptr, "success without a listener");
      check_listener(server, listener, connect);
    }
  }

  gw_server_destroy(server);
  require(lowest_free_fd() == fd_mark, "an fd leaked (listener, socket or loop)");
  return 0;
}
