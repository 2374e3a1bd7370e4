#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Modbus round trips through gatewayd (issue 10): libmodbus TCP masters
# (bench/modbus_bench.c master) read REGS holding registers through a
# gatewayd Modbus route whose bus is a pseudo-terminal, answered by a
# libmodbus RTU slave on the pty's master (modbus_bench slave). Each run: a
# fresh pty, slave and gatewayd; COUNT reads shared by 1 or 8 masters; p50,
# p99 and max latency, requests/s. Runs at 115200 and 9600 baud (the route's
# baud: gatewayd's RTU timing, its 3.5-character gaps, follows it).
#
# Next to each rate, the bus's own: a read of N registers is an 8-byte
# request and a 5+2N-byte reply at 10 bits a character, plus two 3.5-character
# gaps, so at most baud / (10 * (13 + 2N + 7)) requests/s. A pty does not pace
# bytes, so that "wire" figure is computed, not measured: gatewayd's ratio to
# it can exceed 1 on a pty, and on a real line cannot.
#
#   bench/modbus.sh [BUILD_DIR] [ROUNDS] [COUNT] [REGS]
#                   (default build/native, 3 rounds, 2000 reads, 10 registers)
#
# A benchmark, not a test: it prints figures and never fails on them.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/common.sh"
build=${1:-$GW_ROOT/build/native}
rounds=${2:-3}
count=${3:-2000}
regs=${4:-10}
gw_need_packages libmodbus-dev gcc libc6-dev python3 pkg-config
gatewayd=$build/service/gatewayd
[ -x "$gatewayd" ] || gw_die "no gatewayd in $build: cmake --build --preset native --target gatewayd first"

work=$(mktemp -d /tmp/gw-modbus-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2046 # pkg-config's flags are words
cc -O2 -Wall -o "$work/modbus_bench" "$GW_ROOT/bench/modbus_bench.c" $(pkg-config --cflags --libs libmodbus) -lpthread
tool=$work/modbus_bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# One run: BAUD MASTERS ROUND. Appends "BAUD MASTERS ROUND p50 p99 max rps
# failures" to $work/results.
run() {
  local baud=$1 masters=$2 round=$3 slave port slave_pid gw_pid line
  "$tool" slave >"$work/slave" 2>>"$work/slave.log" & slave_pid=$!; pids+=("$slave_pid")
  for _ in $(seq 1000); do
    [ -s "$work/slave" ] && break
    sleep 0.01
  done
  slave=$(cat "$work/slave")
  [ -n "$slave" ] || gw_die "modbus_bench slave printed no pty path"
  port=$(free_port)
  cat >"$work/gateway.conf" <<CONF
[service]
log_level = "warning"
[[route]]
name = "bench"
listen = "127.0.0.1:$port"
backend = "serial:$slave"
protocol = "modbus"
baud = $baud
lock_dir = ""
CONF
  "$gatewayd" --config "$work/gateway.conf" 2>>"$work/gatewayd.log" & gw_pid=$!; pids+=("$gw_pid")
  if ! line=$("$tool" master "$port" "$masters" "$count" "$regs"); then
    gw_say "$baud baud, $masters masters, round $round: failures (logs: $work)"
    line=${line:-nan nan nan nan nan}
  fi
  echo "$baud $masters $round $line" >>"$work/results"
  gw_say "round $round, $baud baud, $masters masters: $line"
  stop "$gw_pid" "$slave_pid"
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(uptime)
for round in $(seq "$rounds"); do
  for baud in 115200 9600; do
    for masters in 1 8; do run "$baud" "$masters" "$round"; done
  done
done
load_after=$(uptime)

{
  echo "started:     $started on $(hostname), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "kernel:      $(uname -sr)"
  echo "load before: ${load_before#*load average: } (1, 5, 15 min)"
  echo "load after:  ${load_after#*load average: }"
  echo "gatewayd:    $("$gatewayd" --version | head -1), a Modbus route on a pty (protocol = \"modbus\", baud as below)"
  echo "slave:       libmodbus $(pkg-config --modversion libmodbus) RTU on the pty's master; masters: libmodbus TCP"
  echo "runs:        $rounds rounds; $count reads of $regs holding registers per run, shared by the masters"
} >"$work/header"
python3 - "$work/header" "$work/results" "$rounds" "$regs" <<'PY'
import math, statistics, sys
header, results, rounds, regs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = {}
for line in open(results):
    f = line.split()
    rows.setdefault((int(f[0]), int(f[1])), []).append([float(x) for x in f[3:]])
def med(key, i):
    v = [r[i] for r in rows.get(key, []) if not math.isnan(r[i])]
    return statistics.median(v) if v else math.nan
chars = 8 + 5 + 2 * regs + 2 * 3.5
print(open(header).read(), end="")
print()
print(f"read_registers of {regs}: the bus carries {8 + 5 + 2 * regs} characters and two 3.5-character gaps per request")
print("(wire req/s = baud / (10 x {:.0f}); computed: a pty does not pace bytes); medians over rounds".format(chars))
print(f"  {'baud':>6s} {'masters':>7s} {'p50 us':>9s} {'p99 us':>9s} {'max us':>9s} {'req/s':>8s} {'wire req/s':>10s}"
      f" {'ratio':>6s} {'wire us':>8s}")
for (baud, masters) in sorted(rows, key=lambda k: (-k[0], k[1])):
    wire = baud / (10 * chars)
    print(f"  {baud:6d} {masters:7d} {med((baud,masters),0):9.0f} {med((baud,masters),1):9.0f}"
          f" {med((baud,masters),2):9.0f} {med((baud,masters),3):8.0f} {wire:10.1f}"
          f" {med((baud,masters),3)/wire:6.2f} {1e6/wire:8.0f}")
print("  (ratio: gatewayd's req/s over the wire limit; wire us: one request's time on the line)")
print()
print("per run: baud masters round p50_us p99_us max_us req/s failures")
for line in open(results):
    print("  " + line.rstrip())
PY
