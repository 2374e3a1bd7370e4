/* SPDX-License-Identifier: MIT */
/* A program as it was built against gateway 0.1.0: its own copy of the
 * 0.1.0 declarations it uses (not today's header), linked against an
 * unversioned libgateway.so.0 (stub_0_1.c), run against today's library
 * (tests/abi/old_binary.sh). It must get 0.1.0's behaviour: a version-1
 * gw_listener_options is accepted, and gw_server_stats()/gw_listener_stats()
 * write the five fields of 0.1.0's gw_stats and not one byte more. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- gateway 0.1.0's gateway.h, the parts used here ---- */
typedef struct gw_server gw_server_t;
typedef struct gw_listener gw_listener_t;
typedef struct gw_stats {
  uint64_t clients, accepted, refused, bytes_in, bytes_out;
} gw_stats;
typedef struct gw_listener_options {
  unsigned version;
  const char *address;
  int backlog;
  int framing;
  size_t max_frame;
  unsigned max_clients, max_clients_per_ip, idle_timeout_ms;
  int keepalive;
  unsigned keepalive_idle_s, keepalive_interval_s, keepalive_count;
  size_t high_water, low_water, max_output;
  const char *const *allow;
  size_t allow_count;
  void (*on_open)(void), (*on_message)(void), (*on_close)(void), (*on_drain)(void);
  void *user_data;
} gw_listener_options;
#define GW_LISTENER_OPTIONS_INIT \
  { 1, NULL, 128, 0, 65536, 0, 0, 0, 0, 0, 0, 0, 65536, 16384, 1048576, NULL, 0, NULL, NULL, NULL, NULL, NULL }
const char *gw_version(void);
int gw_server_create(gw_server_t **out, const void *options);
void gw_server_destroy(gw_server_t *server);
int gw_server_dispatch(gw_server_t *server);
int gw_server_stats(gw_stats *out, const gw_server_t *server);
int gw_listener_create(gw_listener_t **out, gw_server_t *server, const gw_listener_options *options);
int gw_listener_port(const gw_listener_t *listener);
int gw_listener_stats(gw_stats *out, const gw_listener_t *listener);
/* ---- end of 0.1.0's declarations ---- */

#define CANARY 0x5a5a5a5a5a5a5a5aull

/* A gw_stats with a canary where today's struct has bytes_spliced. */
typedef struct {
  gw_stats st;
  uint64_t canary;
} guarded_stats;

static int failures;
#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "old_binary: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

static int stats_of(gw_server_t *srv, gw_listener_t *l, guarded_stats *server_st, guarded_stats *listener_st) {
  memset(server_st, 0xff, sizeof server_st->st);
  memset(listener_st, 0xff, sizeof listener_st->st);
  server_st->canary = listener_st->canary = CANARY;
  int rc = gw_server_stats(&server_st->st, srv);
  return rc ? rc : gw_listener_stats(&listener_st->st, l);
}

int main(void) {
  const char *version = gw_version();
  printf("old_binary: running against libgateway %s\n", version);
  CHECK(strcmp(version, "stub") != 0);
  gw_server_t *srv = NULL;
  CHECK(gw_server_create(&srv, NULL) == 0);
  if (!srv) return 1;
  /* 0.1.0's struct, at the end of a bigger buffer: a library that took it
   * for a version-2 struct would read the 0xff bytes after it */
  union {
    gw_listener_options o;
    unsigned char bytes[sizeof(gw_listener_options) + 64];
  } buf;
  memset(&buf, 0xff, sizeof buf);
  gw_listener_options init = GW_LISTENER_OPTIONS_INIT;
  buf.o = init;
  buf.o.address = "127.0.0.1:0";
  gw_listener_t *l = NULL;
  CHECK(gw_listener_create(&l, srv, &buf.o) == 0);
  if (!l) return 1;
  int port = gw_listener_port(l);
  CHECK(port > 0);

  guarded_stats s, ls;
  CHECK(stats_of(srv, l, &s, &ls) == 0);
  CHECK(s.st.clients == 0 && s.st.accepted == 0 && s.st.bytes_in == 0);
  CHECK(ls.st.accepted == 0 && ls.st.refused == 0);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(write(fd, "abc", 3) == 3);
  for (int i = 0; i < 500; i++) {
    CHECK(gw_server_dispatch(srv) == 0);
    CHECK(stats_of(srv, l, &s, &ls) == 0);
    if (s.st.bytes_in == 3) break;
    usleep(2000);
  }
  CHECK(s.st.clients == 1 && s.st.accepted == 1 && s.st.refused == 0 && s.st.bytes_in == 3 && s.st.bytes_out == 0);
  CHECK(ls.st.clients == 1 && ls.st.accepted == 1 && ls.st.bytes_in == 3);
  /* the point: nothing written past 0.1.0's five fields */
  CHECK(s.canary == CANARY);
  CHECK(ls.canary == CANARY);
  close(fd);
  gw_server_destroy(srv);
  if (failures) return 1;
  printf("old_binary: 0.1.0's layout kept\n");
  return 0;
}
