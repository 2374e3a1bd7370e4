// SPDX-License-Identifier: MIT
#include "gw/log.hpp"

#include <cstdio>

namespace gw {

void Logger::log(LogLevel level, const char *format, ...) const noexcept {
  if (!enabled(level)) return;
  va_list args;
  va_start(args, format);
  vlog(level, format, args);
  va_end(args);
}

void Logger::vlog(LogLevel level, const char *format, va_list args) const noexcept {
  if (!enabled(level)) return;
  char line[512];
  std::vsnprintf(line, sizeof line, format, args);
  if (sink) {
    sink(level, line, user_data);
  } else {
    // One fprintf per line keeps lines whole when several threads log.
    std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), line);
  }
}

}  // namespace gw
