/* SPDX-License-Identifier: MIT */
/* gatewayd's Modbus routes (issue 10) against libmodbus, the reference
 * Modbus stack, on both sides: the masters are libmodbus TCP clients of
 * gatewayd, and the device is a libmodbus RTU slave on a pty's master (its
 * context's fd replaced by modbus_set_socket: libmodbus only ever reads and
 * writes it) while gatewayd opens the pty's slave as the route's serial bus,
 * or a libmodbus TCP slave that takes one connection. What libmodbus cannot
 * do (a bad CRC, RTU frames over TCP, malformed MBAP headers, a request to
 * unit 0 without waiting for an answer) is written by hand here. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLAVE_ADDRESS 17
#define FC_CUSTOM 0x41 /* a user-defined function code (0x41..0x48) */
#define CUSTOM_ANSWER 0x5a

/* ---- the Modbus CRC and raw frames ---- */

static uint16_t crc16(const uint8_t *data, size_t len) {
  uint16_t crc = 0xffff;
  for (size_t i = 0; i < len; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xa001) : (uint16_t)(crc >> 1);
  }
  return crc;
}

/* Appends the CRC (low byte first) to an RTU frame of `len` bytes; returns the new length. */
static size_t rtu_seal(uint8_t *frame, size_t len) {
  const uint16_t crc = crc16(frame, len);
  frame[len] = (uint8_t)(crc & 0xff);
  frame[len + 1] = (uint8_t)(crc >> 8);
  return len + 2;
}

static void write_all(int fd, const void *data, size_t len) { assert_int_equal(write(fd, data, len), (ssize_t)len); }

/* Sends an MBAP request: transaction `tid`, protocol 0, unit, PDU. */
static void mbap_send(int fd, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t len) {
  uint8_t frame[300];
  assert_true(len + 7 <= sizeof frame);
  const size_t length = len + 1;
  const uint8_t header[7] = {(uint8_t)(tid >> 8), (uint8_t)tid, 0, 0, (uint8_t)(length >> 8), (uint8_t)length, unit};
  memcpy(frame, header, 7);
  memcpy(frame + 7, pdu, len);
  write_all(fd, frame, len + 7);
}

/* Reads one MBAP answer; returns its PDU length (after the unit), or -1. */
static long mbap_recv(int fd, uint16_t *tid, uint8_t *unit, uint8_t *pdu, size_t cap, int timeout_ms) {
  uint8_t header[7];
  if (gwt_read_fd_exact(NULL, fd, header, 7, timeout_ms) != 7) return -1;
  const size_t length = ((size_t)header[4] << 8) | header[5];
  if (header[2] != 0 || header[3] != 0 || length < 2 || length - 1 > cap) return -1;
  if (gwt_read_fd_exact(NULL, fd, pdu, length - 1, timeout_ms) != length - 1) return -1;
  *tid = (uint16_t)((header[0] << 8) | header[1]);
  *unit = header[6];
  return (long)(length - 1);
}

/* ---- the RTU slave: libmodbus on a pty's master ---- */

/* SLAVE_SILENT answers nothing and keeps the bytes it gets: libmodbus, after
 * a request for another unit, takes the next frame for that unit's answer
 * and so cannot count the tries of a unit that never answers. */
enum slave_mode { SLAVE_NORMAL, SLAVE_BAD_CRC, SLAVE_SILENT };

typedef struct rtu_slave {
  int master;     /* the pty's master: the bus, seen from the device */
  char path[128]; /* the pty's slave: the route's serial device */
  modbus_t *ctx;  /* its fd is `master` */
  modbus_mapping_t *map;
  pthread_t th;
  enum slave_mode mode;
  int delay_ms;       /* before each answer: a slow device */
  int stop;           /* __atomic_*: set by the test thread */
  int served;         /* __atomic_*: requests to SLAVE_ADDRESS */
  int ignored;        /* __atomic_*: requests to other units (no answer) */
  int broadcasts;     /* __atomic_*: requests to unit 0 (no answer) */
  uint8_t heard[256]; /* SLAVE_SILENT: the first bytes it got */
  int heard_len;      /* __atomic_*: how many there are */
} rtu_slave;

static int slave_count(int *counter) { return __atomic_load_n(counter, __ATOMIC_SEQ_CST); }

static void slave_bump(int *counter) { __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST); }

/* A read-holding-registers answer for `req` with its CRC spoiled. */
static void answer_bad_crc(rtu_slave *s, const uint8_t *req) {
  const int count = ((req[4] << 8) | req[5]) & 0x7f;
  uint8_t frame[260] = {req[0], 0x03, (uint8_t)(2 * count)};
  for (int i = 0; i < count; ++i) {
    frame[3 + 2 * i] = 0;
    frame[4 + 2 * i] = (uint8_t)i;
  }
  size_t len = rtu_seal(frame, 3 + 2 * (size_t)count);
  frame[len - 1] ^= 0xff;
  write_all(s->master, frame, len);
}

