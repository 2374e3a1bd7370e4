/* SPDX-License-Identifier: MIT */
/* Test-only LD_PRELOAD shim: name resolution for host names under the reserved
 * suffix ".gwtest", without any network, for the gatewayd DNS tests.
 *
 * getaddrinfo() for NAME.gwtest reads the file named by $GWTEST_HOSTS at each
 * call, so a test can change the answers while the daemon runs. Lines:
 *
 *     # comment
 *     NAME [delay=MS] ADDRESS...      (IPv4 or IPv6 literals, in answer order)
 *
 * A NAME that is not listed (or a missing file) answers EAI_NONAME; delay=MS
 * sleeps first, as a slow name server would. When $GWTEST_HOSTS_LOG is set,
 * each .gwtest lookup appends "NAME\n" to that file. Every other name, and
 * every AI_NUMERICHOST call, goes to the real getaddrinfo(). freeaddrinfo()
 * frees the shim's own answers (kept in a registry) and passes the rest on.
 * Thread-safe: the daemon resolves on worker threads. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define SUFFIX ".gwtest"
#define MAX_LIVE 256

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef void (*freeaddrinfo_fn)(struct addrinfo *);

static pthread_mutex_t live_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct addrinfo *live[MAX_LIVE]; /* answers made here, not yet freed */

static int is_test_name(const char *node) {
  size_t n = node ? strlen(node) : 0, s = strlen(SUFFIX);
  return n > s && strcasecmp(node + n - s, SUFFIX) == 0;
}

static int remember(struct addrinfo *ai) {
  int ok = 0;
  pthread_mutex_lock(&live_mutex);
  for (int i = 0; i < MAX_LIVE && !ok; ++i)
    if (!live[i]) {
      live[i] = ai;
      ok = 1;
    }
  pthread_mutex_unlock(&live_mutex);
  return ok;
}

static int forget(struct addrinfo *ai) {
  int found = 0;
  pthread_mutex_lock(&live_mutex);
  for (int i = 0; i < MAX_LIVE && !found; ++i)
    if (live[i] == ai) {
      live[i] = NULL;
      found = 1;
    }
  pthread_mutex_unlock(&live_mutex);
  return found;
}

static void free_chain(struct addrinfo *ai) {
  while (ai) {
    struct addrinfo *next = ai->ai_next;
    free(ai);
    ai = next;
  }
}

static void log_lookup(const char *node) {
  const char *path = getenv("GWTEST_HOSTS_LOG");
  if (!path) return;
  FILE *f = fopen(path, "ae");
  if (f) {
    fprintf(f, "%s\n", node);
    fclose(f);
  }
}

/* One entry: an addrinfo with its socket address in the same block. */
static struct addrinfo *make_entry(const char *text, int port, const struct addrinfo *hints) {
  struct {
    struct addrinfo ai;
    struct sockaddr_storage ss;
  } *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&e->ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&e->ss;
  int want = hints ? hints->ai_family : AF_UNSPEC;
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1 && (want == AF_UNSPEC || want == AF_INET)) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((unsigned short)port);
    e->ai.ai_family = AF_INET;
    e->ai.ai_addrlen = sizeof *v4;
  } else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1 && (want == AF_UNSPEC || want == AF_INET6)) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((unsigned short)port);
    e->ai.ai_family = AF_INET6;
    e->ai.ai_addrlen = sizeof *v6;
  } else {
    free(e);
    return NULL;
  }
  e->ai.ai_socktype = hints && hints->ai_socktype ? hints->ai_socktype : SOCK_STREAM;
  e->ai.ai_protocol = IPPROTO_TCP;
  e->ai.ai_addr = (struct sockaddr *)&e->ss;
  return &e->ai;
}

/* The answer for `node` from the hosts file: 0 and *res, or an EAI_* code. */
static int answer(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  const char *path = getenv("GWTEST_HOSTS");
  FILE *f = path ? fopen(path, "re") : NULL;
  if (!f) return EAI_NONAME;
  int port = service ? atoi(service) : 0;
  char line[1024];
  int rc = EAI_NONAME;
  while (rc == EAI_NONAME && fgets(line, sizeof line, f)) {
    char *save = NULL, *word = strtok_r(line, " \t\r\n", &save);
    if (!word || word[0] == '#' || strcasecmp(word, node) != 0) continue;
    struct addrinfo *head = NULL, **tail = &head;
    long delay_ms = 0;
    while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
      if (strncmp(word, "delay=", 6) == 0) {
        delay_ms = atol(word + 6);
        continue;
      }
      struct addrinfo *entry = make_entry(word, port, hints);
      if (entry) {
        *tail = entry;
        tail = &entry->ai_next;
      }
    }
    if (delay_ms > 0) {
      struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    if (!head) {
      rc = EAI_NODATA;
    } else if (!remember(head)) {
      free_chain(head);
      rc = EAI_MEMORY;
    } else {
      *res = head;
      rc = 0;
    }
  }
  fclose(f);
  return rc;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  if (!is_test_name(node) || (hints && (hints->ai_flags & AI_NUMERICHOST))) {
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_SYSTEM;
  }
  log_lookup(node);
  return answer(node, service, hints, res);
}

void freeaddrinfo(struct addrinfo *ai) {
  if (ai && forget(ai)) {
    free_chain(ai);
    return;
  }
  freeaddrinfo_fn real = (freeaddrinfo_fn)dlsym(RTLD_NEXT, "freeaddrinfo");
  if (real) real(ai);
}
