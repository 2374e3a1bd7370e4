#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bulk forwarding throughput: iperf3 through gatewayd, systemd-socket-proxyd
# (splice-based) and socat, each forwarding 127.0.0.1:PORT -> the same iperf3
# server, measured in the same run and reported as ratios against gatewayd.
#
#   bench/forward.sh [BUILD_DIR] [SECONDS]     (default build/native, 5 s)
#
# A benchmark, not a test: it prints figures and never fails on them.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/common.sh"
build=${1:-$GW_ROOT/build/native}
seconds=${2:-5}
gw_need_packages iperf3 socat systemd
[ -x "$build/service/gatewayd" ] || gw_die "no gatewayd in $build: cmake --build --preset native first"

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

server_port=$((20000 + RANDOM % 10000))
iperf3 -s -B 127.0.0.1 -p "$server_port" >/dev/null 2>&1 & pids+=($!)

cat >"$work/gateway.conf" <<CONF
[service]
log_level = "warning"
[[route]]
name = "bench"
listen = "127.0.0.1:$((server_port + 1))"
backend = "tcp://127.0.0.1:$server_port"
max_clients = 0
max_clients_per_ip = 0

[[route]]
name = "bench-copy"
listen = "127.0.0.1:$((server_port + 4))"
backend = "tcp://127.0.0.1:$server_port"
max_clients = 0
max_clients_per_ip = 0
splice = false
CONF
"$build/service/gatewayd" --config "$work/gateway.conf" & pids+=($!)
systemd-socket-activate -l "127.0.0.1:$((server_port + 2))" \
  /lib/systemd/systemd-socket-proxyd "127.0.0.1:$server_port" >/dev/null 2>&1 & pids+=($!)
socat "TCP-LISTEN:$((server_port + 3)),bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$server_port" & pids+=($!)
sleep 0.5

measure() { # port -> Gbit/s received, client to server
  iperf3 -c 127.0.0.1 -p "$1" -t "$seconds" -J 2>/dev/null |
    python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
direct=$(measure "$server_port")
gateway=$(measure $((server_port + 1)))
proxyd=$(measure $((server_port + 2)))
socat_rate=$(measure $((server_port + 3)))
copy=$(measure $((server_port + 4)))
python3 - "$direct" "$gateway" "$copy" "$proxyd" "$socat_rate" <<'PY'
import sys
direct, gateway, copy, proxyd, socat = map(float, sys.argv[1:])
print("bulk forwarding over loopback (iperf3, one stream): Gbit/s, and gatewayd's rate divided by each")
for name, rate in (("direct (no proxy)", direct), ("gatewayd (splice)", gateway),
                   ("gatewayd splice=false", copy), ("systemd-socket-proxyd", proxyd), ("socat", socat)):
    print(f"  {name:24s} {rate:7.2f}   {gateway / rate:5.2f}")
PY