/* One request taken by modbus_receive (`len` bytes, address first). */
static void slave_answer(rtu_slave *s, const uint8_t *req, int len) {
  if (req[0] == 0) {
    slave_bump(&s->broadcasts);
    modbus_reply(s->ctx, req, len, s->map); /* applies it; libmodbus sends no answer to unit 0 on RTU */
    return;
  }
  slave_bump(&s->served);
  if (s->delay_ms) gwd_sleep_ms(s->delay_ms);
  if (req[1] == FC_CUSTOM) {
    uint8_t frame[8] = {req[0], FC_CUSTOM, CUSTOM_ANSWER};
    write_all(s->master, frame, rtu_seal(frame, 3));
  } else if (s->mode == SLAVE_BAD_CRC && req[1] == 0x03) {
    answer_bad_crc(s, req);
  } else {
    modbus_reply(s->ctx, req, len, s->map);
  }
}

static void slave_listen(rtu_slave *s) {
  const int len = s->heard_len;
  const ssize_t n = read(s->master, s->heard + len, sizeof s->heard - (size_t)len);
  if (n > 0)
    __atomic_store_n(&s->heard_len, len + (int)n, __ATOMIC_SEQ_CST);
  else
    gwd_sleep_ms(5);
}

static void *slave_main(void *arg) {
  rtu_slave *s = arg;
  uint8_t req[MODBUS_RTU_MAX_ADU_LENGTH];
  while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
    struct pollfd pfd = {.fd = s->master, .events = POLLIN};
    if (poll(&pfd, 1, 20) <= 0) continue;
    if (pfd.revents & POLLHUP && !(pfd.revents & POLLIN)) {
      gwd_sleep_ms(5); /* no one has the slave open (yet) */
      continue;
    }
    if (s->mode == SLAVE_SILENT) {
      slave_listen(s);
      continue;
    }
    const int rc = modbus_receive(s->ctx, req);
    if (rc > 0)
      slave_answer(s, req, rc);
    else if (rc == 0)
      slave_bump(&s->ignored); /* another unit's request, or the answer libmodbus then expects */
    else if (errno == EIO)
      gwd_sleep_ms(5);
    else
      modbus_flush(s->ctx);
  }
  return NULL;
}

/* Registers i hold i, input registers 1000 + i, input bits alternate. */
static void slave_start(rtu_slave *s, enum slave_mode mode, int delay_ms) {
  memset(s, 0, sizeof *s);
  s->mode = mode;
  s->delay_ms = delay_ms;
  s->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  assert_true(s->master >= 0);
  assert_int_equal(grantpt(s->master), 0);
  assert_int_equal(unlockpt(s->master), 0);
  assert_int_equal(ptsname_r(s->master, s->path, sizeof s->path), 0);
  s->ctx = modbus_new_rtu(s->path, 115200, 'N', 8, 1);
  assert_non_null(s->ctx);
  assert_int_equal(modbus_set_slave(s->ctx, SLAVE_ADDRESS), 0);
  assert_int_equal(modbus_set_socket(s->ctx, s->master), 0);
  s->map = modbus_mapping_new(64, 64, 256, 64);
  assert_non_null(s->map);
  for (int i = 0; i < 256; ++i) s->map->tab_registers[i] = (uint16_t)i;
  for (int i = 0; i < 64; ++i) s->map->tab_input_registers[i] = (uint16_t)(1000 + i);
  for (int i = 0; i < 64; ++i) s->map->tab_input_bits[i] = (uint8_t)(i % 2);
  assert_int_equal(pthread_create(&s->th, NULL, slave_main, s), 0);
}

static void slave_stop(rtu_slave *s) {
  __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
  pthread_join(s->th, NULL);
  /* Not modbus_close: it would restore termios it never saved on our pty. */
  modbus_set_socket(s->ctx, -1);
  modbus_free(s->ctx);
  modbus_mapping_free(s->map);
  close(s->master);
}

/* Waits until *counter reaches `want`; 1 if it does. */
static int slave_wait(int *counter, int want) {
  const int64_t deadline = gwt_now_ms() + GWD_TIMEOUT_MS;
  while (slave_count(counter) < want && gwt_now_ms() < deadline) gwd_sleep_ms(5);
  return slave_count(counter) >= want;
}

/* ---- gatewayd and its masters ---- */

/* gatewayd with one Modbus route "mb" on `port`: `backend` (a serial one
 * gets its lock files in the test's dir), protocol, then `extra` lines. */
static void route_conf(const gwd_fixture *f, char *conf, size_t cap, int port, const char *backend,
                       const char *protocol, const char *extra) {
  const int serial = strncmp(backend, "serial:", 7) == 0;
  int n = snprintf(conf, cap,
                   "[[route]]\nname = \"mb\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"%s\"\nprotocol = \"%s\"\n"
                   "%s%s%s%s",
                   port, backend, protocol, serial ? "baud = 115200\nlock_dir = \"" : "", serial ? f->dir.path : "",
                   serial ? "\"\n" : "", extra);
  assert_true(n > 0 && (size_t)n < cap);
}

