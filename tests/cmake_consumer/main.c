/* SPDX-License-Identifier: MIT */
/* Links against gateway::gateway from find_package(gateway): checks that the
 * header and the library agree and that a listener can be created. */
#include <gateway/gateway.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", GW_VERSION_MAJOR, GW_VERSION_MINOR, GW_VERSION_PATCH);
  if (strcmp(gw_version(), want) != 0) {
    fprintf(stderr, "header says %s, library says %s\n", want, gw_version());
    return 1;
  }
  gw_server_t *server = NULL;
  gw_listener_t *listener = NULL;
  gw_listener_options lo = GW_LISTENER_OPTIONS_INIT;
  lo.address = "127.0.0.1:0";
  int rc = gw_server_create(&server, NULL);
  if (rc == 0) rc = gw_listener_create(&listener, server, &lo);
  if (rc != 0) {
    fprintf(stderr, "%s\n", gw_strerror(rc));
    gw_server_destroy(server);
    return 1;
  }
  printf("gateway %s, listening on port %d\n", gw_version(), gw_listener_port(listener));
  gw_server_destroy(server);
  return 0;
}
