/* SPDX-License-Identifier: MIT */
/* Compiled with -fsyntax-only as strict C99 and as C++ (see tests/CMakeLists.txt):
 * the public header must stand alone, and its _INIT macros must initialise
 * every field (-Wmissing-field-initializers). */
#include <gateway/gateway.h>

int gwt_header_check(void);
int gwt_header_check(void) {
  gw_server_options so = GW_SERVER_OPTIONS_INIT;
  gw_listener_options lo = GW_LISTENER_OPTIONS_INIT;
  gw_serial_options se = GW_SERIAL_OPTIONS_INIT;
  gw_stats st = {0, 0, 0, 0, 0, 0};
  gw_framing f = GW_FRAMING_U32BE;
  gw_close_reason r = GW_CLOSE_LOCAL;
  (void)st;
  (void)f;
  (void)r;
  return (int)so.version + (int)lo.version + (int)se.version + GW_PARITY_SPACE + GW_DEVICE_LOSS_HOLD + GW_VERSION_HEX +
         GW_ETOOBIG + (gw_err_name(GW_EINVAL) != NULL);
}