static void start_route(gwd_fixture *f, int port, const char *backend, const char *protocol, const char *extra,
                        const gwd_spawn_opts *opts) {
  char conf[2048];
  route_conf(f, conf, sizeof conf, port, backend, protocol, extra);
  gwd_start_conf(&f->proc, &f->dir, conf, opts);
}

/* A Modbus TCP route on the slave's bus; returns its port. */
static int start_rtu_route(gwd_fixture *f, const rtu_slave *s, const char *extra) {
  char backend[160];
  snprintf(backend, sizeof backend, "serial:%s", s->path);
  const int port = gwd_port();
  start_route(f, port, backend, "modbus", extra, NULL);
  return port;
}

/* A libmodbus TCP master of gatewayd for `unit`. */
static modbus_t *master_open(int port, int unit) {
  modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
  assert_non_null(ctx);
  assert_int_equal(modbus_set_slave(ctx, unit), 0);
  const int ms = gwd_scaled_ms(3000);
  assert_int_equal(modbus_set_response_timeout(ctx, (uint32_t)(ms / 1000), (uint32_t)(ms % 1000) * 1000), 0);
  const int64_t deadline = gwt_now_ms() + GWD_TIMEOUT_MS;
  while (modbus_connect(ctx) != 0) {
    assert_true(gwt_now_ms() < deadline);
    gwd_sleep_ms(20);
  }
  return ctx;
}

static void master_close(modbus_t *ctx) {
  modbus_close(ctx);
  modbus_free(ctx);
}

static int raw_client(int port) {
  int fd = gwd_connect_retry(port, GWD_TIMEOUT_MS);
  assert_true(fd >= 0);
  gwd_sock_timeouts(fd, GWD_TIMEOUT_MS);
  return fd;
}

/* A read of registers 0..1 answered by the device: the route serves. */
static void assert_serves(modbus_t *ctx) {
  uint16_t regs[2] = {0xffff, 0xffff};
  assert_int_equal(modbus_read_registers(ctx, 4, 2, regs), 2);
  assert_int_equal(regs[0], 4);
  assert_int_equal(regs[1], 5);
}

/* gatewayd stops cleanly; its log of the route's counters holds `expect`. */
static void stop_and_find(gwd_fixture *f, const char *expect) {
  assert_int_equal(gwd_stop(&f->proc), 0);
  char *err = gwd_read_err(&f->proc);
  if (expect && !strstr(err, expect)) {
    fprintf(stderr, "gatewayd's log:\n%s", err);
    fail_msg("no \"%s\" in gatewayd's log", expect);
  }
  free(err);
}

/* ---- the tests ---- */

/* Every client function of libmodbus, through gatewayd to a libmodbus RTU
 * slave, and a user-defined function code by modbus_send_raw_request; the
 * slave's exception (illegal data address) reaches the master as itself. */
static void every_function(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  modbus_t *m = master_open(start_rtu_route(f, &s, ""), SLAVE_ADDRESS);

  uint8_t bits[16];
  uint16_t regs[8];
  assert_int_equal(modbus_write_bit(m, 3, 1), 1);
  const uint8_t coils[5] = {1, 0, 1, 1, 0};
  assert_int_equal(modbus_write_bits(m, 8, 5, coils), 5);
  assert_int_equal(modbus_read_bits(m, 3, 10, bits), 10);
  const uint8_t want_bits[10] = {1, 0, 0, 0, 0, 1, 0, 1, 1, 0};
  assert_memory_equal(bits, want_bits, 10);
  assert_int_equal(modbus_read_input_bits(m, 1, 4, bits), 4);
  const uint8_t want_inputs[4] = {1, 0, 1, 0};
  assert_memory_equal(bits, want_inputs, 4);
  assert_int_equal(modbus_read_input_registers(m, 2, 3, regs), 3);
  assert_int_equal(regs[0], 1002);
  assert_int_equal(regs[2], 1004);
  assert_int_equal(modbus_write_register(m, 20, 0x1234), 1);
  const uint16_t values[3] = {0xaaaa, 0x5555, 0x0f0f};
  assert_int_equal(modbus_write_registers(m, 21, 3, values), 3);
  assert_int_equal(modbus_mask_write_register(m, 20, 0x00ff, 0x0100), 1);
  assert_int_equal(modbus_read_registers(m, 20, 4, regs), 4);
  assert_int_equal(regs[0], (0x1234 & 0x00ff) | (0x0100 & ~0x00ff));
  assert_memory_equal(regs + 1, values, sizeof values);
  const uint16_t written[2] = {7, 8};
  assert_int_equal(modbus_write_and_read_registers(m, 30, 2, written, 29, 3, regs), 3);
  assert_int_equal(regs[0], 29);
  assert_int_equal(regs[1], 7);
  assert_int_equal(regs[2], 8);
  uint8_t id[64];
  const int id_len = modbus_report_slave_id(m, sizeof id, id);
  assert_true(id_len >= 5);
  assert_int_equal(id[1], 0xff); /* run indicator on */
  assert_memory_equal(id + 2, "LMB", 3);

  const uint8_t raw[2] = {SLAVE_ADDRESS, FC_CUSTOM};
  assert_true(modbus_send_raw_request(m, raw, 2) > 0);
  uint8_t rsp[MODBUS_TCP_MAX_ADU_LENGTH];
  const int rsp_len = modbus_receive_confirmation(m, rsp);
  assert_int_equal(rsp_len, 7 + 2); /* MBAP, function, one byte */
  assert_int_equal(rsp[7], FC_CUSTOM);
  assert_int_equal(rsp[8], CUSTOM_ANSWER);

  errno = 0;
  assert_int_equal(modbus_read_registers(m, 250, 10, regs), -1);
  assert_int_equal(errno, EMBXILADD);
  assert_serves(m); /* an exception ends nothing */
  master_close(m);
  stop_and_find(f, "exceptions");
  slave_stop(&s);
}

