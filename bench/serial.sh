#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Serial latency and throughput (issue 9): ser2net 4.x and gatewayd in turn on
# the same kind of line, a fresh pseudo-terminal pair per run whose master is
# held by bench/pty_echo.c (every byte echoed back at once), one TCP client
# (bench/serial_client.c): COUNT round trips of 16-byte messages (p50, p99,
# round trips/s), then a bulk transfer of BULK bytes written while the echo is
# read (bytes/s), every byte checked. Two baselines run the same client in
# the same rounds: "pty alone" (the client opens the pty's slave itself: the
# line's own round trip) and "minimal relay" (serial_client relay: poll, no
# packing, TCP_NODELAY: what any TCP-to-serial gateway pays at least).
# The peers run in turn, interleaved over ROUNDS rounds (the order reversed
# every other round); the table gives medians over rounds and gatewayd's
# figure divided by ser2net's.
#
#   bench/serial.sh [BUILD_DIR] [ROUNDS] [COUNT] [BULK]
#                   (default build/native, 5 rounds, 2000 round trips, 8 MiB)
#
# Both peers with their defaults at 115200 8N1: ser2net as its YAML example
# has it (accepter tcp, connector serialdev,...,115200n81,local; no options),
# gatewayd with a serial route (backend, baud; default packing: bytes go out
# as soon as they are read). Installs ser2net (and a C compiler) if missing.
# A benchmark, not a test: it prints figures and never fails on them.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/common.sh"
build=${1:-$GW_ROOT/build/native}
rounds=${2:-5}
count=${3:-2000}
bulk=${4:-8388608}
bulk_seconds=30 # a cap: a slower peer transfers what it can in that time
gw_need_packages ser2net gcc libc6-dev python3
gatewayd=$build/service/gatewayd
[ -x "$gatewayd" ] || gw_die "no gatewayd in $build: cmake --build --preset native --target gatewayd first"

work=$(mktemp -d /tmp/gw-serial-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cc -O2 -Wall -o "$work/pty_echo" "$GW_ROOT/bench/pty_echo.c"
cc -O2 -Wall -o "$work/serial_client" "$GW_ROOT/bench/serial_client.c"
client=$work/serial_client

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Stops the processes started for one run, by their PIDs.
stop() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# One run: a fresh pty pair, PEER on it, the client through it. Appends
# "PEER ROUND p50 p99 max rtps cpu_us_per_rt bytes seconds bytes_per_s" to
# $work/results (cpu: the peer process's CPU time over the round trips).
run() {
  local peer=$1 round=$2 slave port target line echo_pid peer_pid=
  "$work/pty_echo" >"$work/slave" 2>>"$work/echo.log" & echo_pid=$!; pids+=("$echo_pid")
  for _ in $(seq 1000); do
    [ -s "$work/slave" ] && break
    kill -0 "$echo_pid" 2>/dev/null || gw_die "pty_echo failed: $(cat "$work/echo.log")"
    sleep 0.01
  done
  slave=$(cat "$work/slave")
  [ -n "$slave" ] || gw_die "pty_echo printed no slave path in 10 s"
  port=$(free_port)
  target=tcp:127.0.0.1:$port
  case $peer in
    pty)
      target=tty:$slave ;;
    relay)
      "$client" relay "$port" "$slave" 2>>"$work/relay.log" & peer_pid=$! ;;
    ser2net)
      cat >"$work/ser2net.yaml" <<YAML
%YAML 1.1
---
connection: &bench
    accepter: tcp,127.0.0.1,$port
    connector: serialdev,$slave,115200n81,local
YAML
      # -n: in the foreground, so that it is stopped by its PID.
      ser2net -n -c "$work/ser2net.yaml" -P "$work/ser2net.pid" >>"$work/ser2net.log" 2>&1 & peer_pid=$! ;;
    gatewayd)
      cat >"$work/gateway.conf" <<CONF
[service]
log_level = "warning"
[[route]]
name = "bench"
listen = "127.0.0.1:$port"
backend = "serial:$slave"
baud = 115200
CONF
      "$gatewayd" --config "$work/gateway.conf" 2>>"$work/gatewayd.log" & peer_pid=$! ;;
  esac
  [ -z "$peer_pid" ] || pids+=("$peer_pid")
  # The client retries its connect until the peer listens (up to 5 s).
  if ! line=$(SERIAL_BENCH_PEER_PID=$peer_pid "$client" run "$target" "$count" 16 "$bulk" "$bulk_seconds"); then
    gw_say "$peer, round $round: the client failed (logs: $work)"
    line="nan nan nan nan nan nan nan nan"
  fi
  echo "$peer $round $line" >>"$work/results"
  gw_say "round $round $peer: $line"
  stop $peer_pid "$echo_pid"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(uptime)
peers=(pty relay ser2net gatewayd)
for round in $(seq "$rounds"); do
  order=("${peers[@]}")
  if ((round % 2 == 0)); then order=(gatewayd ser2net relay pty); fi
  for peer in "${order[@]}"; do run "$peer" "$round"; done
