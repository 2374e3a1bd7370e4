/* SPDX-License-Identifier: MIT */
/*
 * gateway: an embeddable TCP server for embedded Linux boards.
 *
 * This is the whole public C API of libgateway.so.0. It is valid C99 and C++.
 *
 * Conventions (shared by every function below):
 *  - Every function that can fail returns int: 0 on success, or a negative
 *    GW_E* code on failure. gw_strerror() turns any such code into text.
 *    Codes between -1 and -999 are negated errno values (GW_EINVAL is
 *    -EINVAL); codes from -3000 down are gateway's own.
 *  - Out-parameters come first; callbacks take a function pointer and a
 *    `void *user_data` that is passed back to them unchanged, as the last
 *    argument.
 *  - Option structs carry a version field (libgit2's convention). Initialise
 *    them with their _INIT macro, which sets the version and leaves every
 *    other field zero, then change what you need. Zero means "the default"
 *    for every field (each field says what its default is). A version adds
 *    fields at the end only; the library accepts every version from 1 to the
 *    current one and reads only the fields that version has, so a program
 *    built against an older header keeps working, and fields it does not
 *    know get their defaults. Version 0, or one newer than the library,
 *    gives GW_EINVAL.
 *  - Structs the library fills (gw_stats) grow at their end; symbol
 *    versioning binds each program to the functions of its header's layout
 *    (see gw_stats).
 *  - No C++ exception ever leaves this library.
 *
 * Threading: a server and everything that belongs to it (listeners,
 * connections, timers) lives on one thread, the "loop thread": the thread that
 * calls gw_server_run() or gw_server_dispatch(), and before the first such call
 * the thread that created the server. Only the functions marked
 * "Thread-safe" may be called from other threads; the others return
 * GW_EWRONGTHREAD (or do nothing, for those returning void) when called from
 * another thread.
 *
 * Callbacks run on the loop thread. Inside a callback you may call every
 * function of this API, including gw_conn_close() on this or another
 * connection, gw_server_stop() and gw_server_destroy() (see there).
 */
#ifndef GATEWAY_GATEWAY_H
#define GATEWAY_GATEWAY_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* GW_ERRNO_MAP and GW_CLOSE_REASON_MAP: the lists below are made from them. */
#include <gateway/tables.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(GW_BUILDING_LIBRARY)
#define GW_EXTERN __attribute__((visibility("default")))
#else
#define GW_EXTERN
#endif

/* ---- Version ------------------------------------------------------------ */

#define GW_VERSION_MAJOR 0
#define GW_VERSION_MINOR 2
#define GW_VERSION_PATCH 0
/** The version as one comparable number: 0xMMmmpp. */
#define GW_VERSION_HEX ((GW_VERSION_MAJOR << 16) | (GW_VERSION_MINOR << 8) | GW_VERSION_PATCH)

/** The version of the library actually loaded, as "MAJOR.MINOR.PATCH".
 *  Thread-safe. Never NULL. */
GW_EXTERN const char *gw_version(void);

/* ---- Errors ------------------------------------------------------------- */

#define GW_OK 0

/** The codes: GW_##NAME for every row of GW_ERRNO_MAP in <gateway/tables.h>,
 *  which lists them and says what each means (GW_EINVAL is -EINVAL, ...,
 *  GW_ENOTLISTENING is -3001, ...). Since 0.2.0 they are constants, not
 *  macros: their values are those of 0.1.0, but `#ifdef GW_Exxx` and
 *  `#if GW_Exxx == ...` no longer see them (test GW_VERSION_HEX instead).
 *  Functions keep returning int. */
#ifdef __cplusplus
/* In C++, constants of type int, as the macros were: enumerators would have
 * a type of their own, and `[] { if (x) return GW_EINVAL; return 0; }` or
 * std::min(rc, GW_EINVAL) would stop compiling. (In C, enumerators are int.) */
#define GW_ERRNO_XX(name, value, text) static const int GW_##name = (value);
GW_ERRNO_MAP(GW_ERRNO_XX)
#undef GW_ERRNO_XX
#else
enum {
#define GW_ERRNO_XX(name, value, text) GW_##name = (value),
  GW_ERRNO_MAP(GW_ERRNO_XX)
#undef GW_ERRNO_XX
};
#endif

/** A static, human-readable text for any code returned by this API (and for
 *  any negated errno). Thread-safe. Never NULL. */
GW_EXTERN const char *gw_strerror(int code);

