#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Soak test (not part of CI): gatewayd under mixed load for a long time,
# printing its resident memory and open fds every INTERVAL seconds, failing if
# either grows past a small bound over its level in the first minute, or if
# the fds are not back to the idle count once the load stops.
#
#   bench/soak.sh [SECONDS=600] [INTERVAL=10] [BUILD_DIR=build/native]
#
# The load (python3, 8 threads, loopback only): line echoes, 1 MiB bulk
# round trips through a forwarding route (splice), connect-and-reset, clients
# that stall and go idle (idle_timeout 2s), and bursts past max_clients.
# GW_SOAK_RSS_SLACK_KB (default 4096) and GW_SOAK_FD_SLACK (default 100) set
# the bounds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${1:-600}
interval=${2:-10}
build=${3:-$root/build/native}
rss_slack=${GW_SOAK_RSS_SLACK_KB:-4096}
# A sample may land on a burst (up to 64 clients plus their refusals) or on
# no burst at all: the fd bound allows for that, and leaks show anyway as
# fds that are not back to the idle count at the end.
fd_slack=${GW_SOAK_FD_SLACK:-100}
gatewayd=$build/service/gatewayd
[ -x "$gatewayd" ] || { echo "soak: no $gatewayd (build first, or pass BUILD_DIR)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "soak: python3 is needed for the load" >&2; exit 1; }

work=$(mktemp -d /tmp/gw-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo_port=$(port); line_port=$(port); fwd_port=$(port); back_port=$(port)
cat > "$work/gateway.conf" <<CONF
[service]
log_level = "warning"
stop_timeout = "5s"

[[route]]
name = "echo"
listen = "127.0.0.1:$echo_port"
backend = "echo"
max_clients = 64
max_clients_per_ip = 0
idle_timeout = "2s"

[[route]]
name = "line"
listen = "127.0.0.1:$line_port"
backend = "echo"
framing = "line"
max_frame = 4096
idle_timeout = "2s"
max_clients_per_ip = 0

# The forwarding route's backend: an echo route of its own, so that the
# bursts against "echo" (max_clients) never refuse a forwarded client.
[[route]]
name = "back"
listen = "127.0.0.1:$back_port"
backend = "echo"
max_clients_per_ip = 0

[[route]]
name = "fwd"
listen = "127.0.0.1:$fwd_port"
backend = "tcp://127.0.0.1:$back_port"
idle_timeout = "2s"
max_clients_per_ip = 0
CONF
"$gatewayd" --config "$work/gateway.conf" 2> "$work/gatewayd.err" &
gw=$!
pids+=("$gw")
# (log_level "warning" hides "ready:": wait until the last route answers)
ready() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$fwd_port" 2>/dev/null; }
for _ in $(seq 100); do ready && break; sleep 0.05; done
ready || { cat "$work/gatewayd.err"; echo "soak: gatewayd did not start" >&2; exit 1; }

fds() { ls "/proc/$gw/fd" | wc -l; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$gw/status"; }
idle_fds=$(fds)

cat > "$work/load.py" <<'PY'
import os, random, socket, struct, sys, threading, time
echo, line, fwd, duration = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.time() + duration
lock = threading.Lock()
counts = {"lines": 0, "bulk": 0, "reset": 0, "idle": 0, "burst": 0, "errors": 0}

def bump(key, n=1):
    with lock:
        counts[key] += n

def conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s

def lines(rng):
    s = conn(line)
    f = s.makefile("rb")
    for i in range(50):
        msg = b"%d %s\n" % (i, b"x" * rng.randrange(1, 2000))
        s.sendall(msg)
        if f.readline() != msg:
            raise RuntimeError("line echo differs")
    s.close()
    bump("lines")

def bulk(rng):
    s = conn(fwd)
    data = os.urandom(1 << 20)
    got = bytearray()
    def reader():
        while len(got) < len(data):
            b = s.recv(65536)
            if not b:
                break
            got.extend(b)
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(30)
    s.close()
    if bytes(got) != data:
        raise RuntimeError("bulk round trip differs (%d of %d bytes)" % (len(got), len(data)))
    bump("bulk")

def reset(rng):
    s = conn(rng.choice([echo, line, fwd]))
    s.sendall(os.urandom(rng.randrange(1, 5000)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    bump("reset")

def idle(rng):
    s = conn(rng.choice([echo, fwd]))
    s.sendall(b"hello")
    s.settimeout(10)
    try:
        while s.recv(4096):   # the echo, then EOF when the idle timeout closes it
            pass
    except ConnectionResetError:
        pass
    s.close()
    bump("idle")

def burst(rng):
    socks = []
    for _ in range(80):       # past max_clients = 64: the excess is refused
        try:
            socks.append(conn(echo))
        except OSError:
            pass
    for s in socks:
        s.close()
    bump("burst")

def worker(n):
    rng = random.Random(n)
    actions = [lines] * 4 + [bulk] * 2 + [reset] * 2 + [idle] + [burst]
    while time.time() < end:
        a = rng.choice(actions)
        try:
            a(rng)
        except (ConnectionResetError, BrokenPipeError) as e:
            if a is not burst:
                bump("errors")
                print("load: %s: %s" % (a.__name__, e), file=sys.stderr)
        except Exception as e:
            bump("errors")
            print("load: %s: %s" % (a.__name__, e), file=sys.stderr)

threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("load: " + ", ".join("%s %d" % kv for kv in counts.items()))
sys.exit(1 if counts["errors"] else 0)
PY
python3 "$work/load.py" "$echo_port" "$line_port" "$fwd_port" "$duration" &
load=$!
pids+=("$load")

start=$SECONDS
first_rss=0; first_fds=0; fail=0
warm=$(( duration / 10 < 60 ? duration / 10 : 60 ))
[ "$warm" -ge "$interval" ] || warm=$interval
printf 'soak: %ss of load, sample every %ss; the first %ss set the level (idle fds %s)\n' "$duration" "$interval" "$warm" "$idle_fds"
while kill -0 "$load" 2>/dev/null; do
  sleep "$interval"
  kill -0 "$gw" 2>/dev/null || { echo "soak: gatewayd died"; cat "$work/gatewayd.err"; exit 1; }
  t=$((SECONDS - start)); r=$(rss); f=$(fds)
  if [ "$t" -le "$warm" ]; then
    [ "$r" -gt "$first_rss" ] && first_rss=$r
    [ "$f" -gt "$first_fds" ] && first_fds=$f
    printf 'soak: %4ss  VmRSS %6s kB  fds %4s  (first minute)\n' "$t" "$r" "$f"
  else
    verdict=ok
    if [ "$r" -gt $((first_rss + rss_slack)) ] || [ "$f" -gt $((first_fds + fd_slack)) ]; then verdict=GROWTH; fail=1; fi
    printf 'soak: %4ss  VmRSS %6s kB  fds %4s  %s\n' "$t" "$r" "$f" "$verdict"
  fi
done
load_rc=0; wait "$load" || load_rc=$?
# Idle and refused clients close within idle_timeout; the stop drains the rest.
for _ in $(seq 100); do [ "$(fds)" -eq "$idle_fds" ] && break; sleep 0.1; done
end_fds=$(fds); end_rss=$(rss)
printf 'soak: after the load: VmRSS %s kB (first minute max %s), fds %s (idle %s)\n' "$end_rss" "$first_rss" "$end_fds" "$idle_fds"
[ "$end_fds" -eq "$idle_fds" ] || { echo "soak: FAIL: fds not back to $idle_fds"; fail=1; }
[ "$load_rc" -eq 0 ] || { echo "soak: FAIL: the load saw errors"; fail=1; }
kill -TERM "$gw"; wait "$gw" || { echo "soak: FAIL: gatewayd exit code $?"; fail=1; }
grep -E '^<[0-3]>' "$work/gatewayd.err" | head -5 || true
[ "$fail" -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"