/* A unit no device answers: each try times out, `retries` more are made
 * (the bus sees them all, each the request itself), and the master gets
 * exception 0x0B; the daemon logs the route's timeouts when it stops. */
static void timeout_is_gateway_target_failed(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_SILENT, 0);
  modbus_t *m = master_open(start_rtu_route(f, &s, "response_timeout = \"100ms\"\nretries = 2\n"), 5);
  uint16_t regs[2];
  errno = 0;
  assert_int_equal(modbus_read_registers(m, 0, 2, regs), -1);
  assert_int_equal(errno, EMBXGTAR);
  uint8_t request[8] = {5, 0x03, 0x00, 0x00, 0x00, 0x02};
  rtu_seal(request, 6);
  assert_true(slave_wait(&s.heard_len, 3 * 8));
  gwd_sleep_ms(150);
  assert_int_equal(slave_count(&s.heard_len), 3 * 8);
  for (int i = 0; i < 3; ++i) assert_memory_equal(s.heard + 8 * i, request, 8);
  master_close(m);
  stop_and_find(f, " 3 timeouts");
  slave_stop(&s);
}

/* An answer whose CRC is wrong is a failed try: retried, then 0x0B. */
static void bad_crc_is_retried_then_0x0b(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_BAD_CRC, 0);
  modbus_t *m = master_open(start_rtu_route(f, &s, "response_timeout = \"300ms\"\nretries = 1\n"), SLAVE_ADDRESS);
  uint16_t regs[2];
  errno = 0;
  assert_int_equal(modbus_read_registers(m, 0, 2, regs), -1);
  assert_int_equal(errno, EMBXGTAR);
  assert_int_equal(slave_count(&s.served), 2);
  /* Other functions are answered with good CRCs by this slave. */
  assert_int_equal(modbus_read_input_registers(m, 0, 1, regs), 1);
  assert_int_equal(regs[0], 1000);
  master_close(m);
  stop_and_find(f, " 2 crc errors");
  slave_stop(&s);
}

/* A request to unit 0 is applied by every device and answered by none: the
 * master gets nothing, and the next request is served after the delay. */
static void broadcast_gets_no_answer(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  const int port = start_rtu_route(f, &s, "broadcast_delay = \"50ms\"\n");
  int c = raw_client(port);
  const uint8_t write_reg[5] = {0x06, 0x00, 40, 0xbe, 0xef};
  mbap_send(c, 1, 0, write_reg, sizeof write_reg);
  assert_true(slave_wait(&s.broadcasts, 1));
  assert_int_equal(gwt_quiet(NULL, c, 300), 1);
  const uint8_t read_reg[5] = {0x03, 0x00, 40, 0x00, 0x01};
  mbap_send(c, 2, SLAVE_ADDRESS, read_reg, sizeof read_reg);
  uint8_t pdu[64], unit = 0;
  uint16_t tid = 0;
  assert_int_equal(mbap_recv(c, &tid, &unit, pdu, sizeof pdu, GWD_TIMEOUT_MS), 4);
  assert_int_equal(tid, 2);
  assert_int_equal(unit, SLAVE_ADDRESS);
  const uint8_t want[4] = {0x03, 0x02, 0xbe, 0xef};
  assert_memory_equal(pdu, want, 4);
  close(c);
  stop_and_find(f, " 1 broadcasts");
  slave_stop(&s);
}

typedef struct master_job {
  int port;
  int index;
  int rounds;
  int failures; /* requests that failed or answers that did not match */
  pthread_t th;
} master_job;

/* Writes its own registers (distinct per master) and reads them back. */
static void *master_main(void *arg) {
  master_job *job = arg;
  modbus_t *m = modbus_new_tcp("127.0.0.1", job->port);
  modbus_set_slave(m, SLAVE_ADDRESS);
  modbus_set_response_timeout(m, (uint32_t)gwd_scaled_ms(5000) / 1000, 0);
  if (!m || modbus_connect(m) != 0) {
    job->failures = job->rounds;
    return NULL;
  }
  const int base = 64 + job->index * 8;
  for (int round = 0; round < job->rounds; ++round) {
    uint16_t out[4], in[4] = {0};
    for (int i = 0; i < 4; ++i) out[i] = (uint16_t)((job->index << 12) | (round << 2) | i);
    if (modbus_write_registers(m, base, 4, out) != 4 || modbus_read_registers(m, base, 4, in) != 4 ||
        memcmp(in, out, sizeof out) != 0)
      ++job->failures;
  }
  master_close(m);
  return NULL;
}