/** The name of a code's constant: "GW_EINVAL", "GW_ESTATE", "GW_OK" for 0.
 *  For a negated errno that has no GW_ constant, the errno's own name
 *  ("EPIPE", from strerrorname_np); for any other value "GW_EUNKNOWN" (which
 *  is not a constant). Thread-safe. Never NULL: a static string. Since 0.2.0. */
GW_EXTERN const char *gw_err_name(int code);

/* ---- Logging ------------------------------------------------------------ */

/** Levels follow syslog (and sd-daemon's "<N>" prefixes). */
typedef enum gw_log_level { GW_LOG_ERROR = 3, GW_LOG_WARNING = 4, GW_LOG_INFO = 6, GW_LOG_DEBUG = 7 } gw_log_level;

/** Receives one line (no trailing newline) per event. Runs on the loop thread,
 *  or on the calling thread for errors reported during create/listen. */
typedef void (*gw_log_fn)(gw_log_level level, const char *line, void *user_data);

/* ---- Handles ------------------------------------------------------------ */

typedef struct gw_server gw_server_t;     /**< one event loop and its listeners */
typedef struct gw_listener gw_listener_t; /**< one listening socket; owned by its server */
typedef struct gw_conn gw_conn_t;         /**< one accepted client; owned by its server */
typedef struct gw_timer gw_timer_t;       /**< a one-shot or periodic timer on the loop */

/* ---- Framing and close reasons ----------------------------------------- */

typedef enum gw_framing {
  GW_FRAMING_RAW = 0,   /**< bytes as they arrive; no message boundaries */
  GW_FRAMING_LINE = 1,  /**< messages end with '\n' (delivered without it) */
  GW_FRAMING_U16BE = 2, /**< 2-byte big-endian length, then that many bytes */
  GW_FRAMING_U32BE = 3  /**< 4-byte big-endian length, then that many bytes */
} gw_framing;

/** Why a connection closed; passed to on_close exactly once per connection.
 *  Made from GW_CLOSE_REASON_MAP (<gateway/tables.h>, which says what each
 *  means): GW_CLOSE_PEER = 1, GW_CLOSE_RESET, GW_CLOSE_IDLE, GW_CLOSE_LIMIT,
 *  GW_CLOSE_OVERSIZE, GW_CLOSE_STOPPING, GW_CLOSE_LOCAL = 7. */
typedef enum gw_close_reason {
#define GW_CLOSE_XX(NAME, name, value, text) GW_CLOSE_##NAME = (value),
  GW_CLOSE_REASON_MAP(GW_CLOSE_XX)
#undef GW_CLOSE_XX
} gw_close_reason;

/** A static name for a close reason ("peer", "reset", "idle", ...). Thread-safe. */
GW_EXTERN const char *gw_close_reason_name(gw_close_reason reason);

/* ---- Server ------------------------------------------------------------- */

/* Every field's zero means its default, so that GW_SERVER_OPTIONS_INIT (the
 * version, all else zero) gives the defaults and a field added later is zero,
 * its default, for callers that do not know it. Callers of 0.1.0 spelled the
 * defaults out ({ 1, 0, 5000, GW_LOG_WARNING, NULL, NULL }): that still means
 * the same. */
typedef struct gw_server_options {
  unsigned version;     /**< GW_SERVER_OPTIONS_VERSION (1 to it are accepted) */
  unsigned max_clients; /**< across all listeners; 0 = unlimited */
  /** How long a graceful stop or close may flush output; 0 = 5000 ms.
   *  (Before 0.2.0, 0 meant no flushing: for nearly that, set 1.) */
  unsigned stop_timeout_ms;
  /** Lines above this level are not produced; 0 = GW_LOG_WARNING. 0 is no
   *  level (they start at GW_LOG_ERROR = 3); 1, 2 and values above
   *  GW_LOG_DEBUG are refused with GW_EINVAL. */
  gw_log_level log_level;
  gw_log_fn log; /**< NULL: log to stderr with "<N>" prefixes */
  void *log_user_data;
} gw_server_options;

#define GW_SERVER_OPTIONS_VERSION 1
/* The version, every other field zero: the defaults. The zeros are spelled
 * out so that -Wmissing-field-initializers (in -Wextra) stays quiet. */
#define GW_SERVER_OPTIONS_INIT \
  { GW_SERVER_OPTIONS_VERSION, 0, 0, (gw_log_level)0, NULL, NULL }

