// SPDX-License-Identifier: MIT
// Why a connection closed. Made from GW_CLOSE_REASON_MAP in
// <gateway/tables.h>: the members, their numbers (the C API's GW_CLOSE_*)
// and their texts are the C header's.
#pragma once

#include <gateway/tables.h>

namespace gw {

enum class CloseReason {
#define GW_CORE_CLOSE_XX(NAME, name, value, text) name = (value),
  GW_CLOSE_REASON_MAP(GW_CORE_CLOSE_XX)
#undef GW_CORE_CLOSE_XX
};

/// The text of the log lines ("peer closed": "... closed (peer closed)").
/// "unknown" for a value that is no reason. Thread-safe.
const char *close_reason_name(CloseReason reason) noexcept;
/// The short name the C API gives ("peer"), or null for a value that is no
/// reason. Thread-safe.
const char *close_reason_short_name(CloseReason reason) noexcept;

}  // namespace gw