static void run_masters(int port, int count, int rounds) {
  master_job jobs[8];
  assert_true(count <= 8);
  for (int i = 0; i < count; ++i) {
    jobs[i] = (master_job){.port = port, .index = i, .rounds = rounds};
    assert_int_equal(pthread_create(&jobs[i].th, NULL, master_main, &jobs[i]), 0);
  }
  for (int i = 0; i < count; ++i) {
    pthread_join(jobs[i].th, NULL);
    if (jobs[i].failures) fail_msg("master %d: %d of %d rounds failed", i, jobs[i].failures, rounds);
  }
}

/* Eight masters at once share one bus: every answer is its own request's. */
static void eight_masters_at_once(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  run_masters(start_rtu_route(f, &s, ""), 8, 25);
  assert_int_equal(slave_count(&s.served), 8 * 25 * 2);
  stop_and_find(f, " 400 requests");
  slave_stop(&s);
}

/* Past max_queue requests waiting or in flight, one more is answered at
 * once with exception 0x06 (server busy); the one on the bus completes. */
static void full_queue_is_server_busy(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 400);
  const int port = start_rtu_route(f, &s, "max_queue = 1\n");
  int a = raw_client(port), b = raw_client(port);
  const uint8_t read_reg[5] = {0x03, 0x00, 0x07, 0x00, 0x01};
  mbap_send(a, 0x0101, SLAVE_ADDRESS, read_reg, sizeof read_reg);
  assert_true(slave_wait(&s.served, 1));
  mbap_send(b, 0x0202, SLAVE_ADDRESS, read_reg, sizeof read_reg);
  uint8_t pdu[64], unit = 0;
  uint16_t tid = 0;
  assert_int_equal(mbap_recv(b, &tid, &unit, pdu, sizeof pdu, GWD_TIMEOUT_MS), 2);
  /* At once, not after the slow answer: that one is not there yet. */
  struct pollfd pending = {.fd = a, .events = POLLIN};
  assert_int_equal(poll(&pending, 1, 0), 0);
  assert_int_equal(tid, 0x0202);
  assert_int_equal(pdu[0], 0x83);
  assert_int_equal(pdu[1], 0x06);
  assert_int_equal(mbap_recv(a, &tid, &unit, pdu, sizeof pdu, GWD_TIMEOUT_MS), 4);
  assert_int_equal(tid, 0x0101);
  assert_int_equal(pdu[3], 7);
  close(a);
  close(b);
  stop_and_find(f, " 1 busy");
  slave_stop(&s);
}

/* unit_map sends unit 1 to bus address 17; 17 itself is not mapped and
 * passes unchanged; the answer carries the unit the client asked. */
static void unit_map_routes_units(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  const int port = start_rtu_route(f, &s, "unit_map = { \"1\" = 17 }\nresponse_timeout = \"100ms\"\n");
  modbus_t *mapped = master_open(port, 1), *direct = master_open(port, SLAVE_ADDRESS), *other = master_open(port, 2);
  assert_serves(mapped); /* libmodbus checks the answer's unit: 1 */
  assert_serves(direct);
  uint16_t regs[2];
  assert_int_equal(modbus_read_registers(other, 0, 2, regs), -1);
  assert_int_equal(errno, EMBXGTAR);
  assert_int_equal(slave_count(&s.served), 2);
  master_close(mapped);
  master_close(direct);
  master_close(other);
  stop_and_find(f, NULL);
  slave_stop(&s);
}

/* A repeated read within `cache` is answered without the bus; a write to
 * the unit drops what was cached, and the next read goes to the device. */
static void cache_hit_and_invalidation(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  modbus_t *m = master_open(start_rtu_route(f, &s, "cache = \"10s\"\n"), SLAVE_ADDRESS);
  assert_serves(m);
  assert_serves(m);
  assert_int_equal(slave_count(&s.served), 1);
  assert_int_equal(modbus_write_register(m, 4, 44), 1);
  assert_int_equal(slave_count(&s.served), 2);
  uint16_t regs[2];
  assert_int_equal(modbus_read_registers(m, 4, 2, regs), 2);
  assert_int_equal(regs[0], 44);
  assert_int_equal(slave_count(&s.served), 3);
  master_close(m);
  stop_and_find(f, " 1 cache hits");
  slave_stop(&s);
}

/* ---- a Modbus TCP device behind one connection ---- */

typedef struct tcp_slave {
  modbus_t *ctx;
  modbus_mapping_t *map;
  int listen_fd;
  int port;
  int accepted; /* __atomic_* */
  int stop;     /* __atomic_* */
  pthread_t th;
} tcp_slave;