/** Creates a server with its own epoll loop. `options` may be NULL for the
 *  defaults. The calling thread becomes the loop thread. Returns 0, GW_EINVAL
 *  (bad options or version), GW_ENOMEM, or a negated errno from epoll. */
GW_EXTERN int gw_server_create(gw_server_t **out, const gw_server_options *options);

/** Destroys the server: closes every connection at once (on_close gets
 *  GW_CLOSE_STOPPING for connections still open), runs the functions whose
 *  gw_server_post() returned 0 and that have not run yet (see there), then
 *  frees every listener and every timer. Loop thread only; NULL is ignored.
 *  Called from inside a callback, the server stops at once and is freed when
 *  the outermost gw_server_run() or gw_server_dispatch() on the stack
 *  returns: calls nested inside callbacks (a callback that called
 *  gw_server_dispatch()) return first, without freeing it, gw_server_dispatch()
 *  with 1 and gw_server_run() with 0. Either way the handle must not be used
 *  after the call, except that the run/dispatch calls already on the stack
 *  return as just described. */
GW_EXTERN void gw_server_destroy(gw_server_t *server);

/** Runs the loop on the calling thread until the server has stopped. Returns
 *  0 after a stop, or a negated errno if the loop failed. */
GW_EXTERN int gw_server_run(gw_server_t *server);

/** For firmware with its own poll loop: a file descriptor that becomes
 *  readable whenever gw_server_dispatch() has work to do (I/O, a timer due, a
 *  cross-thread post or stop). Owned by the server: do not close or read it.
 *  Thread-safe. */
GW_EXTERN int gw_server_fd(const gw_server_t *server);

/** Does all work that is ready now, without blocking, then returns: 0 while
 *  the server runs, 1 once it has fully stopped (also when gw_server_destroy()
 *  was called from a callback during this call or an outer one), or a
 *  negative code. May be called from inside a callback (nested); objects
 *  closed by a nested call are freed when the outermost call returns. */
GW_EXTERN int gw_server_dispatch(gw_server_t *server);

/** Starts a graceful stop: every listener stops accepting, connections stop
 *  reading, queued output is flushed for at most stop_timeout_ms, then every
 *  connection closes with GW_CLOSE_STOPPING and gw_server_run() returns.
 *  Thread-safe and idempotent; returns 0 or GW_EINVAL (or GW_ENOMEM when a
 *  call from another thread could not queue the request: call it again).
 *  From another thread it may be called until gw_server_destroy() begins;
 *  a call that has returned by then is ordered before the destruction. */
GW_EXTERN int gw_server_stop(gw_server_t *server);

/** Makes a blocked gw_server_run() iterate, and gw_server_fd() readable, once
 *  (for firmware that changed something its callbacks look at). Thread-safe
 *  and async-signal-safe. Returns 0 or GW_EINVAL. */
GW_EXTERN int gw_server_wakeup(gw_server_t *server);

/** Runs fn(user_data) on the loop thread, soon, in the order posted.
 *  Thread-safe, also while another thread calls gw_server_stop(). There are
 *  exactly two outcomes:
 *   - 0: fn will run exactly once, on the loop thread: during a later
 *     gw_server_run()/gw_server_dispatch(), at the latest before the
 *     gw_server_run() (or the gw_server_dispatch() returning 1) that sees the
 *     server stopped returns, or else inside gw_server_destroy(), before
 *     anything is freed;
 *   - GW_ESTATE (the server has fully stopped), GW_EINVAL or GW_ENOMEM: fn
 *     will never run.
 *  Posts are refused from the moment the server is fully stopped; those
 *  accepted before still run, after the last connection has closed (a fn
 *  that runs then sees the server stopped: gw_listener_create() returns
 *  GW_ESTATE, gw_server_post() too). */
GW_EXTERN int gw_server_post(gw_server_t *server, void (*fn)(void *user_data), void *user_data);

/** Counters. The fields are read one by one without a common lock.
 *
 *  The struct grows at its end only. Its size is carried by symbol
 *  versioning rather than by a version field: a program is bound, when it is
 *  linked, to the gw_server_stats()/gw_listener_stats() of the header it was
 *  compiled with (gw_server_stats@@GW_0.2 fills these six fields), and one
 *  built against 0.1.0 keeps getting the 0.1.0 functions (gw_server_stats@GW_0),
 *  which write only the five fields its struct has. So `gw_stats st;` needs no
 *  initialisation, as in 0.1.0; a later field comes with a new version node. */
