// gatewayd configuration: see config.hpp.
#include "config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <limits>
#include <new>
#include <tuple>
#include <utility>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// toml++ is compiled into this translation unit only (header-only, no runtime
// dependency on the boards) and without exceptions: parse errors come back as
// values. It builds cleanly with our flags today; the pragmas keep a future
// toml++ release from breaking -Werror builds with warnings of its own.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wundef"
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#endif
#include <toml++/toml.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace gw::service {

namespace {

using namespace std::string_view_literals;
using std::chrono::milliseconds;

// Longest duration we accept: timeouts end up as int milliseconds (epoll_wait).
constexpr std::int64_t max_duration_ms = std::numeric_limits<std::int32_t>::max();
constexpr std::uint32_t max_frame_limit = 16u * 1024u * 1024u;
constexpr std::int64_t max_clients_limit = 1'000'000;
constexpr std::size_t max_name_length = 255;  // systemd FileDescriptorName
constexpr std::size_t max_unix_path = sizeof(sockaddr_un{}.sun_path) - 1;

constexpr std::string_view top_keys[] = {"service"sv, "route"sv};
constexpr std::string_view service_keys[] = {"log_level"sv, "stop_timeout"sv};
constexpr std::string_view route_keys[] = {
    "name"sv,        "listen"sv,      "backend"sv,   "backlog"sv,
    "max_clients"sv, "max_clients_per_ip"sv,        "idle_timeout"sv,
    "framing"sv,     "max_frame"sv,   "allow"sv,     "keepalive"sv,
    "splice"sv,
};

// ---- small text helpers ----------------------------------------------------

// "text" with quotes, backslashes and control bytes escaped, so a message is
// always one printable line.
std::string quote(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
    out += '"';
    return out;
}

// 'key' in single quotes, escaped the same way (keys can be quoted in TOML).
std::string quote_key(std::string_view s) {
    std::string q = quote(s);
    q.front() = '\'';
    q.back() = '\'';
    return q;
}

std::string join(const std::string_view *first, const std::string_view *last) {
    std::string out;
    for (auto it = first; it != last; ++it) {
        if (!out.empty()) out += ", ";
        out += *it;
    }
    return out;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b) {
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[n][m];
}

// The closest valid key at distance <= 2 (and shorter than the key itself, so
// "ab" does not become "allow"); ties go to the earlier key.
std::optional<std::string_view> suggest(std::string_view key, const std::string_view *first,
                                        const std::string_view *last) {
    if (key.size() > 64) return std::nullopt;
    std::string lower(key);
    for (char &c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::optional<std::string_view> best;
    std::size_t best_d = 3;
    for (auto it = first; it != last; ++it) {
        const std::size_t dist = edit_distance(lower, *it);
        if (dist < best_d && dist < it->size()) {
            best = *it;
            best_d = dist;
        }
    }
    return best;
}

const char *type_name(toml::node_type t) {
    switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal digits only, no sign, <= max.
bool parse_uint(std::string_view s, std::uint64_t max, std::uint64_t &out) {
    if (!all_digits(s) || s.size() > 20) return false;
    std::uint64_t v = 0;
    for (char c : s) {
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (v > (max - digit) / 10) return false;
        v = v * 10 + digit;
    }
    out = v;
    return true;
}

// An interface name or index after '%': what IFNAMSIZ allows, printable, no
// separators we use ourselves.
bool valid_scope(std::string_view s) {
    if (s.empty() || s.size() > 15) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '/' && c != '%' && c != '[' && c != ']';
    });
}

bool is_link_local_v6(const std::array<std::uint8_t, 16> &a) {
    return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||  // fe80::/10
           (a[0] == 0xff && (a[1] & 0x0f) == 0x02);    // link-local multicast
}

bool is_v4_mapped(const std::uint8_t *a) {
    static const std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, prefix, 12) == 0;
}