/* Accepts one connection and serves it until stopped; a second connection
 * is counted, and never served (the device takes one). */
static void *tcp_slave_main(void *arg) {
  tcp_slave *t = arg;
  uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
  int conn = -1;
  while (!__atomic_load_n(&t->stop, __ATOMIC_SEQ_CST)) {
    struct pollfd pfd[2] = {{.fd = t->listen_fd, .events = POLLIN}, {.fd = conn, .events = POLLIN}};
    if (poll(pfd, 2, 20) <= 0) continue;
    if (pfd[0].revents & POLLIN) {
      int fd = accept(t->listen_fd, NULL, NULL);
      if (fd >= 0 && __atomic_add_fetch(&t->accepted, 1, __ATOMIC_SEQ_CST) == 1) {
        conn = fd;
        modbus_set_socket(t->ctx, conn);
      } else if (fd >= 0) {
        close(fd);
      }
    }
    if (conn >= 0 && (pfd[1].revents & (POLLIN | POLLHUP))) {
      const int rc = modbus_receive(t->ctx, req);
      if (rc > 0) modbus_reply(t->ctx, req, rc, t->map);
      if (rc < 0 && errno != EMBBADCRC) {
        close(conn);
        conn = -1;
      }
    }
  }
  if (conn >= 0) close(conn);
  return NULL;
}

static void tcp_slave_start(tcp_slave *t) {
  memset(t, 0, sizeof *t);
  t->port = gwd_port();
  t->ctx = modbus_new_tcp("127.0.0.1", t->port);
  assert_non_null(t->ctx);
  t->listen_fd = modbus_tcp_listen(t->ctx, 1);
  assert_true(t->listen_fd >= 0);
  t->map = modbus_mapping_new(0, 0, 256, 0);
  for (int i = 0; i < 256; ++i) t->map->tab_registers[i] = (uint16_t)i;
  assert_int_equal(pthread_create(&t->th, NULL, tcp_slave_main, t), 0);
}

static void tcp_slave_stop(tcp_slave *t) {
  __atomic_store_n(&t->stop, 1, __ATOMIC_SEQ_CST);
  pthread_join(t->th, NULL);
  modbus_set_socket(t->ctx, -1);
  close(t->listen_fd);
  modbus_free(t->ctx);
  modbus_mapping_free(t->map);
}

/* Several masters at once reach a device that takes one connection. */
static void tcp_device_behind_one_connection(void **state) {
  gwd_fixture *f = *state;
  tcp_slave t;
  tcp_slave_start(&t);
  char backend[64];
  snprintf(backend, sizeof backend, "tcp://127.0.0.1:%d", t.port);
  const int port = gwd_port();
  start_route(f, port, backend, "modbus", "", NULL);
  run_masters(port, 6, 20);
  assert_int_equal(__atomic_load_n(&t.accepted, __ATOMIC_SEQ_CST), 1);
  stop_and_find(f, " 240 requests");
  tcp_slave_stop(&t);
}

/* ---- modbus-rtu: RTU frames over TCP ---- */

static void rtu_frames_over_tcp(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  char backend[160];
  snprintf(backend, sizeof backend, "serial:%s", s.path);
  const int port = gwd_port();
  start_route(f, port, backend, "modbus-rtu", "", NULL);
  int c = raw_client(port);
  uint8_t req[8] = {SLAVE_ADDRESS, 0x03, 0x00, 0x09, 0x00, 0x02};
  write_all(c, req, rtu_seal(req, 6));
  uint8_t rsp[9];
  assert_int_equal(gwt_read_fd_exact(NULL, c, rsp, sizeof rsp, GWD_TIMEOUT_MS), sizeof rsp);
  const uint8_t want[7] = {SLAVE_ADDRESS, 0x03, 0x04, 0x00, 0x09, 0x00, 0x0a};
  assert_memory_equal(rsp, want, 7);
  assert_int_equal(crc16(rsp, 7), rsp[7] | (rsp[8] << 8));
  /* The slave's exception comes back as an RTU exception frame. */
  uint8_t bad[8] = {SLAVE_ADDRESS, 0x03, 0x01, 0x00, 0x00, 0x01};
  write_all(c, bad, rtu_seal(bad, 6));
  uint8_t exc[5];
  assert_int_equal(gwt_read_fd_exact(NULL, c, exc, sizeof exc, GWD_TIMEOUT_MS), sizeof exc);
  assert_int_equal(exc[1], 0x83);
  assert_int_equal(exc[2], 0x02);
  assert_int_equal(crc16(exc, 3), exc[3] | (exc[4] << 8));
  close(c);
  stop_and_find(f, NULL);
  slave_stop(&s);
}

/* ---- hostile clients ---- */

/* `bytes` from a new client (then its write side shut, if `shut`) close
 * that client, while the well-behaved master keeps being served. */
static void hostile_closes_only_sender(int port, modbus_t *good, const uint8_t *bytes, size_t len, int shut) {
  int c = raw_client(port);
  write_all(c, bytes, len);
  if (shut) shutdown(c, SHUT_WR);
  assert_serves(good);
  assert_true(gwt_wait_eof(NULL, c, GWD_TIMEOUT_MS, NULL) >= 0);
  close(c);
  assert_serves(good);
}