typedef struct gw_stats {
  uint64_t clients;   /**< connections open now */
  uint64_t accepted;  /**< connections accepted and served, ever */
  uint64_t refused;   /**< connections accepted and closed at once (limits, allow list, fd shortage) */
  uint64_t bytes_in;  /**< bytes read from clients */
  uint64_t bytes_out; /**< bytes written to clients */
  /** Bytes forwarded inside the kernel (splice), both directions; they are
   *  not in bytes_in/bytes_out. Only forwarding listeners splice (bulk
   *  flows of gatewayd's routes and of gw_listener_create_forward()'s
   *  GW_FRAMING_RAW listeners): 0 for the others. Since 0.2.0. */
  uint64_t bytes_spliced;
} gw_stats;

/** Fills `out` with the server's totals. Thread-safe. */
GW_EXTERN int gw_server_stats(gw_stats *out, const gw_server_t *server);

/* ---- Listeners ---------------------------------------------------------- */

/** Called once a connection is accepted, before any of its data. */
typedef void (*gw_open_fn)(gw_conn_t *conn, void *user_data);
/** One message in the listener's framing (raw: whatever arrived). `data` is
 *  valid only during the call. */
typedef void (*gw_message_fn)(gw_conn_t *conn, const void *data, size_t len, void *user_data);
/** Called exactly once per opened connection; `conn` is freed after it returns. */
typedef void (*gw_close_fn)(gw_conn_t *conn, gw_close_reason reason, void *user_data);
/** Called when output that had passed high_water has drained below low_water. */
typedef void (*gw_drain_fn)(gw_conn_t *conn, void *user_data);

typedef struct gw_listener_options {
  unsigned version; /**< GW_LISTENER_OPTIONS_VERSION */
  /** Where to listen: "127.0.0.1:7000", "[::1]:7000", "[fe80::1%eth0]:7000",
   *  "0.0.0.0:7000" (IPv4 only), "[::]:7000" (IPv6 only), or ":7000" (every
   *  address, IPv4 and IPv6: dual-stack, falling back to IPv4 when the host
   *  has no IPv6). Port 0 picks a free port (see gw_listener_port()).
   *  Ignored by gw_listener_adopt(). */
  const char *address;
  int backlog;          /**< listen() backlog, 0 = 128; capped by net.core.somaxconn (logged once); < 0: GW_EINVAL */
  gw_framing framing;   /**< 0 = GW_FRAMING_RAW */
  size_t max_frame;     /**< largest message accepted (framed modes); 0 = 65536 */
  unsigned max_clients; /**< on this listener; 0 = unlimited */
  unsigned max_clients_per_ip; /**< per peer address on this listener; 0 = unlimited */
  unsigned idle_timeout_ms;    /**< close a client that sends nothing this long; 0 = never */
  int keepalive;               /**< nonzero: enable TCP keepalive */
  unsigned keepalive_idle_s, keepalive_interval_s, keepalive_count; /**< 0 = kernel default */
  size_t high_water; /**< stop reading a client whose queued output exceeds this; 0 = 64 KiB */
  /** Resume reading (and call on_drain) below this; 0 = 16 KiB, or
   *  high_water if that is smaller. Above high_water: GW_EINVAL. */
  size_t low_water;
  size_t max_output;        /**< gw_conn_send() beyond this returns GW_EAGAIN; 0 = 1 MiB */
  const char *const *allow; /**< CIDRs ("10.0.0.0/8", "::1/128"); others are refused; NULL = all */
  size_t allow_count;
  gw_open_fn on_open; /**< each may be NULL */
  gw_message_fn on_message;
  gw_close_fn on_close;
  gw_drain_fn on_drain;
  void *user_data; /**< passed to every callback of this listener */
  /* ---- version 2 (0.2.0) ---- */
  /** A frame that has begun must be complete within this time, or the
   *  client is closed with GW_CLOSE_IDLE (framed modes; a trickle of bytes
   *  does not hold a frame open forever). 0 = no deadline. */
  unsigned frame_timeout_ms;
} gw_listener_options;

/* Version 1 is the struct up to user_data (0.1.0); the library reads only
 * the fields of the version a caller gives, so binaries built against an
 * older header keep working, and fields they do not know are zero: their
 * defaults. Version 0 and versions above this one are refused (GW_EINVAL). */
#define GW_LISTENER_OPTIONS_VERSION 2
/* The version, every other field zero: the defaults (spelled out for
 * -Wmissing-field-initializers). The 0.1.0 macro's explicit values (128,
 * 65536, 65536, 16384, 1048576) are the same defaults. */
