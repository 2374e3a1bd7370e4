// SPDX-License-Identifier: MIT
// The two ends of bench/modbus.sh, with libmodbus:
//
//   modbus_bench slave            opens a pty pair, prints the slave's path,
//                                 and answers as RTU unit 1 on the master
//                                 (libmodbus on the master's fd) until killed
//   modbus_bench master PORT MASTERS COUNT REGS
//                                 MASTERS threads, each a Modbus TCP client of
//                                 127.0.0.1:PORT, share COUNT reads of REGS
//                                 holding registers; prints
//                                 "p50_us p99_us max_us requests_per_s failures"
//
// A benchmark tool, not a test: it measures and prints.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

// The slave: registers i hold i. A read error (EIO while no one has the
// pty's slave open) is waited out.
static int run_slave(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  char path[128];
  if (master < 0 || grantpt(master) || unlockpt(master) || ptsname_r(master, path, sizeof path)) {
    perror("pty");
    return 1;
  }
  printf("%s\n", path);
  fflush(stdout);
  modbus_t *ctx = modbus_new_rtu(path, 115200, 'N', 8, 1);
  modbus_mapping_t *map = modbus_mapping_new(0, 0, 128, 0);
  if (!ctx || !map) return 1;
  for (int i = 0; i < 128; ++i) map->tab_registers[i] = (uint16_t)i;
  modbus_set_slave(ctx, 1);
  modbus_set_socket(ctx, master);
  uint8_t req[MODBUS_RTU_MAX_ADU_LENGTH];
  for (;;) {
    struct pollfd pfd = {.fd = master, .events = POLLIN};
    if (poll(&pfd, 1, 100) <= 0) continue;
    if ((pfd.revents & POLLHUP) && !(pfd.revents & POLLIN)) {
      usleep(5000);
      continue;
    }
    int rc = modbus_receive(ctx, req);
    if (rc > 0)
      modbus_reply(ctx, req, rc, map);
    else if (rc < 0 && errno == EIO)
      usleep(5000);
    else if (rc < 0)
      modbus_flush(ctx);
  }
}

typedef struct job {
  int port, count, regs;
  int64_t *latency_us;  // count entries
  int failures;
  pthread_t th;
} job;

static void *master_main(void *arg) {
  job *j = arg;
  modbus_t *ctx = modbus_new_tcp("127.0.0.1", j->port);
  modbus_set_slave(ctx, 1);
  modbus_set_response_timeout(ctx, 5, 0);
  for (int tries = 0; modbus_connect(ctx) != 0; ++tries) {
    if (tries == 500) {
      j->failures = j->count;
      return NULL;
    }
    usleep(10000);
  }
  uint16_t regs[125];
  for (int i = 0; i < j->count; ++i) {
    const int64_t start = now_us();
    if (modbus_read_registers(ctx, 0, j->regs, regs) != j->regs || regs[j->regs - 1] != j->regs - 1) ++j->failures;
    j->latency_us[i] = now_us() - start;
  }
  modbus_close(ctx);
  modbus_free(ctx);
  return NULL;
}

static int compare(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int run_masters(int port, int masters, int count, int regs) {
  job jobs[64];
  if (masters < 1 || masters > 64 || regs < 1 || regs > 125) return 2;
  const int each = count / masters;
  int64_t *all = calloc((size_t)(each * masters), sizeof *all);
  const int64_t start = now_us();
  for (int i = 0; i < masters; ++i) {
    jobs[i] = (job){.port = port, .count = each, .regs = regs, .latency_us = all + i * each};
    pthread_create(&jobs[i].th, NULL, master_main, &jobs[i]);
  }
  int failures = 0;
  for (int i = 0; i < masters; ++i) {
    pthread_join(jobs[i].th, NULL);
    failures += jobs[i].failures;
  }
  const double seconds = (double)(now_us() - start) / 1e6;
  const int n = each * masters;
  qsort(all, (size_t)n, sizeof *all, compare);
  printf("%lld %lld %lld %.0f %d\n", (long long)all[n / 2], (long long)all[(n * 99) / 100], (long long)all[n - 1],
         n / seconds, failures);
  free(all);
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "slave") == 0) return run_slave();
  if (argc == 6 && strcmp(argv[1], "master") == 0)
    return run_masters(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  fprintf(stderr, "usage: %s slave | master PORT MASTERS COUNT REGS\n", argv[0]);
  return 2;
}