static void malformed_mbap(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  const int port = start_rtu_route(f, &s, "");
  modbus_t *good = master_open(port, SLAVE_ADDRESS);
  assert_serves(good);
  const uint8_t protocol_1[] = {0, 1, 0, 1, 0, 6, SLAVE_ADDRESS, 3, 0, 0, 0, 1};
  hostile_closes_only_sender(port, good, protocol_1, sizeof protocol_1, 0);
  const uint8_t length_0[] = {0, 1, 0, 0, 0, 0, SLAVE_ADDRESS, 3, 0, 0, 0, 1};
  hostile_closes_only_sender(port, good, length_0, sizeof length_0, 0);
  const uint8_t length_300[] = {0, 1, 0, 0, 0x01, 0x2c, SLAVE_ADDRESS, 3, 0, 0, 0, 1};
  hostile_closes_only_sender(port, good, length_300, sizeof length_300, 0);
  const uint8_t truncated[] = {0, 1, 0, 0, 0, 6, SLAVE_ADDRESS, 3};
  hostile_closes_only_sender(port, good, truncated, sizeof truncated, 1);

  /* One byte a second: the other master is served between the bytes, and
   * the slow request, once whole, is answered like any other. (The gateway
   * keeps a partial request without a deadline of its own; idle_timeout and
   * max_clients bound what such clients can hold.) */
  int slow = raw_client(port);
  const uint8_t request[] = {0, 9, 0, 0, 0, 6, SLAVE_ADDRESS, 3, 0, 6, 0, 1};
  for (size_t i = 0; i < 4; ++i) {
    write_all(slow, request + i, 1);
    assert_serves(good);
    assert_int_equal(gwt_quiet(NULL, slow, 1000), 1);
  }
  write_all(slow, request + 4, sizeof request - 4);
  uint8_t pdu[16], unit = 0;
  uint16_t tid = 0;
  assert_int_equal(mbap_recv(slow, &tid, &unit, pdu, sizeof pdu, GWD_TIMEOUT_MS), 4);
  assert_int_equal(tid, 9);
  assert_int_equal(pdu[3], 6);
  close(slow);
  assert_serves(good);
  master_close(good);
  /* Three: a request cut short by the client's EOF is an end, not malformed. */
  stop_and_find(f, " 3 malformed");
  slave_stop(&s);
}

/* Hostile load, in test_hostile's terms: 50 clients pipelining 10 requests
 * each into a queue of 16. Every request gets an answer (the device's, or
 * 0x06 at once), none waits without end, and afterwards the daemon's fds
 * are back where they were, its memory stayed bounded and a master is
 * served: the queue is the bound, not the clients' patience. */
static void pipelined_flood_is_bounded(void **state) {
  enum { clients = 50, each = 10 };
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  const int port = start_rtu_route(f, &s, "max_queue = 16\nmax_clients_per_ip = 0\n");
  modbus_t *good = master_open(port, SLAVE_ADDRESS);
  assert_serves(good);
  const int fds_before = gwd_proc_fd_count(f->proc.pid);
  const long rss_before = gwd_proc_rss_kb(f->proc.pid);
  int fd[clients];
  for (int c = 0; c < clients; ++c) {
    fd[c] = raw_client(port);
    uint8_t burst[each * 12];
    for (int i = 0; i < each; ++i) {
      const uint8_t request[12] = {(uint8_t)c, (uint8_t)i, 0, 0, 0, 6, SLAVE_ADDRESS, 3, 0, (uint8_t)i, 0, 1};
      memcpy(burst + 12 * i, request, 12);
    }
    write_all(fd[c], burst, sizeof burst);
  }
  int replies = 0, busy = 0;
  for (int c = 0; c < clients; ++c) {
    unsigned seen = 0;
    for (int i = 0; i < each; ++i) {
      uint8_t pdu[16], unit = 0;
      uint16_t tid = 0;
      const long len = mbap_recv(fd[c], &tid, &unit, pdu, sizeof pdu, gwd_scaled_ms(10000));
      if (len != 4 && len != 2)
        fail_msg("client %d answer %d: length %ld (after %d replies, %d busy)", c, i, len, replies, busy);
      assert_int_equal(tid >> 8, c);
      assert_true((tid & 0xff) < each && !(seen & (1u << (tid & 0xff))));
      seen |= 1u << (tid & 0xff);
      if (len == 4) {
        assert_int_equal(pdu[3], tid & 0xff); /* register i holds i */
        ++replies;
      } else {
        assert_int_equal(pdu[0], 0x83);
        assert_int_equal(pdu[1], 0x06);
        ++busy;
      }
    }
    close(fd[c]);
  }
  printf("modbus flood: %d answered by the device, %d refused busy\n", replies, busy);
  assert_int_equal(replies + busy, clients * each);
  assert_true(replies >= 16 && busy > 0);
  assert_int_equal(gwd_wait_fd_count(f->proc.pid, fds_before, GWD_TIMEOUT_MS), fds_before);
  assert_true(gwd_proc_rss_kb(f->proc.pid) <= rss_before + (gwd_wrapped() ? 65536 : 8192));
  assert_serves(good);
  master_close(good);
  stop_and_find(f, NULL);
  slave_stop(&s);
}

