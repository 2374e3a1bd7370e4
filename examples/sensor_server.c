/* SPDX-License-Identifier: MIT */
/* sensor_server: a line-protocol "sensor" built on libgateway.
 *
 *   sensor_server [ADDRESS] [PERIOD_MS]      (default 127.0.0.1:7070, 1000)
 *
 * Every PERIOD_MS it takes a (simulated) reading and broadcasts
 * "sensor temp=21.50" to every client; a client that sends "get" gets the
 * latest reading back as "temp=21.50". SIGINT/SIGTERM stop it gracefully.
 * Prints "listening on port N" once it is ready (useful with port 0).
 *
 * Build: cc sensor_server.c $(pkg-config --cflags --libs gateway)
 */
#define _POSIX_C_SOURCE 200809L
#include <gateway/gateway.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sensor {
  gw_server_t *server;
  gw_listener_t *listener;
  unsigned tick;
  double temp;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static int format_reading(char *buf, size_t cap, const struct sensor *s) {
  return snprintf(buf, cap, "temp=%.2f", s->temp);
}

static void on_message(gw_conn_t *conn, const void *data, size_t len, void *user_data) {
  struct sensor *s = user_data;
  char reply[64];
  if (len == 3 && memcmp(data, "get", 3) == 0) {
    int n = format_reading(reply, sizeof reply, s);
    gw_conn_send_message(conn, reply, (size_t)n);
  } else {
    gw_conn_send_message(conn, "error unknown command", 21);
  }
}

static void on_sample(gw_timer_t *timer, void *user_data) {
  struct sensor *s = user_data;
  char line[64];
  (void)timer;
  s->tick++;
  s->temp = 21.0 + (double)(s->tick % 10) * 0.25; /* a very predictable sensor */
  strcpy(line, "sensor ");
  int n = format_reading(line + 7, sizeof line - 7, s);
  gw_listener_broadcast(s->listener, line, (size_t)n + 7);
}

/* Signals only set a flag; a short timer turns it into a stop on the loop. */
static void on_watch(gw_timer_t *timer, void *user_data) {
  struct sensor *s = user_data;
  (void)timer;
  if (stop_requested) gw_server_stop(s->server);
}

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:7070";
  unsigned period = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 1000;
  struct sensor s = {NULL, NULL, 0, 21.0};
  int rc;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  if ((rc = gw_server_create(&s.server, NULL)) != 0) {
    fprintf(stderr, "gw_server_create: %s\n", gw_strerror(rc));
    return 1;
  }
  gw_listener_options lo = GW_LISTENER_OPTIONS_INIT;
  lo.address = address;
  lo.framing = GW_FRAMING_LINE;
  lo.max_frame = 256;
  lo.idle_timeout_ms = 60000;
  lo.frame_timeout_ms = 5000; /* a line begun must end within 5 s (since 0.2.0) */
  lo.on_message = on_message;
  lo.user_data = &s;
  if ((rc = gw_listener_create(&s.listener, s.server, &lo)) != 0) {
    fprintf(stderr, "cannot listen on %s: %s\n", address, gw_strerror(rc));
    gw_server_destroy(s.server);
    return 1;
  }
  gw_timer_t *sample = NULL, *watch = NULL;
  if (gw_timer_create(&sample, s.server, on_sample, &s) != 0 || gw_timer_create(&watch, s.server, on_watch, &s) != 0) {
    gw_server_destroy(s.server);
    return 1;
  }
  gw_timer_start(sample, period, period);
  gw_timer_start(watch, 100, 100);

  printf("listening on port %d\n", gw_listener_port(s.listener));
  fflush(stdout);
  rc = gw_server_run(s.server);
  gw_server_destroy(s.server); /* also frees the timers */
  if (rc != 0) {
    fprintf(stderr, "gw_server_run: %s\n", gw_strerror(rc));
    return 1;
  }
  return 0;
}
