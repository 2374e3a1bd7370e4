/* SPDX-License-Identifier: MIT */
/*
 * The tables of the C ABI that the core shares: error codes and close
 * reasons (and the enums of the serial options, below), as X-macros (libuv's UV_ERRNO_MAP style). Each list exists here
 * once; <gateway/gateway.h> makes the GW_E* and GW_CLOSE_* constants from
 * them, and the core (lib/) makes gw::err, gw::CloseReason, gw_strerror(),
 * gw_err_name() and both close-reason name functions from them, so that a
 * code, its value, its name and its text cannot drift apart.
 *
 * Why a header of its own, in a directory of its own: the core must not
 * depend on the C facade (capi/ -> lib/ <- service/), yet the C header's
 * values are the ABI and must be the source. This file is only macros (no
 * declaration, no dependency on gateway.h), is installed next to gateway.h as
 * <gateway/tables.h>, and its directory holds nothing else, so that lib/ gets
 * it through the gateway_tables target's include directory without being
 * able to include gateway.h or anything else of capi/.
 *
 * Usage: define XX(...) with the columns listed, expand the map, undefine XX.
 * Rows may be added (new codes, new reasons); a row's value never changes.
 */
#ifndef GATEWAY_TABLES_H
#define GATEWAY_TABLES_H

#include <errno.h>
#include <stddef.h>

/*
 * Error codes: XX(NAME, value, text). The C constant is GW_##NAME.
 *
 * GW_ERRNO_SYSTEM_MAP: negated errno values that gateway documents under its
 * own names. Their text is NULL: gw_strerror() gives the C library's text
 * for them (strerrordesc_np), as for every other negated errno. What each
 * means when gateway returns it is in the comment.
 */
#define GW_ERRNO_SYSTEM_MAP(XX)                                                        \
  XX(EINVAL, -EINVAL, NULL)               /* an argument is invalid */                 \
  XX(ENOMEM, -ENOMEM, NULL)               /* out of memory */                          \
  XX(EAGAIN, -EAGAIN, NULL)               /* output queue full: wait for on_drain */   \
  XX(EADDRINUSE, -EADDRINUSE, NULL)       /* the address is already in use */          \
  XX(EADDRNOTAVAIL, -EADDRNOTAVAIL, NULL) /* no such local address on this host */     \
  XX(EACCES, -EACCES, NULL)               /* permission denied (a port below 1024?) */ \
  XX(EBADF, -EBADF, NULL)                 /* not an open file descriptor */            \
  XX(ENOTSOCK, -ENOTSOCK, NULL)           /* the fd is not a socket */                 \
  XX(EMFILE, -EMFILE, NULL)               /* the process is out of file descriptors */ \
  XX(ENOSYS, -ENOSYS, NULL)               /* built without this feature (e.g. systemd) */

/* gateway's own codes, from -3001 down; the text is gw_strerror()'s. */
#define GW_ERRNO_GATEWAY_MAP(XX)                                                                    \
  XX(ENOTLISTENING, -3001, "the socket is not listening (call listen() or use a listening socket)") \
  XX(ENOTSTREAM, -3002, "the socket is not a SOCK_STREAM socket")                                   \
  XX(ESTATE, -3003, "not allowed in the object's current state")                                    \
  XX(EWRONGTHREAD, -3004, "called from a thread that is not the loop thread")                       \
  XX(ECLOSED, -3005, "the connection is closing or closed")                                         \
  XX(ENOTFOUND, -3006, "no inherited socket has that name, and no address to bind instead")         \
  XX(ETOOBIG, -3007, "the message is larger than the framing allows")                               \
  XX(EADDRESS, -3008, "invalid address: expected IP:PORT, [IPv6]:PORT or :PORT")

/* Every code of the API. */
#define GW_ERRNO_MAP(XX) GW_ERRNO_SYSTEM_MAP(XX) GW_ERRNO_GATEWAY_MAP(XX)

/*
 * Close reasons: XX(NAME, name, value, text). The C constant is
 * GW_CLOSE_##NAME, the core's gw::CloseReason::name; gw_close_reason_name()
 * returns #name ("peer"), and the core's log lines say "closed (text)"
 * ("closed (peer closed)"), which gatewayd's tests and users' log filters
 * match on: both spellings stay as they were.
 */
#define GW_CLOSE_REASON_MAP(XX)                                                                                    \
  XX(PEER, peer, 1, "peer closed") /* the peer closed its side and all our output was sent */                      \
  XX(RESET, reset, 2, "reset")     /* the peer reset the connection, or a socket error occurred */                 \
  XX(IDLE, idle, 3,                                                                                                \
     "idle timeout") /* nothing was received for idle_timeout_ms (or a frame took longer than frame_timeout_ms) */ \
  XX(LIMIT, limit, 4, "output limit") /* its output queue passed max_output (a broadcast it could not take) */     \
  XX(OVERSIZE, oversize, 5, "oversized frame") /* it sent a frame larger than max_frame */                         \
  XX(STOPPING, stopping, 6, "server stopping") /* the server is stopping */                                        \
  XX(LOCAL, local, 7, "closed locally")        /* gw_conn_close() was called */

/*
 * The enums of gw_serial_options (<gateway/gateway.h>, since 0.2.0):
 * XX(NAME, core, value). The C constant is GW_<ENUM>_##NAME; `core` is the
 * enumerator of the core's enum that the row stands for (gw::Parity::core,
 * ...), which capi/gateway.cpp checks row by row with static_asserts and
 * converts through. The words of gatewayd's configuration ("kick-old") are
 * the core's, in its name tables (lib/include/gw/serial.hpp,
 * serial_backend.hpp), not here. Each enum's 0 is its default, so that a
 * zeroed field means the default, as every option does.
 */
#define GW_PARITY_MAP(XX)                             \
  XX(NONE, none, 0) /* no parity bit (the default) */ \
  XX(EVEN, even, 1)                                   \
  XX(ODD, odd, 2)                                     \
  XX(MARK, mark, 3)   /* the parity bit always 1 */   \
  XX(SPACE, space, 4) /* the parity bit always 0 */

#define GW_FLOW_CONTROL_MAP(XX)                               \
  XX(NONE, none, 0)       /* no flow control (the default) */ \
  XX(RTSCTS, rtscts, 1)   /* hardware: RTS/CTS */             \
  XX(XONXOFF, xonxoff, 2) /* software: XON/XOFF characters */

#define GW_SERIAL_CLIENTS_MAP(XX)                                                                           \
  XX(EXCLUSIVE, exclusive, 0) /* one client; the next gets a one-line reason and is closed (the default) */ \
  XX(KICK_OLD, kick_old, 1)   /* a newcomer takes the port over from the client that had it */              \
  XX(SHARED, shared, 2)       /* device output to every client; input passed on whole frame by whole frame */

#define GW_SERIAL_OPEN_MAP(XX)                                                                         \
  XX(ON_CONNECT, on_connect, 0) /* opened for the first client, closed after the last (the default) */ \
  XX(ALWAYS, always, 1)         /* kept open; output while no client is connected is counted and discarded */

#define GW_DEVICE_MISSING_MAP(XX)                                                         \
  XX(REFUSE, refuse, 0) /* a client gets a one-line reason and is closed (the default) */ \
  XX(WAIT, wait, 1)     /* a client waits up to device_wait_ms for the device */

#define GW_DEVICE_LOSS_MAP(XX)                                                        \
  XX(CLOSE, close, 0) /* the clients are closed with a logged reason (the default) */ \
  XX(HOLD, hold, 1)   /* the clients stay; their output resumes when the device returns */

#endif /* GATEWAY_TABLES_H */
