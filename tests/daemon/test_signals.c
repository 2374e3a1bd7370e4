/* SPDX-License-Identifier: MIT */
/* SIGHUP reload with clients connected, and SIGTERM with data in flight. */
#include "daemon_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

static void route(char *buf, size_t cap, const char *name, int port, const char *framing)
{
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len,
             "[[route]]\n"
             "name = \"%s\"\n"
             "listen = \"127.0.0.1:%d\"\n"
             "backend = \"echo\"\n"
             "framing = \"%s\"\n\n",
             name, port, framing);
}

static void reload(gwd_fixture *f, const char *text, const char *expect_log, int nth)
{
    gwd_dir_write(&f->dir, "gateway.conf", text, NULL, 0);
    gwd_signal(&f->proc, SIGHUP);
    if (!gwd_log_wait(&f->proc, expect_log, nth, GWD_TIMEOUT_MS)) {
        char *err = gwd_read_err(&f->proc);
        print_error("no \"%s\" (#%d); stderr:\n%s\n", expect_log, nth, err);
        free(err);
        fail();
    }
}

static void test_reload(void **state)
{
    gwd_fixture *f = *state;
    int pa = gwd_port(), pb = gwd_port(), pc = gwd_port();
    char conf[2048] = "";
    route(conf, sizeof conf, "a", pa, "raw");
    route(conf, sizeof conf, "b", pb, "line");
    gwd_start_conf(&f->proc, &f->dir, conf, NULL);
    int ca = gwd_connect_retry(pa, GWD_TIMEOUT_MS), cb = gwd_connect_retry(pb, GWD_TIMEOUT_MS);
    assert_true(ca >= 0 && cb >= 0);
    assert_true(gwd_roundtrip(ca, "before"));
    assert_true(gwd_roundtrip(cb, "before\n"));

    /* a kept (now line framing), b removed, c added. */
    conf[0] = '\0';
    route(conf, sizeof conf, "a", pa, "line");
    route(conf, sizeof conf, "c", pc, "raw");
    reload(f, conf, "<6>reloaded: 2 routes\n", 1);
    assert_int_equal(gwd_log_count(&f->proc, "<6>route \"b\" removed: no longer accepting; 1 clients stay\n"), 1);
    assert_true(gwd_alive(&f->proc));

    /* Established clients keep working, with the settings they came with. */
    assert_true(gwd_roundtrip(ca, "raw still"));
    assert_true(gwd_roundtrip(cb, "b still\n"));
    /* New clients of a get the new framing: nothing back before '\n'. */
    int ca2 = gwd_connect_retry(pa, GWD_TIMEOUT_MS);
    assert_true(ca2 >= 0);
    assert_int_equal(gwt_write_all(NULL, ca2, "new", 3), 0);
    assert_true(gwt_quiet(NULL, ca2, 100));
    char buf[64];
    assert_int_equal(gwt_write_all(NULL, ca2, "\n", 1), 0);
    assert_int_equal(gwt_read_line(NULL, ca2, buf, sizeof buf, GWD_TIMEOUT_MS), 3);
    assert_string_equal(buf, "new");
    /* The new route accepts, the removed one does not. */
    int cc = gwd_connect_retry(pc, GWD_TIMEOUT_MS);
    assert_true(cc >= 0);
    assert_true(gwd_roundtrip(cc, "to c"));
    assert_int_equal(gwt_connect("127.0.0.1", pb), -1);

    /* A bad config is rejected; everything keeps running as it was. */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s[[route]]\nname = \"d\"\nlisten = \"127.0.0.1:%d\"\nbakend = \"echo\"\n", conf,
             gwd_port());
    reload(f, bad, "<3>reload rejected (configuration errors); the running configuration stays\n", 1);
    char expect[900];
    int n = snprintf(expect, sizeof expect,
                     "<6>SIGHUP: reloading %s/gateway.conf\n"
                     "<3>%s/gateway.conf:13:1: route \"d\": missing required key 'backend' (echo, tcp://HOST:PORT, "
                     "unix:/PATH or serial:/DEVICE)\n"
                     "<3>%s/gateway.conf:16:1: unknown key 'bakend' in route \"d\" (did you mean 'backend'?)\n"
                     "<3>reload rejected (configuration errors); the running configuration stays\n",
                     f->dir.path, f->dir.path, f->dir.path);
    assert_true(n > 0 && (size_t)n < sizeof expect);
    assert_int_equal(gwd_log_count(&f->proc, expect), 1);
    assert_true(gwd_alive(&f->proc));
    assert_true(gwd_roundtrip(ca, "after bad"));
    assert_true(gwd_roundtrip(cc, "after bad"));
    int cc2 = gwd_connect_retry(pc, GWD_TIMEOUT_MS);
    assert_true(cc2 >= 0);
    assert_true(gwd_roundtrip(cc2, "new after bad"));
    assert_int_equal(gwd_log_count(&f->proc, "reloaded:"), 1);

    /* A new route that cannot listen (the test holds its port): rejected. */
    int pe = gwd_port();
    int held = gwd_listen_tcp(pe);
    assert_true(held >= 0);
    char busy[4096];
    snprintf(busy, sizeof busy, "%s[[route]]\nname = \"e\"\nlisten = \"127.0.0.1:%d\"\nbackend = \"echo\"\n", conf, pe);
    reload(f, busy, "<3>reload rejected (a new route cannot listen); the running configuration stays\n", 1);
    close(held);
    assert_true(gwd_roundtrip(ca, "after busy"));
    int cc3 = gwd_connect_retry(pc, GWD_TIMEOUT_MS);
    assert_true(cc3 >= 0);
    assert_true(gwd_roundtrip(cc3, "new after busy"));

    /* The same config again: a no-op reload keeps the sockets. */
    reload(f, conf, "<6>reloaded: 2 routes\n", 2);
    assert_true(gwd_roundtrip(ca, "after same"));
    int cc4 = gwd_connect_retry(pc, GWD_TIMEOUT_MS);
    assert_true(cc4 >= 0);
    assert_true(gwd_roundtrip(cc4, "x"));

    int fds[] = {ca, cb, ca2, cc, cc2, cc3, cc4};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; ++i)
        close(fds[i]);
    assert_int_equal(gwd_stop(&f->proc), 0);
}

