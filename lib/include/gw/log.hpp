// SPDX-License-Identifier: MIT
// Logger: where the core's one-line event messages go.
#pragma once
#include <cstdarg>

namespace gw {

/// Levels follow syslog, so sd-daemon's "<N>" prefixes can be used as they are.
enum class LogLevel { error = 3, warning = 4, info = 6, debug = 7 };

/// A sink for log lines; lines above `max_level` are never formatted. The sink
/// is called on the thread that logs (the loop thread, or the caller of a
/// setup function). With no sink, lines go to stderr as "<N>text\n".
struct Logger {
  using Sink = void (*)(LogLevel level, const char *line, void *user_data);
  Sink sink = nullptr;
  void *user_data = nullptr;
  LogLevel max_level = LogLevel::warning;

  bool enabled(LogLevel level) const noexcept { return static_cast<int>(level) <= static_cast<int>(max_level); }
  void log(LogLevel level, const char *format, ...) const noexcept __attribute__((format(printf, 3, 4)));
  void vlog(LogLevel level, const char *format, va_list args) const noexcept __attribute__((format(printf, 3, 0)));
};

}  // namespace gw
