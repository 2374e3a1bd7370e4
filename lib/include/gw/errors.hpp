// SPDX-License-Identifier: MIT
// Error codes of the core. Every function that can fail returns int: 0 on
// success or a negative code: a negated errno (-EINVAL ...) or one of the
// codes below. The numbers are the C ABI's: the constants are made from
// GW_ERRNO_GATEWAY_MAP in <gateway/tables.h> (the C header's own table), so
// gw::err::ESTATE is GW_ESTATE by construction, name and value.
#pragma once

#include <gateway/tables.h>

namespace gw::err {
// gateway's own codes only: the errno rows' names (EINVAL) are macros, and
// the core spells those -EINVAL.
#define GW_CORE_ERR_XX(name, value, text) inline constexpr int name = (value);
GW_ERRNO_GATEWAY_MAP(GW_CORE_ERR_XX)
#undef GW_CORE_ERR_XX

/// A static text for any code: gateway's own or a negated errno. Thread-safe.
const char *describe(int code) noexcept;
/// The C name of a code's constant ("GW_ESTATE"); see gw_err_name() in
/// gateway.h for the values that have none. Thread-safe, never null.
const char *name(int code) noexcept;
}  // namespace gw::err