/* SIGTERM while a backend is still sending 4 MiB slowly: the client gets it
 * all, then EOF; the daemon exits 0. */
/* A forwarding route (stop_timeout 20 s) to a backend that streams 4 MiB in
 * 64 KiB chunks, one every delay_us, then closes. Returns a client connected
 * to the route, and the route's port in *out_port (if not NULL). */
static int start_slow_forward(gwd_fixture *f, int seed, unsigned delay_us, int *out_port)
{
    f->backend.mode = GWD_BACKEND_STREAM;
    f->backend.send_len = 4u << 20;
    f->backend.send_seed = seed;
    f->backend.send_chunk = 65536;
    f->backend.send_delay_us = delay_us;
    f->backend.shut_after_send = 1;
    f->backend.recv_seed = -1;
    assert_int_equal(gwd_backend_tcp(&f->backend), 0);
    f->backend_running = 1;
    int port = gwd_port();
    char conf[512];
    snprintf(conf, sizeof conf,
             "[service]\n"
             "stop_timeout = \"20s\"\n"
             "\n"
             "[[route]]\n"
             "name = \"fwd\"\n"
             "listen = \"127.0.0.1:%d\"\n"
             "backend = \"tcp://127.0.0.1:%d\"\n",
             port, f->backend.port);
    gwd_start_conf(&f->proc, &f->dir, conf, NULL);
    int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(c >= 0);
    if (out_port)
        *out_port = port;
    return c;
}

static void test_sigterm_forward_in_flight(void **state)
{
    gwd_fixture *f = *state;
    int port;
    int c = start_slow_forward(f, 41, 15000 /* ~1 s in all */, &port);
    assert_int_equal(shutdown(c, SHUT_WR), 0); /* the request is complete */
    unsigned char first[1024];
    assert_int_equal(gwt_read_exact(NULL, c, first, sizeof first, GWD_TIMEOUT_MS), sizeof first);
    gwd_signal(&f->proc, SIGTERM);
    assert_true(gwd_log_wait(&f->proc, "<6>stopping: 1 clients to drain\n", 1, GWD_TIMEOUT_MS));
    /* No new clients while draining. */
    assert_int_equal(gwt_connect("127.0.0.1", port), -1);
    gwd_rx rx;
    gwd_recv_stream(c, -1, 15000, &rx);
    uint64_t total = sizeof first + rx.bytes;
    if (total != (4u << 20)) {
        char *err = gwd_read_err(&f->proc);
        print_error("client got %llu of %u bytes (eof %d); stderr:\n%s\n", (unsigned long long)total, 4u << 20,
                    rx.eof, err);
        free(err);
    }
    assert_int_equal(total, 4u << 20);
    assert_int_equal(rx.eof, 1);
    for (size_t i = 0; i < sizeof first; ++i)
        assert_int_equal(first[i], gwd_pattern(i, 41));
    assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 0);
    assert_int_equal(gwd_log_count(&f->proc, "<6>stopped\n"), 1);
    close(c);
}

