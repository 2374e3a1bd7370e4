// SPDX-License-Identifier: MIT
// Error codes of the core. Every function that can fail returns int: 0 on
// success or a negative code: a negated errno (-EINVAL ...) or one of the
// codes below. The numbers are part of the C ABI: <gateway/gateway.h> defines
// GW_E* with the same values, and capi/ checks that they agree at compile time.
#pragma once

namespace gw::err {
inline constexpr int not_listening = -3001;
inline constexpr int not_stream = -3002;
inline constexpr int bad_state = -3003;
inline constexpr int wrong_thread = -3004;
inline constexpr int closed = -3005;
inline constexpr int not_found = -3006;
inline constexpr int too_big = -3007;
inline constexpr int bad_address = -3008;

/// A static text for any code: gateway's own or a negated errno. Thread-safe.
const char *describe(int code) noexcept;
}  // namespace gw::err
