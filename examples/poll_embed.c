/* SPDX-License-Identifier: MIT */
/* poll_embed: libgateway inside the firmware's own poll() loop, no thread.
 *
 *   poll_embed [ADDRESS]          (default 127.0.0.1:7071)
 *
 * An upper-casing line echo. The loop below is the firmware's: it polls its
 * own descriptors (here a self-pipe fed by SIGINT/SIGTERM) together with
 * gw_server_fd(), and calls gw_server_dispatch() when that one is readable.
 *
 * Build: cc poll_embed.c $(pkg-config --cflags --libs gateway)
 */
#define _POSIX_C_SOURCE 200809L
#include <gateway/gateway.h>

#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  char c = (char)sig;
  (void)!write(wake_pipe[1], &c, 1);
}

static void on_message(gw_conn_t *conn, const void *data, size_t len, void *user_data) {
  char out[256];
  (void)user_data;
  if (len > sizeof out) len = sizeof out;
  for (size_t i = 0; i < len; i++) out[i] = (char)toupper(((const unsigned char *)data)[i]);
  gw_conn_send_message(conn, out, len);
}

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:7071";
  gw_server_t *server = NULL;
  gw_listener_t *listener = NULL;
  int rc;

  if (pipe(wake_pipe) != 0) return 1;
  fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  if ((rc = gw_server_create(&server, NULL)) != 0) {
    fprintf(stderr, "gw_server_create: %s\n", gw_strerror(rc));
    return 1;
  }
  gw_listener_options lo = GW_LISTENER_OPTIONS_INIT;
  lo.address = address;
  lo.framing = GW_FRAMING_LINE;
  lo.max_frame = 256;
  lo.on_message = on_message;
  if ((rc = gw_listener_create(&listener, server, &lo)) != 0) {
    fprintf(stderr, "cannot listen on %s: %s\n", address, gw_strerror(rc));
    gw_server_destroy(server);
    return 1;
  }
  printf("listening on port %d\n", gw_listener_port(listener));
  fflush(stdout);

  for (;;) {
    struct pollfd fds[2] = {
        {gw_server_fd(server), POLLIN, 0},
        {wake_pipe[0], POLLIN, 0},
    };
    if (poll(fds, 2, -1) < 0) continue; /* EINTR: a signal; the pipe tells which */
    if (fds[1].revents & POLLIN) {
      char c;
      (void)!read(wake_pipe[0], &c, 1);
      gw_server_stop(server); /* graceful: flushes what is queued */
    }
    if (fds[0].revents & POLLIN) {
      rc = gw_server_dispatch(server);
      if (rc != 0) break; /* 1: fully stopped; < 0: error */
    }
  }
  gw_server_destroy(server);
  close(wake_pipe[0]);
  close(wake_pipe[1]);
  return rc < 0 ? 1 : 0;
}