#define GW_LISTENER_OPTIONS_INIT                                                                                      \
  {                                                                                                                   \
    GW_LISTENER_OPTIONS_VERSION, NULL, 0, GW_FRAMING_RAW, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0, NULL, NULL, NULL, \
        NULL, NULL, 0                                                                                                 \
  }

/** Creates a socket, sets SO_REUSEADDR, binds options->address and listens.
 *  The listener is owned by the server; *out stays valid until the server is
 *  destroyed. Loop thread only. Returns 0, GW_EINVAL, GW_EADDRESS,
 *  GW_EADDRINUSE, GW_EADDRNOTAVAIL, GW_EACCES, GW_ESTATE (server stopping) or
 *  another negated errno. */
GW_EXTERN int gw_listener_create(gw_listener_t **out, gw_server_t *server, const gw_listener_options *options);

/** Takes over an already-listening socket (for example one that systemd
 *  passed): checks that `fd` is a listening SOCK_STREAM socket, makes it
 *  non-blocking and close-on-exec, never calls listen() again. On success the
 *  server owns `fd` (it closes it when the server is destroyed). On failure,
 *  whatever the step that failed, `fd` is untouched: still open, the same
 *  socket, its O_NONBLOCK and FD_CLOEXEC flags as before the call, and
 *  still the caller's to close. Returns 0, GW_EBADF, GW_ENOTSOCK,
 *  GW_ENOTSTREAM, GW_ENOTLISTENING, GW_EINVAL, GW_ESTATE, GW_ENOMEM, or a
 *  negated errno (for example from epoll_ctl: -ENOSPC). */
GW_EXTERN int gw_listener_adopt(gw_listener_t **out, gw_server_t *server, int fd, const gw_listener_options *options);

/** For firmware started by a systemd .socket unit: adopts the inherited
 *  listening socket whose FileDescriptorName= is `name` (systemd's LISTEN_FDS
 *  protocol); when the process was not started with one (started by hand),
 *  binds options->address instead. *out_inherited (may be NULL) tells which
 *  happened. The inherited socket is taken from the process's pool of
 *  inherited fds: if it cannot be adopted, this function closes it (once;
 *  no later call can get it). Returns what gw_listener_adopt()/gw_listener_create() return, or
 *  GW_ENOSYS when built without systemd support and options->address is NULL,
 *  or GW_ENOTFOUND when neither an inherited socket nor an address exists. */
GW_EXTERN int gw_listener_create_systemd(gw_listener_t **out, int *out_inherited, gw_server_t *server, const char *name,
                                         const gw_listener_options *options);

/** The local port the listener is bound to (useful after port 0), or a
 *  negative code. Thread-safe: the port is fixed when the listener is made. */
GW_EXTERN int gw_listener_port(const gw_listener_t *listener);

/** Sends one message, encoded in the listener's framing, to every open
 *  connection of the listener. A connection whose queue cannot take it is
 *  closed with GW_CLOSE_LIMIT rather than silently missing a message.
 *  Returns the number of connections the message was queued on (>= 0), or a
 *  negative code (GW_EINVAL for a listener of gw_listener_create_serial()
 *  or gw_listener_create_forward()). Loop thread only. */
GW_EXTERN int gw_listener_broadcast(gw_listener_t *listener, const void *data, size_t len);

/** This listener's counters. Thread-safe. */
GW_EXTERN int gw_listener_stats(gw_stats *out, const gw_listener_t *listener);

/* ---- Backends: listeners whose clients the library serves -------------- */

/* gatewayd's backends for firmware: a listener made by one of the two
 * functions below hands each client to a serial device or to another server
 * instead of to callbacks. The listener's own settings (address, backlog,
 * framing, limits, allow list, timeouts) come from a gw_listener_options as
 * for gw_listener_create(); its callbacks must be NULL (GW_EINVAL
 * otherwise: the backend handles the connections, and no gw_conn_t of such a
 * listener ever reaches the firmware; user_data is ignored). The framing
 * applies to what clients send: with GW_FRAMING_LINE, say, only whole lines
 * reach the device or server, each as it was framed. gw_listener_port() and
 * gw_listener_stats() work on these listeners; gw_listener_broadcast()
 * returns GW_EINVAL for them, since the bytes their clients receive come
 * from the backend. The backend belongs to the server, like the listener. */

/* The enums' constants are made from the tables in <gateway/tables.h>, which
 * say what each means. Each enum's 0 is its default. */
