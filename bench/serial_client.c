/* SPDX-License-Identifier: MIT */
/* The client side of bench/serial.sh, and its baseline relay.
 *
 *   serial_client run TARGET COUNT SIZE BYTES SECONDS
 *                      on one connection (a serial port takes one client at a
 *                      time): 50 warm-up round trips, then COUNT round trips
 *                      of SIZE bytes, each sent once the previous echo is
 *                      whole and checked; then a bulk transfer of BYTES (or
 *                      what SECONDS allow) written while the echo is read and
 *                      checked byte by byte. Prints one line:
 *                      "p50_us p99_us max_us round_trips_per_s peer_cpu_us_per_rt bytes seconds bytes_per_s"
 *                      where peer_cpu_us_per_rt is the CPU time the process
 *                      $SERIAL_BENCH_PEER_PID (the gateway) spent over the
 *                      timed round trips (its /proc schedstat, all threads),
 *                      per round trip; nan without that variable.
 *   serial_client relay PORT TTY           the smallest useful gateway, as a
 *                      baseline: one client at a time on 127.0.0.1:PORT, TTY
 *                      opened raw per client, bytes passed on as soon as read
 *                      (poll, non-blocking, TCP_NODELAY)
 *
 * TARGET is tcp:HOST:PORT or tty:/dev/pts/N (the pty's own round trip, no
 * gateway). Times from CLOCK_MONOTONIC. Exits non-zero on a wrong or missing
 * echo. Not a test; built by bench/serial.sh with `cc -O2`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 5000

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "serial_client: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static int open_tty(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    struct termios t;
    if (tcgetattr(fd, &t))
        die("tcgetattr");
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    cfsetspeed(&t, B115200);
    if (tcsetattr(fd, TCSANOW, &t))
        die("tcsetattr");
    tcflush(fd, TCIOFLUSH);
    return fd;
}

/* Connects to HOST:PORT, retrying while nothing listens yet (up to 5 s). */
static int open_tcp(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        die("target: tcp:HOST:PORT");
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        die("target host: an IPv4 address");
    for (int64_t deadline = now_ns() + 5000000000LL;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        if (now_ns() > deadline)
            die("connect");
        usleep(10000);
    }
}

static int open_target(const char *target)
{
    if (strncmp(target, "tcp:", 4) == 0)
        return open_tcp(target + 4);
    if (strncmp(target, "tty:", 4) == 0)
        return open_tty(target + 4);
    errno = 0;
    die("target: tcp:HOST:PORT or tty:PATH");
    return -1;
}

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

static void read_exact(int fd, unsigned char *p, size_t n)
{
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            die("no echo");
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        ssize_t got = read(fd, p, n);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = ECONNRESET;
            die("read");
        }
        p += got;
        n -= (size_t)got;
    }
}

/* CPU time of every thread of process `pid` in ns (their schedstat), or -1. */
static int64_t peer_cpu_ns(const char *pid)
{
    if (!pid || !*pid)
        return -1;
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/task", pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int64_t sum = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%s/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        long long ns = 0;
        if (f && fscanf(f, "%lld", &ns) == 1)
            sum += ns;
        if (f)
            fclose(f);
    }
    closedir(dir);
    return sum;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void rtt(int fd, long count, long size)
{
    if (count < 1 || size < 1 || size > 4096) {
        errno = EINVAL;
        die("COUNT SIZE: COUNT > 0, SIZE 1 to 4096");
    }
    unsigned char out[4096], in[4096];
    int64_t *samples = calloc((size_t)count, sizeof *samples);
    if (!samples)
        die("calloc");
    const long warmup = 50;
    int64_t start = 0, cpu0 = -1;
    const char *peer = getenv("SERIAL_BENCH_PEER_PID");
    for (long i = -warmup; i < count; ++i) {
        for (long k = 0; k < size; ++k)
            out[k] = (unsigned char)('A' + (i + k) % 26);
        if (i == 0) {
            cpu0 = peer_cpu_ns(peer);
            start = now_ns();
        }
        int64_t t0 = now_ns();
        write_all(fd, out, (size_t)size);
        read_exact(fd, in, (size_t)size);
        int64_t t1 = now_ns();
        if (memcmp(in, out, (size_t)size)) {
            errno = EILSEQ;
            die("echo differs from the message");
        }
        if (i >= 0)
            samples[i] = t1 - t0;
    }
    double total_s = (double)(now_ns() - start) / 1e9;
    int64_t cpu1 = peer_cpu_ns(peer);
    qsort(samples, (size_t)count, sizeof *samples, cmp_i64);
    long p99 = (long)((double)count * 0.99);
    if (p99 >= count)
        p99 = count - 1;
    printf("%.1f %.1f %.1f %.1f ", (double)samples[count / 2] / 1e3, (double)samples[p99] / 1e3,
           (double)samples[count - 1] / 1e3, (double)count / total_s);
    if (cpu0 >= 0 && cpu1 >= cpu0)
        printf("%.2f ", (double)(cpu1 - cpu0) / 1e3 / (double)count);
    else
        printf("nan ");
    free(samples);
}