bool prefix_equal(const std::uint8_t *a, const std::uint8_t *b, unsigned bits) {
    const unsigned bytes = bits / 8, rest = bits % 8;
    if (std::memcmp(a, b, bytes) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

// A DNS-ish host name: dot-separated labels of letters, digits, '-' and '_'
// (the last for /etc/hosts entries), labels <= 63, total <= 253.
bool valid_host_name(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    if (s.empty() || s.size() > 253) return false;
    std::size_t label = 0;
    char prev = '.';
    for (char c : s) {
        if (c == '.') {
            if (label == 0 || prev == '-') return false;
            label = 0;
        } else {
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (!ok || (label == 0 && c == '-') || ++label > 63) return false;
        }
        prev = c;
    }
    return prev != '-';
}

// ---- the checker -------------------------------------------------------------

struct Error {
    SourcePos pos;
    std::string message;
};

SourcePos pos_of(const toml::source_region &r) {
    return SourcePos{static_cast<std::uint32_t>(r.begin.line),
                     static_cast<std::uint32_t>(r.begin.column)};
}

class Checker {
public:
    explicit Checker(const std::string &path) : path_(path) {}

    ConfigResult run(std::string_view text);

private:
    const std::string &path_;
    std::vector<Error> errors_;

    std::string where(SourcePos p) const {
        return path_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
    }
    void error(SourcePos p, std::string message) {
        errors_.push_back(Error{p, std::move(message)});
    }
    void error(const toml::node &n, std::string message) { error(pos_of(n.source()), std::move(message)); }

    void unknown_key(const toml::key &k, const std::string &context, const std::string_view *first,
                     const std::string_view *last);
    void type_error(const toml::node &n, std::string_view key, const char *expected) {
        error(n, quote_key(key) + " must be " + expected + " (got " + type_name(n.type()) + ")");
    }

    bool get_string(const toml::node &n, std::string_view key, std::string &out);
    bool get_int(const toml::node &n, std::string_view key, std::int64_t lo, std::int64_t hi,
                 std::int64_t &out);
    bool get_duration(const toml::node &n, std::string_view key, milliseconds &out);
    template <typename Enum, std::size_t N>
    bool get_enum(const toml::node &n, std::string_view key, const std::string_view (&names)[N],
                  Enum &out);

    void check_service(const toml::node &n, ServiceSection &svc);
    bool check_route(const toml::node &n, std::size_t index, Route &route,
                     SourcePos &name_pos, SourcePos &listen_pos);
    bool check_listen(const toml::node &n, ListenAddress &out);
    bool check_backend(const toml::node &n, Backend &out);
    bool check_allow(const toml::node &n, Route &route);
    void check_duplicates(const std::vector<Route> &routes, const std::vector<SourcePos> &name_pos,
                          const std::vector<SourcePos> &listen_pos);
};

void Checker::unknown_key(const toml::key &k, const std::string &context,
                          const std::string_view *first, const std::string_view *last) {
    std::string msg = "unknown " + std::string(context.empty() ? "top-level key " : "key ") +
                      quote_key(k.str()) + context;
    if (auto s = suggest(k.str(), first, last))
        msg += " (did you mean " + quote_key(*s) + "?)";
    else
        msg += " (valid keys: " + join(first, last) + ")";
    error(pos_of(k.source()), std::move(msg));
}

bool Checker::get_string(const toml::node &n, std::string_view key, std::string &out) {
    if (auto *s = n.as_string()) {
        out = s->get();
        return true;
    }
    type_error(n, key, "a string");
    return false;
}

bool Checker::get_int(const toml::node &n, std::string_view key, std::int64_t lo, std::int64_t hi,
                      std::int64_t &out) {
    auto *i = n.as_integer();
    if (!i) {
        type_error(n, key, "an integer");
        return false;
    }
    const std::int64_t v = i->get();
    if (v < lo || v > hi) {
        error(n, quote_key(key) + " must be between " + std::to_string(lo) + " and " +
                     std::to_string(hi) + " (got " + std::to_string(v) + ")");
        return false;
    }
    out = v;
    return true;
}

bool Checker::get_duration(const toml::node &n, std::string_view key, milliseconds &out) {
    const std::string too_long = quote_key(key) + " must be at most " +
                                 format_duration(milliseconds(max_duration_ms)) + " (got ";
    if (auto *i = n.as_integer()) {
        const std::int64_t v = i->get();
        if (v < 0) {
            error(n, quote_key(key) + " must not be negative (got " + std::to_string(v) + ")");
            return false;
        }
        if (v > max_duration_ms / 1000) {
            error(n, too_long + std::to_string(v) + ")");
            return false;
        }
        out = milliseconds(v * 1000);
        return true;
    }
    auto *s = n.as_string();
    if (!s) {
        type_error(n, key, "a duration string or an integer number of seconds");
        return false;
    }
    const std::string &text = s->get();
    milliseconds d{};
    if (!parse_duration(text, d)) {
        std::string msg = quote_key(key) + R"( must be a duration such as "60s", "500ms", "5m", "1h" or "0" (got )" +
                          quote(text);
        if (all_digits(text)) msg += "; did you mean " + quote(text + "s") + "?";
        error(n, msg + ")");
        return false;
    }
    if (d.count() > max_duration_ms) {
        error(n, too_long + quote(text) + ")");
        return false;
    }
    out = d;
    return true;
}

template <typename Enum, std::size_t N>
bool Checker::get_enum(const toml::node &n, std::string_view key, const std::string_view (&names)[N],
                       Enum &out) {
    std::string text;
    if (!get_string(n, key, text)) return false;
    for (std::size_t i = 0; i < N; ++i) {
        if (names[i] == text) {
            out = static_cast<Enum>(i);
            return true;
        }
    }
    error(n, quote_key(key) + " must be one of " + join(names, names + N) + " (got " + quote(text) + ")");
    return false;
}

constexpr std::string_view log_level_names[] = {"error"sv, "warning"sv, "info"sv, "debug"sv};
constexpr std::string_view framing_names[] = {"raw"sv, "line"sv, "u16be"sv, "u32be"sv};

void Checker::check_service(const toml::node &n, ServiceSection &svc) {
    auto *tbl = n.as_table();
    if (!tbl) {
        type_error(n, "service", "a table ([service])");
        return;
    }
    for (auto &&[k, v] : *tbl) {
        const std::string_view key = k.str();
        if (key == "log_level")
            get_enum(v, key, log_level_names, svc.log_level);
        else if (key == "stop_timeout")
            get_duration(v, key, svc.stop_timeout);
        else
            unknown_key(k, " in [service]", std::begin(service_keys), std::end(service_keys));
    }
}

bool Checker::check_listen(const toml::node &n, ListenAddress &out) {
    std::string text;
    if (!get_string(n, "listen", text)) return false;
    auto fail = [&](const std::string &what) {
        error(n, "'listen' " + what + " (got " + quote(text) + ")");
        return false;
    };
    const std::string example = R"(must be ADDRESS:PORT such as "127.0.0.1:7000", "[::1]:7000" or ":7000")";

    std::string_view rest = text, host, port;
    bool bracketed = false;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
            return fail(example);
        host = rest.substr(1, close - 1);
        port = rest.substr(close + 2);
        bracketed = true;
    } else {
        const auto colon = rest.rfind(':');
        if (colon == std::string_view::npos) return fail(example);
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return fail(R"(IPv6 addresses must be in brackets, e.g. "[::1]:7000")");
    }
    std::uint64_t portnum = 0;
    if (!parse_uint(port, 65535, portnum)) return fail("port must be a number between 0 and 65535");

    ListenAddress la;
    la.text = text;
    la.port = static_cast<std::uint16_t>(portnum);
    if (host.empty()) {
        if (bracketed) return fail(example);
        la.family = ListenAddress::Family::any;
        la.canonical = ":" + std::to_string(la.port);
    } else if (!bracketed) {
        in_addr a4{};
        const std::string h(host);
        if (inet_pton(AF_INET, h.c_str(), &a4) != 1)
            return fail("address " + quote(host) + " is not an IPv4 literal; use an address, not a host name");
        la.family = ListenAddress::Family::ipv4;
        std::memcpy(la.addr.data(), &a4, 4);
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a4, buf, sizeof buf);
        la.canonical = std::string(buf) + ":" + std::to_string(la.port);
    } else {
        std::string_view addr = host, scope;
        if (const auto pct = host.find('%'); pct != std::string_view::npos) {
            addr = host.substr(0, pct);
            scope = host.substr(pct + 1);
            if (!valid_scope(scope))
                return fail("scope " + quote(scope) + " is not an interface name or index");
        }
        in6_addr a6{};
        const std::string h(addr);
        if (inet_pton(AF_INET6, h.c_str(), &a6) != 1)
            return fail("address " + quote(addr) + " is not an IPv6 literal");
        la.family = ListenAddress::Family::ipv6;
        std::memcpy(la.addr.data(), &a6, 16);
        if (!scope.empty() && !is_link_local_v6(la.addr))
            return fail("scope %" + std::string(scope) + " is only valid on a link-local address (fe80::/10)");
        if (scope.empty() && is_link_local_v6(la.addr))
            return fail(R"(link-local address needs a scope, e.g. "[fe80::1%eth0]:7000")");
        la.scope = std::string(scope);
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a6, buf, sizeof buf);
        la.canonical = "[" + std::string(buf) + (scope.empty() ? "" : "%" + la.scope) + "]:" +
                       std::to_string(la.port);
    }
    out = std::move(la);
    return true;
}