typedef enum gw_parity {
#define GW_PARITY_XX(NAME, core, value) GW_PARITY_##NAME = (value),
  GW_PARITY_MAP(GW_PARITY_XX)
#undef GW_PARITY_XX
} gw_parity;

typedef enum gw_flow_control {
#define GW_FLOW_CONTROL_XX(NAME, core, value) GW_FLOW_CONTROL_##NAME = (value),
  GW_FLOW_CONTROL_MAP(GW_FLOW_CONTROL_XX)
#undef GW_FLOW_CONTROL_XX
} gw_flow_control;

/** Who may use the device when several clients connect. */
typedef enum gw_serial_clients {
#define GW_SERIAL_CLIENTS_XX(NAME, core, value) GW_SERIAL_CLIENTS_##NAME = (value),
  GW_SERIAL_CLIENTS_MAP(GW_SERIAL_CLIENTS_XX)
#undef GW_SERIAL_CLIENTS_XX
} gw_serial_clients;

/** When the device is open. */
typedef enum gw_serial_open {
#define GW_SERIAL_OPEN_XX(NAME, core, value) GW_SERIAL_OPEN_##NAME = (value),
  GW_SERIAL_OPEN_MAP(GW_SERIAL_OPEN_XX)
#undef GW_SERIAL_OPEN_XX
} gw_serial_open;

/** A client that comes while the device is missing (absent, unplugged, or
 *  held by another program). */
typedef enum gw_device_missing {
#define GW_DEVICE_MISSING_XX(NAME, core, value) GW_DEVICE_MISSING_##NAME = (value),
  GW_DEVICE_MISSING_MAP(GW_DEVICE_MISSING_XX)
#undef GW_DEVICE_MISSING_XX
} gw_device_missing;

/** The device goes away (unplugged, hung up) while clients are connected. */
typedef enum gw_device_loss {
#define GW_DEVICE_LOSS_XX(NAME, core, value) GW_DEVICE_LOSS_##NAME = (value),
  GW_DEVICE_LOSS_MAP(GW_DEVICE_LOSS_XX)
#undef GW_DEVICE_LOSS_XX
} gw_device_loss;

/** The level a modem control line (DTR, RTS) is set to when the device opens. */
typedef enum gw_line {
  GW_LINE_KEEP = 0, /**< as opening the device left it (the default) */
  GW_LINE_LOW = 1,  /**< deasserted */
  GW_LINE_HIGH = 2  /**< asserted */
} gw_line;

/* What gatewayd's serial routes say about their device (gateway.conf(5)
 * documents each setting under the name in brackets). Every field's zero
 * means its default, as for every option struct. */