/* Byte i of the bulk stream: not periodic at any small length. */
static unsigned char pattern(uint64_t i) { return (unsigned char)((i * 2654435761u) >> 13 ^ i >> 8); }

static int bulk(int fd, long long bytes, double seconds)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    unsigned char buf[16384];
    uint64_t sent = 0, received = 0, limit = (uint64_t)bytes;
    const int64_t start = now_ns(), stop_writing = start + (int64_t)(seconds * 1e9);
    int64_t last = start;
    while (received < sent || sent < limit) {
        if (sent < limit && now_ns() > stop_writing)
            limit = sent; /* too slow for BYTES: what was sent is the transfer */
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (sent < limit ? POLLOUT : 0)};
        int r = poll(&pfd, 1, TIMEOUT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "serial_client: bulk: stalled at %llu of %llu bytes echoed\n",
                    (unsigned long long)received, (unsigned long long)sent);
            return 1;
        }
        if (pfd.revents & POLLOUT) {
            size_t n = sizeof buf;
            if (n > limit - sent)
                n = (size_t)(limit - sent);
            for (size_t k = 0; k < n; ++k)
                buf[k] = pattern(sent + k);
            ssize_t w = write(fd, buf, n);
            if (w > 0)
                sent += (uint64_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                die("bulk write");
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) {
                for (ssize_t k = 0; k < n; ++k)
                    if (buf[k] != pattern(received + (uint64_t)k)) {
                        fprintf(stderr, "serial_client: bulk: byte %llu differs\n",
                                (unsigned long long)(received + (uint64_t)k));
                        return 1;
                    }
                received += (uint64_t)n;
                last = now_ns();
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                die("bulk read");
            }
        }
    }
    double s = (double)(last - start) / 1e9;
    printf("%llu %.3f %.0f\n", (unsigned long long)received, s, (double)received / s);
    return 0;
}

/* ---- relay: the baseline gateway ---------------------------------------- */

struct pipe_buf {
    unsigned char data[65536];
    size_t len;
};

/* Reads what `from` has into `b` and writes what `b` holds to `to`; false at EOF or error. */
static int pump_in(int from, struct pipe_buf *b)
{
    ssize_t n = read(from, b->data + b->len, sizeof b->data - b->len);
    if (n > 0) {
        b->len += (size_t)n;
        return 1;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

static int pump_out(int to, struct pipe_buf *b)
{
    ssize_t n = write(to, b->data, b->len);
    if (n > 0) {
        memmove(b->data, b->data + n, b->len - (size_t)n);
        b->len -= (size_t)n;
        return 1;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

static _Noreturn void relay(int port, const char *tty)
{
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 8))
        die("relay: listen");
    static struct pipe_buf up, down; /* client -> tty, tty -> client */
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            die("relay: accept");
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int t = open_tty(tty);
        fcntl(t, F_SETFL, fcntl(t, F_GETFL) | O_NONBLOCK);
        up.len = down.len = 0;
        for (int open_ = 1; open_;) {
            struct pollfd p[2] = {
                {.fd = c, .events = (up.len < sizeof up.data ? POLLIN : 0) | (down.len ? POLLOUT : 0)},
                {.fd = t, .events = (down.len < sizeof down.data ? POLLIN : 0) | (up.len ? POLLOUT : 0)},
            };
            if (poll(p, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                die("relay: poll");
            }
            if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
                open_ = pump_in(c, &up);
            if (open_ && (p[1].revents & (POLLIN | POLLERR)))
                open_ = pump_in(t, &down);
            if (open_ && up.len)
                open_ = pump_out(t, &up);
            if (open_ && down.len)
                open_ = pump_out(c, &down);
        }
        close(t);
        close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "run") == 0) {
        int fd = open_target(argv[2]);
        rtt(fd, atol(argv[3]), atol(argv[4]));
        int rc = bulk(fd, atoll(argv[5]), atof(argv[6]));
        close(fd);
        return rc;
    }
    if (argc == 4 && strcmp(argv[1], "relay") == 0)
        relay(atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: serial_client run TARGET COUNT SIZE BYTES SECONDS | relay PORT TTY\n"
                    "       TARGET: tcp:HOST:PORT or tty:/dev/pts/N\n");
    return 2;
}