/* Rewrites the route with `extra`, sends SIGHUP and waits for the n-th reload. */
static void reload_route(gwd_fixture *f, int port, const rtu_slave *s, const char *extra, int n) {
  char conf[2048], backend[160], path[512];
  snprintf(backend, sizeof backend, "serial:%s", s->path);
  route_conf(f, conf, sizeof conf, port, backend, "modbus", extra);
  gwd_dir_write(&f->dir, "gateway.conf", conf, path, sizeof path);
  gwd_signal(&f->proc, SIGHUP);
  assert_true(gwd_log_wait(&f->proc, "<6>reloaded: 1 routes", n, GWD_TIMEOUT_MS));
}

/* Until a read is served (0x0B while the new gateway waits for the device
 * the old one held); 1 if one is before the deadline. */
static int served_eventually(modbus_t *ctx) {
  const int64_t deadline = gwt_now_ms() + GWD_TIMEOUT_MS;
  uint16_t regs[2];
  while (gwt_now_ms() < deadline) {
    if (modbus_read_registers(ctx, 4, 2, regs) == 2) return regs[0] == 4 && regs[1] == 5;
    gwd_sleep_ms(50);
  }
  return 0;
}

/* A reload that leaves the route's Modbus config and device alone keeps its
 * gateway (no counters logged, the same device); one that changes it gets a
 * new gateway, which takes the device once the old one has let it go, and
 * the old one's counters are logged. */
static void reload_keeps_or_replaces_gateway(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  const int port = start_rtu_route(f, &s, "retries = 1\n");
  modbus_t *m = master_open(port, SLAVE_ADDRESS);
  assert_serves(m);
  master_close(m);
  reload_route(f, port, &s, "retries = 1\nidle_timeout = \"30s\"\n", 1);
  m = master_open(port, SLAVE_ADDRESS);
  assert_serves(m);
  master_close(m);
  assert_int_equal(gwd_log_count(&f->proc, "modbus closed"), 0);
  reload_route(f, port, &s, "retries = 2\n", 2);
  assert_true(gwd_log_wait(&f->proc, "route \"mb\": modbus closed: 2 requests, 2 replies", 1, GWD_TIMEOUT_MS));
  m = master_open(port, SLAVE_ADDRESS);
  assert_true(served_eventually(m));
  master_close(m);
  stop_and_find(f, NULL);
  slave_stop(&s);
}

/* The STATUS line carries the Modbus counters of the running routes. In a
 * GW_WITH_SYSTEMD=OFF build (GWT_WITH_SYSTEMD 0) the daemon sends no STATUS
 * at all: the counters reach the log when the gateway is freed, and nothing
 * else. */
static void status_has_modbus_counters(void **state) {
  gwd_fixture *f = *state;
  rtu_slave s;
  slave_start(&s, SLAVE_NORMAL, 0);
  char backend[160];
  snprintf(backend, sizeof backend, "serial:%s", s.path);
  gwd_spawn_opts opts = {.env = {f->notify.env}};
  start_route(f, gwd_port(), backend, "modbus", "", &opts);
#if GWT_WITH_SYSTEMD
  assert_true(gwd_notify_wait(&f->notify, "STATUS=", 1, GWD_TIMEOUT_MS));
  if (!strstr(f->notify.log, "; modbus \"mb\": 0 req, 0 replies, 0 timeouts, 0 crc errors, 0 exceptions"))
    fail_msg("no Modbus counters in STATUS:\n%s", f->notify.log);
  stop_and_find(f, NULL);
#else
  stop_and_find(f, "route \"mb\": modbus closed: 0 requests, 0 replies");
  gwd_notify_poll(&f->notify);
  assert_int_equal(f->notify.datagrams, 0);
#endif
  slave_stop(&s);
}

int main(int argc, char **argv) {
  gwd_init(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      GWD_TEST(every_function),
      GWD_TEST(timeout_is_gateway_target_failed),
      GWD_TEST(bad_crc_is_retried_then_0x0b),
      GWD_TEST(broadcast_gets_no_answer),
      GWD_TEST(eight_masters_at_once),
      GWD_TEST(full_queue_is_server_busy),
      GWD_TEST(unit_map_routes_units),
      GWD_TEST(cache_hit_and_invalidation),
      GWD_TEST(tcp_device_behind_one_connection),
      GWD_TEST(rtu_frames_over_tcp),
      GWD_TEST(malformed_mbap),
      GWD_TEST(pipelined_flood_is_bounded),
      GWD_TEST(reload_keeps_or_replaces_gateway),
      cmocka_unit_test_setup_teardown(status_has_modbus_counters, gwd_setup_notify, gwd_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