typedef struct gw_serial_options {
  unsigned version; /**< GW_SERIAL_OPTIONS_VERSION */
  /** The device: an absolute path ("/dev/ttyUSB0"). A symlink such as
   *  /dev/serial/by-id/... is followed anew on every open, so that an
   *  adapter that comes back under another name is found again. Required.
   *  A device that does not exist (yet) is not an error: the listener
   *  listens, and its clients get a one-line reason or wait (on_missing). */
  const char *device;
  unsigned baud;                /**< 50 to 4000000, any rate [baud]; 0 = 9600 */
  unsigned data_bits;           /**< 5 to 8 [data_bits]; 0 = 8 */
  gw_parity parity;             /**< [parity]; 0 = GW_PARITY_NONE */
  unsigned stop_bits;           /**< 1 or 2 [stop_bits]; 0 = 1 */
  gw_flow_control flow_control; /**< [flow_control]; 0 = GW_FLOW_CONTROL_NONE */
  gw_line dtr, rts;             /**< initial levels [dtr, rts]; 0 = GW_LINE_KEEP */
  /** Nonzero: RS-485 direction control by the driver (TIOCSRS485) [rs485];
   *  a driver without RS-485 support makes each open fail with a logged
   *  reason. 0: the port's RS-485 state is left as it is. */
  int rs485;
  /** RS-485 RTS levels [rts_on_send, rts_after_send]. Each field is named
   *  after the level that is not the default, so that zero is the default:
   *  RTS asserted while sending and deasserted after, the usual wiring of
   *  a transceiver's driver-enable pin. Nonzero rs485_rts_on_send_low
   *  keeps RTS deasserted while sending; nonzero rs485_rts_after_send_high
   *  asserts it after sending. */
  int rs485_rts_on_send_low;
  int rs485_rts_after_send_high;
  /** Delays around a transmission, 0 to 100 ms [delay_before_send,
   *  delay_after_send]; 0 = none. */
  unsigned rs485_delay_before_send_ms, rs485_delay_after_send_ms;
  gw_serial_clients clients; /**< [serial_clients]; 0 = GW_SERIAL_CLIENTS_EXCLUSIVE */
  /** CIDRs ("10.0.0.0/8") whose clients see the device's output but whose
   *  input is discarded [readonly_clients]; NULL = none. A bad entry:
   *  GW_EADDRESS. */
  const char *const *readonly_clients;
  size_t readonly_client_count;
  /* Packing, device to network: when the bytes read from the device go to
   * the clients as one packet (one message, on a framed listener). All
   * zero, the default: each read goes out at once, with no added delay. */
  unsigned idle_gap_us; /**< send once the line was quiet this long [idle_gap = "5ms"]; 0 = off */
  /** The same in tenths of characters at the line's rate [idle_gap =
   *  "3.5char" is 35]; nonzero wins over idle_gap_us. 0 = off. */
  unsigned idle_gap_tenth_chars;
  /** One or two bytes that end a packet [delimiter]; delimiter_length 0 =
   *  none (delimiter may then be NULL). Not a C string: "\0" is allowed. */
  const char *delimiter;
  size_t delimiter_length;
  int strip_delimiter;          /**< nonzero: the delimiter is not sent on; 0 = kept */
  size_t max_packet;            /**< send a packet at this many bytes [max_packet]; 0 = no limit */
  unsigned max_hold_ms;         /**< a packet's first byte waits at most this long [max_hold]; 0 = no limit */
  gw_serial_open open;          /**< [serial_open]; 0 = GW_SERIAL_OPEN_ON_CONNECT */
  gw_device_missing on_missing; /**< [on_device_missing]; 0 = GW_DEVICE_MISSING_REFUSE */
  unsigned device_wait_ms;      /**< with GW_DEVICE_MISSING_WAIT [device_wait]; 0 = 10000 */
  gw_device_loss on_loss;       /**< [on_device_loss]; 0 = GW_DEVICE_LOSS_CLOSE */
  /** Where the UUCP lock file ("LCK..ttyUSB0") that minicom, picocom and
   *  ser2net respect is made; NULL = "/run/lock"; "" = no lock file
   *  (TIOCEXCL is still set). */
  const char *lock_dir;
} gw_serial_options;

/* Versions 1 to this one are accepted (see the conventions at the top). */
#define GW_SERIAL_OPTIONS_VERSION 1
/* The version, every other field zero: the defaults (spelled out for
 * -Wmissing-field-initializers). */
#define GW_SERIAL_OPTIONS_INIT                                                                                        \
  {                                                                                                                   \
    GW_SERIAL_OPTIONS_VERSION, NULL, 0, 0, GW_PARITY_NONE, 0, GW_FLOW_CONTROL_NONE, GW_LINE_KEEP, GW_LINE_KEEP, 0, 0, \
        0, 0, 0, GW_SERIAL_CLIENTS_EXCLUSIVE, NULL, 0, 0, 0, NULL, 0, 0, 0, 0, GW_SERIAL_OPEN_ON_CONNECT,             \
        GW_DEVICE_MISSING_REFUSE, 0, GW_DEVICE_LOSS_CLOSE, NULL                                                       \
  }

/** Creates a listener (as gw_listener_create() does, from `listener`) whose
 *  clients reach the serial device `serial` describes, with gatewayd's
 *  client policies, packing and hot-plug: an unplugged device is watched for
 *  (inotify, no polling) and reopened with its settings, and the listener
 *  never goes away. Loop thread only. Returns 0, GW_EINVAL (a NULL
 *  argument, a version out of range, a callback set in `listener`, an enum
 *  value outside its list, or a setting out of range: the reason is logged
 *  at GW_LOG_ERROR through the server's log, so that the firmware sees why),
 *  GW_EADDRESS (a bad readonly_clients entry), GW_EWRONGTHREAD, or what
 *  gw_listener_create() returns. Since 0.2.0. */
GW_EXTERN int gw_listener_create_serial(gw_listener_t **out, gw_server_t *server, const gw_listener_options *listener,
                                        const gw_serial_options *serial);

