// SPDX-License-Identifier: MIT
// Fuzz target: the systemd environment parsers of lib/src/sd_protocol.hpp
// (LISTEN_*, WATCHDOG_*, NOTIFY_SOCKET), which read text any parent process
// may have set.
//
// Input layout: up to five NUL-separated fields: LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES, WATCHDOG_USEC, WATCHDOG_PID (a missing field is an unset
// variable); the first field is also tried as a NOTIFY_SOCKET value. The
// process is pid 1234. Checked: a listen result is an error with no names or
// names matching the count; the count never numbers an fd past INT_MAX; a
// watchdog interval is never 0 or infinity; a notify address fits sun_path.
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sd_protocol.hpp"

namespace {

namespace detail = gw::sd::detail;

void require(bool condition, const char *what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_sd_env: %s\n", what);
    std::abort();
  }
}

const char *field(const std::vector<std::string> &fields, size_t i) {
  return i < fields.size() ? fields[i].c_str() : nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string input(reinterpret_cast<const char *>(data), size);
  std::vector<std::string> fields;
  for (size_t start = 0; fields.size() < 5 && start <= input.size();) {
    size_t end = input.find('\0', start);
    if (end == std::string::npos) end = input.size();
    fields.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  const pid_t self = 1234;

  const detail::ListenEnv env = detail::parse_listen_env(field(fields, 0), field(fields, 1), field(fields, 2), self);
  require(env.error == 0 || env.error == -EINVAL, "a listen error other than -EINVAL");
  require(env.count >= 0 && env.count - 1 <= INT_MAX - detail::listen_fds_start, "an fd past INT_MAX");
  require(env.names.empty() || (env.error == 0 && env.names.size() == static_cast<size_t>(env.count)),
          "names that do not match the count");

  uint64_t usec = 0;
  const int watchdog = detail::parse_watchdog_env(field(fields, 3), field(fields, 4), self, usec);
  require(watchdog == 1 || watchdog == 0 || watchdog == -EINVAL, "an unexpected watchdog result");
  require(watchdog != 1 || (usec != 0 && usec != UINT64_MAX), "a watchdog interval of 0 or infinity");

  detail::NotifyAddress address;
  const int rc = detail::notify_address(fields.empty() ? "" : fields[0].c_str(), address);
  require(rc == 0 || rc == -EINVAL || rc == -EAFNOSUPPORT, "an unexpected notify_address result");
  require(rc != 0 || (address.addr.sun_family == AF_UNIX && address.length <= sizeof address.addr),
          "an address past sun_path");
  return 0;
}