done
load_after=$(uptime)

{
  echo "started:     $started on $(hostname), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "kernel:      $(uname -sr)"
  echo "load before: ${load_before#*load average: } (1, 5, 15 min)"
  echo "load after:  ${load_after#*load average: }"
  echo "ser2net:     $(ser2net -v 2>&1 | head -1) (Debian $(dpkg-query -W -f='${Version}' ser2net)): ser2net -n -c ser2net.yaml"
  sed 's/^/               /' "$work/ser2net.yaml"
  echo "gatewayd:    $("$gatewayd" --version | head -1) ($gatewayd): gatewayd --config gateway.conf"
  sed 's/^/               /' "$work/gateway.conf"
  echo "client:      serial_client run TARGET $count 16 $bulk $bulk_seconds (cc -O2, $(cc --version | head -1))"
  echo "runs:        $rounds rounds x 4 peers, a fresh pty pair for each run"
} >"$work/header"
python3 - "$work/header" "$work/results" "$rounds" "$count" "$bulk" <<'PY'
import math, statistics, sys
header, results, rounds, count, bulk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = {}
for line in open(results):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[2:]])
def med(peer, i):
    v = [r[i] for r in rows.get(peer, []) if not math.isnan(r[i])]
    return statistics.median(v) if v else math.nan
names = {"pty": "pty alone (no gateway)", "relay": "minimal relay (poll)", "ser2net": "ser2net", "gatewayd": "gatewayd"}
print(open(header).read(), end="")
print()
print(f"16-byte round trips ({count} per run) and bulk echo ({bulk} bytes), medians over {rounds} rounds")
def spread(peer, i):
    v = [r[i] for r in rows.get(peer, []) if not math.isnan(r[i])]
    return f"{min(v):.0f}-{max(v):.0f}" if v else "-"
print(f"  {'':24s} {'p50 us':>9s} {'(runs)':>11s} {'p99 us':>9s} {'rt/s':>8s} {'bulk MB/s':>10s} {'CPU us/rt':>10s}")
for peer in ("pty", "relay", "ser2net", "gatewayd"):
    cpu = f"{med(peer,4):10.1f}" if peer != "pty" else f"{'-':>10s}"
    print(f"  {names[peer]:24s} {med(peer,0):9.1f} {spread(peer,0):>11s} {med(peer,1):9.1f} {med(peer,3):8.0f}"
          f" {med(peer,7)/1e6:10.2f} {cpu}")
print("  ((runs): lowest-highest p50 of the runs; MB = 10^6 bytes; CPU us/rt: the gateway process's CPU time")
print("  per round trip, all its threads)")
g, s = "gatewayd", "ser2net"
print()
print("gatewayd / ser2net (latency: lower is better; rt/s and bulk: higher is better)")
print(f"  p50 {med(g,0)/med(s,0):.3f}   p99 {med(g,1)/med(s,1):.3f}   rt/s {med(g,3)/med(s,3):.1f}   bulk {med(g,7)/med(s,7):.1f}")
print(f"  target: gatewayd p50 <= ser2net p50 / 10 = {med(s,0)/10:.0f} us: {'met' if med(g,0) <= med(s,0)/10 else 'NOT met'} ({med(g,0):.1f} us)")
print()
print("what bounds gatewayd's latency (p50)")
print(f"  the pty's own round trip:           {med('pty',0):7.1f} us")
print(f"  + TCP loopback and a relay process: {med('relay',0)-med('pty',0):7.1f} us (minimal relay {med('relay',0):.1f} us)")
print(f"  + gatewayd over the minimal relay:  {med(g,0)-med('relay',0):7.1f} us (gatewayd {med(g,0):.1f} us,"
      f" {med(g,0)-med('pty',0):.1f} us over the pty alone)")
def paired(a, b, i=0):  # a's figure minus b's, run by run of the same round
    bya = {round_: r[i] for round_, r in rounds_of(a)}
    d = sorted(r[i] - bya[k] for k, r in rounds_of(b) if k in bya)
    return d
def rounds_of(peer):
    return [(int(l.split()[1]), [float(x) for x in l.split()[2:]]) for l in open(results) if l.split()[0] == peer]
d = paired("relay", g)
if d:
    print(f"  paired in each round, gatewayd minus relay: median {statistics.median(d):.1f} us"
          f" (rounds {min(d):.1f} to {max(d):.1f}); CPU per round trip: gatewayd {med(g,4):.1f} us, relay {med('relay',4):.1f} us")
print(f"  ser2net over the minimal relay:     {med(s,0)-med('relay',0):7.1f} us (its chardelay: after each read from the line it waits"
      " 2 characters or chardelay-min = 1000 us, an epoll timeout of 2 ms, before sending)")
print()
print("per run: peer round p50_us p99_us max_us rt/s cpu_us/rt bulk_bytes bulk_s bulk_B/s")
for line in open(results):
    print("  " + line.rstrip())
PY