/** Creates a listener (as gw_listener_create() does, from `listener`) that
 *  forwards each client to `backend` over a connection of its own, both
 *  ways, with backpressure and half-close passed on, as gatewayd's routes
 *  do. `backend` is "tcp://IP:PORT" ("tcp://[::1]:502"), "tcp://NAME:PORT"
 *  (looked up in the background, never on the loop thread, and again every
 *  few minutes and when no address answers; clients that come before the
 *  first answer wait for it, at most 5 s), or "unix:/ABSOLUTE/PATH". A
 *  backend that cannot be reached closes the client, with a logged reason.
 *  Loop thread only. Returns 0, GW_EINVAL (a NULL argument, a callback set
 *  in `listener`), GW_EADDRESS (a backend string not of those forms),
 *  GW_EWRONGTHREAD, or what gw_listener_create() returns. Since 0.2.0. */
GW_EXTERN int gw_listener_create_forward(gw_listener_t **out, gw_server_t *server, const gw_listener_options *listener,
                                         const char *backend);

/* ---- Connections -------------------------------------------------------- */

/** Queues raw bytes for the client (no framing is added). Returns 0,
 *  GW_ECLOSED (closing or closed), GW_EAGAIN (would pass max_output; nothing
 *  was queued), GW_EINVAL or GW_EWRONGTHREAD. */
GW_EXTERN int gw_conn_send(gw_conn_t *conn, const void *data, size_t len);

/** Queues one message encoded in the listener's framing: a '\n' is appended
 *  for GW_FRAMING_LINE, a length prefix for the length framings, nothing for
 *  raw. Returns what gw_conn_send() returns, or GW_ETOOBIG when `len` does not
 *  fit the prefix or exceeds max_frame. */
GW_EXTERN int gw_conn_send_message(gw_conn_t *conn, const void *data, size_t len);

/** Closes the connection gracefully: no more input is delivered, queued output
 *  is flushed, the connection is half-closed (FIN) and the peer's own close
 *  is awaited, so that unread input cannot turn into a reset that destroys
 *  the last output; after that, or after the server's stop_timeout_ms at the
 *  latest, on_close runs with GW_CLOSE_LOCAL. Until on_close the connection
 *  still counts in `clients` and in the limits. The same applies to closes
 *  for idle, oversize and limit. May be called from any callback, for this or another
 *  connection. Idempotent; returns 0, GW_EINVAL or GW_EWRONGTHREAD. */
GW_EXTERN int gw_conn_close(gw_conn_t *conn);

/** Attaches a pointer of the firmware's to the connection, and reads it back.
 *  Like every connection function, loop thread only: the loop may free a
 *  connection at any moment. From another thread, set does nothing and the
 *  getters below return NULL or 0. */
GW_EXTERN void gw_conn_set_user_data(gw_conn_t *conn, void *data);
GW_EXTERN void *gw_conn_user_data(const gw_conn_t *conn);

/** Writes the peer's address as text ("192.0.2.7" or "2001:db8::7") into
 *  buf and its port into *out_port (may be NULL). Returns 0, GW_EINVAL,
 *  GW_EWRONGTHREAD, or GW_ENOMEM if buf is too small (46 bytes always suffice). */
GW_EXTERN int gw_conn_peer(char *buf, size_t buflen, int *out_port, const gw_conn_t *conn);

/** The listener that accepted this connection. */
GW_EXTERN gw_listener_t *gw_conn_listener(const gw_conn_t *conn);

/** A number unique to this connection within its server (never reused). */
GW_EXTERN uint64_t gw_conn_id(const gw_conn_t *conn);

/* ---- Timers ------------------------------------------------------------- */

typedef void (*gw_timer_fn)(gw_timer_t *timer, void *user_data);

/** Creates a stopped timer on the server's loop. Loop thread only. The server
 *  frees timers still alive when it is destroyed. */
GW_EXTERN int gw_timer_create(gw_timer_t **out, gw_server_t *server, gw_timer_fn fn, void *user_data);

/** (Re)starts the timer: first after `delay_ms`, then every `repeat_ms`
 *  (0: one-shot). May be called from the timer's own callback. */
GW_EXTERN int gw_timer_start(gw_timer_t *timer, uint64_t delay_ms, uint64_t repeat_ms);

/** Stops the timer; it keeps its callback and can be started again. */
GW_EXTERN int gw_timer_stop(gw_timer_t *timer);

/** Stops and frees the timer (also from its own callback). NULL is ignored. */
GW_EXTERN void gw_timer_destroy(gw_timer_t *timer);

#ifdef __cplusplus
}
#endif

#endif /* GATEWAY_GATEWAY_H */
