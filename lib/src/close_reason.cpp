// SPDX-License-Identifier: MIT
#include "gw/close_reason.hpp"

namespace gw {

const char *close_reason_name(CloseReason reason) noexcept {
  switch (reason) {
#define GW_TEXT_XX(NAME, name, value, text) \
  case CloseReason::name: return text;
    GW_CLOSE_REASON_MAP(GW_TEXT_XX)
#undef GW_TEXT_XX
  }
  return "unknown";
}

const char *close_reason_short_name(CloseReason reason) noexcept {
  switch (reason) {
#define GW_NAME_XX(NAME, name, value, text) \
  case CloseReason::name: return #name;
    GW_CLOSE_REASON_MAP(GW_NAME_XX)
#undef GW_NAME_XX
  }
  return nullptr;
}

}  // namespace gw