/* SIGTERM while an echo client has output queued that it reads slowly: what
 * the daemon echoes is delivered in full before the close; exit 0. */
/* A second SIGTERM does not wait for the drain: the transfer is cut, the
 * daemon exits 0 at once and says why. */
static void test_second_sigterm_stops_now(void **state)
{
    gwd_fixture *f = *state;
    int c = start_slow_forward(f, 43, 50000 /* ~3 s in all: longer than the test waits */, NULL);
    unsigned char first[1024];
    assert_int_equal(gwt_read_exact(NULL, c, first, sizeof first, GWD_TIMEOUT_MS), sizeof first);
    gwd_signal(&f->proc, SIGTERM);
    assert_true(gwd_log_wait(&f->proc, "<6>stopping: 1 clients to drain\n", 1, GWD_TIMEOUT_MS));
    gwd_signal(&f->proc, SIGTERM);
    assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 0);
    assert_int_equal(gwd_log_count(&f->proc, "<4>Terminated again: stopping now, without waiting for the drain\n"), 1);
    assert_int_equal(gwd_log_count(&f->proc, "<6>route fwd: 127.0.0.1:"), 2); /* connected, closed */
    assert_int_equal(gwd_log_count(&f->proc, "closed (server stopping)\n"), 1);
    close(c);
}

static void test_sigterm_echo_slow_reader(void **state)
{
    gwd_fixture *f = *state;
    int port = gwd_port();
    char conf[256] = "[service]\nstop_timeout = \"20s\"\n\n";
    route(conf, sizeof conf, "echo", port, "raw");
    gwd_start_conf(&f->proc, &f->dir, conf, NULL);
    int c = gwd_connect_retry(port, GWD_TIMEOUT_MS);
    assert_true(c >= 0);
    const size_t len = 48 * 1024; /* below the 64 KiB high water: all of it is read */
    assert_int_equal(gwd_send_stream(c, len, 51, 0, 0, 0, GWD_TIMEOUT_MS), 0);
    /* Everything sent has left our socket, and the echo has started. */
    int64_t end = gwt_now_ms() + GWD_TIMEOUT_MS;
    int outq = -1;
    while ((ioctl(c, SIOCOUTQ, &outq) != 0 || outq != 0) && gwt_now_ms() < end)
        gwd_sleep_ms(5);
    if (outq != 0)
        print_error("SIOCOUTQ %d\n", outq);
    assert_int_equal(outq, 0);
    gwd_sleep_ms(200);
    gwd_signal(&f->proc, SIGTERM);
    assert_true(gwd_log_wait(&f->proc, "<6>stopping: 1 clients to drain\n", 1, GWD_TIMEOUT_MS));
    gwd_rx rx;
    gwd_recv_stream_slow(c, 51, 15000, 4096, 2000, &rx);
    assert_int_equal(rx.mismatches, 0);
    assert_int_equal(rx.bytes, len);
    assert_int_equal(rx.eof, 1);
    /* The daemon lingers for our FIN (so its close cannot reset what it sent). */
    close(c);
    assert_int_equal(gwd_wait_exit(&f->proc, GWD_TIMEOUT_MS), 0);
    assert_int_equal(gwd_log_count(&f->proc, "could not be delivered"), 0);
    assert_int_equal(gwd_log_count(&f->proc, "<6>stopped\n"), 1);
}

int main(int argc, char **argv)
{
    gwd_init(argc, argv);
    const struct CMUnitTest tests[] = {
        GWD_TEST(test_reload),
        GWD_TEST(test_sigterm_forward_in_flight),
        GWD_TEST(test_second_sigterm_stops_now),
        GWD_TEST(test_sigterm_echo_slow_reader),
    };
    return cmocka_run_group_tests_name("daemon_signals", tests, NULL, NULL);
}
