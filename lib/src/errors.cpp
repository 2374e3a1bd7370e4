// SPDX-License-Identifier: MIT
#include "gw/errors.hpp"

#include <cstring>

namespace gw::err {

namespace {
struct Row {
  int value;
  const char *name;
  const char *text;  // null: the C library's text
};
// Made from the C header's table: a code cannot have a constant without a
// name and a text, or the other way round.
constexpr Row rows[] = {
#define GW_ROW_XX(name, value, text) {(value), "GW_" #name, text},
    GW_ERRNO_MAP(GW_ROW_XX)
#undef GW_ROW_XX
};

constexpr bool unique_values() {
  for (const Row &a : rows)
    for (const Row &b : rows)
      if (&a != &b && a.value == b.value) return false;
  return true;
}
static_assert(unique_values(), "two rows of GW_ERRNO_MAP have the same value");

const Row *find(int code) noexcept {
  for (const Row &row : rows)
    if (row.value == code) return &row;
  return nullptr;
}

bool is_errno(int code) noexcept { return code < 0 && code > -4096; }
}  // namespace

const char *describe(int code) noexcept {
  if (code == 0) return "success";
  if (const Row *row = find(code); row && row->text) return row->text;
  if (is_errno(code)) {
    // strerror() may return a static buffer for unknown values; strerrordesc_np
    // (glibc 2.32+) is thread-safe and never formats.
    if (const char *text = strerrordesc_np(-code)) return text;
  }
  return "unknown error";
}

const char *name(int code) noexcept {
  if (code == 0) return "GW_OK";
  if (const Row *row = find(code)) return row->name;
  if (is_errno(code)) {
    // Like strerrordesc_np: a static string, no formatting, thread-safe.
    if (const char *errno_name = strerrorname_np(-code)) return errno_name;
  }
  return "GW_EUNKNOWN";
}

}  // namespace gw::err