bool Checker::check_backend(const toml::node &n, Backend &out) {
    std::string text;
    if (!get_string(n, "backend", text)) return false;
    auto fail = [&](const std::string &what) {
        error(n, "'backend' " + what + " (got " + quote(text) + ")");
        return false;
    };
    Backend b;
    b.text = text;
    const std::string_view t = text;
    if (t == "echo") {
        b.kind = Backend::Kind::echo;
    } else if (t.substr(0, 6) == "tcp://") {
        b.kind = Backend::Kind::tcp;
        std::string_view rest = t.substr(6), host, port;
        if (!rest.empty() && rest.front() == '[') {
            const auto close = rest.find(']');
            if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
                return fail(R"(must be tcp://HOST:PORT, e.g. "tcp://127.0.0.1:502" or "tcp://[::1]:502")");
            host = rest.substr(1, close - 1);
            port = rest.substr(close + 2);
            std::string_view addr = host;
            if (const auto pct = host.find('%'); pct != std::string_view::npos) {
                addr = host.substr(0, pct);
                if (!valid_scope(host.substr(pct + 1)))
                    return fail("scope " + quote(host.substr(pct + 1)) + " is not an interface name or index");
            }
            in6_addr a6{};
            if (inet_pton(AF_INET6, std::string(addr).c_str(), &a6) != 1)
                return fail("address " + quote(addr) + " is not an IPv6 literal");
        } else {
            const auto colon = rest.rfind(':');
            if (colon == std::string_view::npos || colon == 0)
                return fail(R"(must be tcp://HOST:PORT, e.g. "tcp://127.0.0.1:502" or "tcp://[::1]:502")");
            host = rest.substr(0, colon);
            port = rest.substr(colon + 1);
            if (host.find(':') != std::string_view::npos)
                return fail(R"(IPv6 addresses must be in brackets, e.g. "tcp://[::1]:502")");
            const bool numeric = std::all_of(host.begin(), host.end(),
                                             [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
            in_addr a4{};
            if (numeric && inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1)
                return fail("address " + quote(host) + " is not a valid IPv4 address");
            if (!numeric && !valid_host_name(host))
                return fail("host " + quote(host) + " is not an IP address or host name");
        }
        std::uint64_t portnum = 0;
        if (!parse_uint(port, 65535, portnum) || portnum == 0)
            return fail("port must be a number between 1 and 65535");
        b.host = std::string(host);
        b.port = static_cast<std::uint16_t>(portnum);
    } else if (t.substr(0, 5) == "unix:") {
        b.kind = Backend::Kind::unix_socket;
        const std::string_view path = t.substr(5);
        if (path.empty() || path.front() != '/')
            return fail(R"(unix socket path must be absolute, e.g. "unix:/run/app.sock")");
        if (path.size() > max_unix_path)
            return fail("unix socket path is " + std::to_string(path.size()) + " bytes long; at most " +
                        std::to_string(max_unix_path) + " fit in sockaddr_un");
        if (path.find('\0') != std::string_view::npos) return fail("unix socket path contains a NUL byte");
        b.path = std::string(path);
    } else {
        return fail("must be echo, tcp://HOST:PORT or unix:/PATH");
    }
    out = std::move(b);
    return true;
}

// One `allow` entry; false (and *why set) on error.
bool parse_cidr(const std::string &text, Cidr &out, std::string &why) {
    std::string_view addr = text, len;
    bool has_len = false;
    if (const auto slash = text.find('/'); slash != std::string::npos) {
        addr = std::string_view(text).substr(0, slash);
        len = std::string_view(text).substr(slash + 1);
        has_len = true;
    }
    Cidr c;
    c.text = text;
    const std::string a(addr);
    if (inet_pton(AF_INET, a.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET;
    } else if (inet_pton(AF_INET6, a.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET6;
    } else {
        why = R"(is not an address or CIDR such as "127.0.0.0/8" or "::1/128")";
        return false;
    }
    const unsigned bits = c.family == AF_INET ? 32 : 128;
    std::uint64_t prefix = bits;
    if (has_len && !parse_uint(len, bits, prefix)) {
        why = "has a bad prefix length (must be 0 to " + std::to_string(bits) + ")";
        return false;
    }
    c.prefix = static_cast<unsigned>(prefix);
    std::array<std::uint8_t, 16> masked{};
    const unsigned bytes = bits / 8;
    for (unsigned i = 0; i < bytes; ++i) {
        const unsigned lo = i * 8;
        std::uint8_t mask = 0;
        if (c.prefix >= lo + 8)
            mask = 0xff;
        else if (c.prefix > lo)
            mask = static_cast<std::uint8_t>(0xff << (8 - (c.prefix - lo)));
        masked[i] = c.addr[i] & mask;
    }
    if (masked != c.addr) {
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(c.family, masked.data(), buf, sizeof buf);
        why = "has host bits set (did you mean " + quote(std::string(buf) + "/" + std::to_string(c.prefix)) + "?)";
        return false;
    }
    out = std::move(c);
    return true;
}

bool Checker::check_allow(const toml::node &n, Route &route) {
    auto *arr = n.as_array();
    if (!arr) {
        std::string msg = "'allow' must be an array of strings (got " + std::string(type_name(n.type()));
        if (auto *s = n.as_string()) msg += "; write allow = [" + quote(s->get()) + "]";
        error(n, msg + ")");
        return false;
    }
    if (arr->empty()) {
        error(n, "'allow' must not be empty (leave it out to allow every client)");
        return false;
    }
    bool ok = true;
    std::vector<std::string> texts;
    std::vector<Cidr> nets;
    for (const toml::node &e : *arr) {
        auto *s = e.as_string();
        if (!s) {
            error(e, "'allow' entries must be strings (got " + std::string(type_name(e.type())) + ")");
            ok = false;
            continue;
        }
        Cidr c;
        std::string why;
        if (!parse_cidr(s->get(), c, why)) {
            error(e, "'allow' entry " + quote(s->get()) + " " + why);
            ok = false;
            continue;
        }
        texts.push_back(s->get());
        nets.push_back(std::move(c));
    }
    if (!ok) return false;
    route.allow = std::move(texts);
    route.allow_nets = std::move(nets);
    return true;
}

bool Checker::check_route(const toml::node &n, std::size_t index, Route &route, SourcePos &name_pos,
                          SourcePos &listen_pos) {
    auto *tbl = n.as_table();
    if (!tbl) {
        error(n, "route #" + std::to_string(index + 1) + " must be a table ([[route]]) (got " +
                     type_name(n.type()) + ")");
        return false;
    }
    route.where = pos_of(tbl->source());
    const std::size_t before = errors_.size();

    // The label used in messages: the name as written if it is a string at all.
    std::string label = "route #" + std::to_string(index + 1);
    if (auto *nm = tbl->get("name"); nm && nm->is_string()) label = "route " + quote(nm->as_string()->get());

    for (auto &&[k, v] : *tbl) {
        const std::string_view key = k.str();
        std::int64_t i = 0;
        if (key == "name") {
            std::string name;
            if (!get_string(v, key, name)) continue;
            name_pos = pos_of(v.source());
            if (name.empty()) {
                error(v, "'name' must not be empty");
            } else if (name.size() > max_name_length) {
                error(v, "'name' is " + std::to_string(name.size()) + " characters long; at most " +
                             std::to_string(max_name_length) + " are allowed");
            } else if (!std::all_of(name.begin(), name.end(), [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
                       })) {
                error(v, "'name' may only contain letters, digits, '_', '.' and '-' (got " + quote(name) + ")");
            } else {
                route.name = std::move(name);
            }
        } else if (key == "listen") {
            ListenAddress la;
            if (check_listen(v, la)) {
                route.listen = std::move(la);
                listen_pos = pos_of(v.source());
            }
        } else if (key == "backend") {
            check_backend(v, route.backend);
        } else if (key == "backlog") {
            if (get_int(v, key, 1, 65535, i)) route.backlog = static_cast<int>(i);
        } else if (key == "max_clients") {
            if (get_int(v, key, 0, max_clients_limit, i)) route.max_clients = static_cast<std::uint32_t>(i);
        } else if (key == "max_clients_per_ip") {
            if (get_int(v, key, 0, max_clients_limit, i))
                route.max_clients_per_ip = static_cast<std::uint32_t>(i);
        } else if (key == "idle_timeout") {
            get_duration(v, key, route.idle_timeout);
        } else if (key == "framing") {
            get_enum(v, key, framing_names, route.framing);
        } else if (key == "max_frame") {
            if (get_int(v, key, 1, max_frame_limit, i)) route.max_frame = static_cast<std::uint32_t>(i);
        } else if (key == "allow") {
            check_allow(v, route);
        } else if (key == "keepalive") {
            if (auto *b = v.as_boolean())
                route.keepalive = b->get();
            else
                type_error(v, key, "a boolean");
        } else if (key == "splice") {
            if (auto *b = v.as_boolean())
                route.splice = b->get();
            else
                type_error(v, key, "a boolean");
        } else {
            unknown_key(k, " in " + label, std::begin(route_keys), std::end(route_keys));
        }
    }
    if (!tbl->contains("name"))
        error(route.where, label + ": missing required key 'name' (a unique name, also the systemd "
                                   "FileDescriptorName of its socket)");
    if (!tbl->contains("backend"))
        error(route.where, label + ": missing required key 'backend' (echo, tcp://HOST:PORT or unix:/PATH)");
    return errors_.size() == before;
}

bool listen_conflict(const ListenAddress &a, const ListenAddress &b) {
    using F = ListenAddress::Family;
    if (a.port == 0 || a.port != b.port) return false;  // port 0: each gets its own
    if (a.canonical == b.canonical) return true;
    auto wildcard = [](const ListenAddress &l) {
        static const std::array<std::uint8_t, 16> zero{};
        return l.family == F::any || l.addr == zero;
    };
    // ":7000" is "every address", the same socket as 0.0.0.0:7000 or [::]:7000.
    return (a.family == F::any && wildcard(b)) || (b.family == F::any && wildcard(a));
}

void Checker::check_duplicates(const std::vector<Route> &routes, const std::vector<SourcePos> &name_pos,
                               const std::vector<SourcePos> &listen_pos) {
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const Route &r = routes[i];
        if (!r.name.empty()) {
            for (std::size_t j = 0; j < i; ++j) {
                if (routes[j].name == r.name) {
                    error(name_pos[i], "duplicate route name " + quote(r.name) + " (first defined at " +
                                           where(name_pos[j]) + ")");
                    break;
                }
            }
        }
        if (r.listen) {
            for (std::size_t j = 0; j < i; ++j) {
                if (routes[j].listen && listen_conflict(*r.listen, *routes[j].listen)) {
                    const ListenAddress &first = *routes[j].listen;
                    const std::string other = routes[j].name.empty() ? "route #" + std::to_string(j + 1)
                                                                     : "route " + quote(routes[j].name);
                    std::string msg = "duplicate listen address " + quote(r.listen->text);
                    if (first.text == r.listen->text)
                        msg += " (already used by " + other;
                    else
                        msg += " (same as " + quote(first.text) + " of " + other;
                    msg += " at " + where(listen_pos[j]) + ")";
                    error(listen_pos[i], std::move(msg));
                    break;
                }
            }
        }
    }
}

ConfigResult Checker::run(std::string_view text) {
    ConfigResult result;
    toml::parse_result parsed = toml::parse(text, std::string_view(path_));
    if (!parsed) {
        const toml::parse_error &e = parsed.error();
        result.errors.push_back(where(pos_of(e.source())) + ": " + std::string(e.description()));
        return result;
    }
    const toml::table &root = parsed.table();

    Config cfg;
    std::vector<SourcePos> name_pos, listen_pos;
    for (auto &&[k, v] : root) {
        const std::string_view key = k.str();
        if (key == "service") {
            check_service(v, cfg.service);
        } else if (key == "route") {
            auto *arr = v.as_array();
            if (!arr) {
                type_error(v, key, "an array of tables: write [[route]], not [route]");
                continue;
            }
            for (std::size_t i = 0; i < arr->size(); ++i) {
                Route r;
                SourcePos np, lp;
                check_route(*arr->get(i), i, r, np, lp);
                cfg.routes.push_back(std::move(r));
                name_pos.push_back(np);
                listen_pos.push_back(lp);
            }
        } else {
            unknown_key(k, "", std::begin(top_keys), std::end(top_keys));
        }
    }
    check_duplicates(cfg.routes, name_pos, listen_pos);

    if (errors_.empty()) {
        result.config = std::move(cfg);
        return result;
    }
    // Tables are visited in key order, not file order: report by position.
    std::stable_sort(errors_.begin(), errors_.end(), [](const Error &a, const Error &b) {
        return std::tie(a.pos.line, a.pos.column) < std::tie(b.pos.line, b.pos.column);
    });
    for (Error &e : errors_) result.errors.push_back(where(e.pos) + ": " + std::move(e.message));
    return result;
}

ConfigResult failure(std::string message) {
    ConfigResult r;
    try {
        r.errors.push_back(std::move(message));
    } catch (...) {
    }
    return r;
}

}  // namespace

// ---- public API ----------------------------------------------------------------

ConfigResult parse_config(std::string_view text, const std::string &path_for_messages) {
    try {
        return Checker(path_for_messages).run(text);
    } catch (const std::bad_alloc &) {
        return failure(path_for_messages + ": out of memory");
    } catch (const std::exception &e) {
        return failure(path_for_messages + ": " + e.what());
    } catch (...) {
        return failure(path_for_messages + ": unexpected error");
    }
}

ConfigResult load_config(const std::string &path) {
    try {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return failure(path + ": cannot open: " + std::strerror(errno));
        std::string text;
        char buf[8192];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                const int err = errno;
                ::close(fd);
                return failure(path + ": cannot read: " + std::strerror(err));
            }
            if (n == 0) break;
            if (text.size() > (16u << 20)) {
                ::close(fd);
                return failure(path + ": cannot read: file is larger than 16 MiB");
            }
            text.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        return parse_config(text, path);
    } catch (...) {
        return failure(path + ": out of memory");
    }
}

const char *to_string(LogLevel level) noexcept {
    const auto i = static_cast<std::size_t>(level);
    return i < std::size(log_level_names) ? log_level_names[i].data() : "?";
}

const char *to_string(Framing framing) noexcept {
    const auto i = static_cast<std::size_t>(framing);
    return i < std::size(framing_names) ? framing_names[i].data() : "?";
}

const char *to_string(Backend::Kind kind) noexcept {
    switch (kind) {
    case Backend::Kind::echo: return "echo";
    case Backend::Kind::tcp: return "tcp";
    case Backend::Kind::unix_socket: return "unix";
    }
    return "?";
}

bool parse_duration(std::string_view text, milliseconds &out) noexcept {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 18) return false;
    std::int64_t value = 0;
    for (std::size_t i = 0; i < digits; ++i) value = value * 10 + (text[i] - '0');
    const std::string_view unit = text.substr(digits);
    std::int64_t scale = 0;
    if (unit.empty())
        scale = value == 0 ? 1 : 0;  // only "0" may go without a unit
    else if (unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1000;
    else if (unit == "m")
        scale = 60'000;
    else if (unit == "h")
        scale = 3'600'000;
    if (scale == 0 || value > std::numeric_limits<std::int64_t>::max() / scale) return false;
    out = milliseconds(value * scale);
    return true;
}

std::string format_duration(milliseconds d) {
    const std::int64_t ms = d.count();
    if (ms == 0) return "0";
    if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

bool ListenAddress::matches(const sockaddr *sa) const noexcept {
    if (!sa) return false;
    static const std::array<std::uint8_t, 16> zero{};
    if (sa->sa_family == AF_INET) {
        sockaddr_in in{};
        std::memcpy(&in, sa, sizeof in);
        if (port != 0 && ntohs(in.sin_port) != port) return false;
        if (family == Family::any) return in.sin_addr.s_addr == htonl(INADDR_ANY);
        return family == Family::ipv4 && std::memcmp(addr.data(), &in.sin_addr, 4) == 0;
    }
    if (sa->sa_family == AF_INET6) {
        sockaddr_in6 in6{};
        std::memcpy(&in6, sa, sizeof in6);
        if (port != 0 && ntohs(in6.sin6_port) != port) return false;
        const auto *a = in6.sin6_addr.s6_addr;
        if (family == Family::any) return std::memcmp(a, zero.data(), 16) == 0;
        if (family == Family::ipv6) return std::memcmp(a, addr.data(), 16) == 0;
        return is_v4_mapped(a) && std::memcmp(a + 12, addr.data(), 4) == 0;
    }
    return false;
}

bool Cidr::contains(const sockaddr *sa) const noexcept {
    if (!sa) return false;
    if (sa->sa_family == AF_INET) {
        if (family != AF_INET) return false;
        sockaddr_in in{};
        std::memcpy(&in, sa, sizeof in);
        return prefix_equal(reinterpret_cast<const std::uint8_t *>(&in.sin_addr), addr.data(), prefix);
    }
    if (sa->sa_family == AF_INET6) {
        sockaddr_in6 in6{};
        std::memcpy(&in6, sa, sizeof in6);
        const auto *a = in6.sin6_addr.s6_addr;
        if (family == AF_INET6) return prefix_equal(a, addr.data(), prefix);
        return family == AF_INET && is_v4_mapped(a) && prefix_equal(a + 12, addr.data(), prefix);
    }
    return false;
}

bool Route::allows(const sockaddr *peer) const noexcept {
    if (allow_nets.empty()) return true;
    return std::any_of(allow_nets.begin(), allow_nets.end(),
                       [peer](const Cidr &c) { return c.contains(peer); });
}

}  // namespace gw::service
