/* SPDX-License-Identifier: MIT */
/* A stand-in for libgateway.so.0 as 0.1.0 built it: the same soname, no
 * symbol versions (0.1.0's gateway.map had no version nodes), and only the
 * functions old_binary.c calls. old_binary is linked against this, so its
 * references are unversioned, as a program built against 0.1.0 has them;
 * it is then run against the real library. Every stub fails loudly, so a
 * run that used the stub cannot pass. */
#include <stddef.h>
#include <stdint.h>

#define STUB __attribute__((visibility("default")))

STUB const char *gw_version(void) { return "stub"; }
STUB int gw_server_create(void **out, const void *options) {
  (void)out;
  (void)options;
  return -9999;
}
STUB void gw_server_destroy(void *server) { (void)server; }
STUB int gw_server_dispatch(void *server) {
  (void)server;
  return -9999;
}
STUB int gw_server_stats(void *out, const void *server) {
  (void)out;
  (void)server;
  return -9999;
}
STUB int gw_listener_create(void **out, void *server, const void *options) {
  (void)out;
  (void)server;
  (void)options;
  return -9999;
}
STUB int gw_listener_port(const void *listener) {
  (void)listener;
  return -9999;
}
STUB int gw_listener_stats(void *out, const void *listener) {
  (void)out;
  (void)listener;
  return -9999;
}
