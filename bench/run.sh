#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The benchmark suite (issue 11): gatewayd side by side with socat, nginx
# stream, HAProxy and systemd-socket-proxyd (and "direct", no proxy, as the
# ceiling), every peer in the same run, interleaved over rounds; writes
# bench/RESULTS.md and the plots in bench/results/.
#
#   bench/run.sh [--quick] [--rounds N] [--seconds S] [--only W[,W...]]
#                [--build DIR] [--cross DIR] [--profile] [--out DIR]
#
#   --quick     1 round, 1 s per measurement, fewer clients (for development)
#   --rounds N  rounds (default 3); each peer once per round, the order
#               reversed every other round
#   --seconds S length of each measurement after its warm-up (default 2)
#   --only      workloads: stream,pingpong,churn,idle,real,serial,footprint,syscalls
#   --build     gatewayd's build directory (default build/native, built with
#               the native preset if gatewayd is missing)
#   --cross     where the cross builds are (DIR/arm64, DIR/armhf; default
#               build): only read, never built
#   --profile   also record a perf profile of gatewayd in ping-pong 64 x 64 B
#   --out       where RESULTS.md and results/ go (default bench)
#
# A benchmark, not a test: never run by scripts/test.sh, never fails on its
# figures. Installs its Debian packages with apt-get when they are missing.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/common.sh"

# The whole run takes place in a network namespace of its own, with only its
# loopback, for two reasons. Every peer starts from the same clean TCP state:
# no TIME_WAIT sockets of earlier runs or of other programs. And churn measures
# the proxies, not the kernel's ephemeral ports: all connections go to one
# address and port, and a port in TIME_WAIT is only reused a second later
# (tcp_tw_reuse), so the host's 28,232 ports (32768-60999), of which connect()
# tries the even half first, cap every peer, direct too, at about 14,000
# connections a second. The namespace gets 1024-65535. Without the right to
# make one (no root), the run stays on the host's network and says so.
if [ -z "${GW_BENCH_NETNS:-}" ]; then
  if unshare -n true 2>/dev/null; then
    GW_BENCH_NETNS=private exec unshare -n -- "$0" "$@"
  fi
  export GW_BENCH_NETNS=host
elif [ "$GW_BENCH_NETNS" = private ]; then
  ip link set lo up
  # One address that is not loopback (TEST-NET-1, never routed): without it
  # getaddrinfo(AI_ADDRCONFIG) finds no IPv4 configured, and ser2net's
  # accepter, tcp,127.0.0.1,PORT, does not resolve.
  ip addr add 192.0.2.1/32 dev lo
  sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
fi

rounds=3 seconds=2 warmup=0.3 quick=0 profile=0 only=all
build=$GW_ROOT/build/native cross=$GW_ROOT/build out=$GW_ROOT/bench
argv_text="bench/run.sh $*"
while (($#)); do
  case $1 in
    --quick) quick=1 rounds=1 seconds=1 warmup=0.3 ;;
    --rounds) rounds=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --only) only=$2; shift ;;
    --build) build=$2; shift ;;
    --cross) cross=$2; shift ;;
    --profile) profile=1 ;;
    --out) out=$2; shift ;;
    *) gw_die "bench/run.sh: unknown option '$1' (see the comment at the top of bench/run.sh)" ;;
  esac
  shift
done
wanted() { [[ $only == all || ,$only, == *,$1,* ]]; }

gw_need_packages socat nginx-light libnginx-mod-stream haproxy ser2net iperf3 redis-server redis-tools wrk \
  python3-matplotlib g++ systemd iproute2
((profile == 0)) && ! wanted syscalls || gw_need_packages linux-perf
gatewayd=$build/service/gatewayd
if [ ! -x "$gatewayd" ] || [ ! -e "$build/capi/libgateway.so.0" ]; then
  [ "$build" = "$GW_ROOT/build/native" ] || gw_die "no gatewayd in $build (build it, or leave --build out)"
  gw_say "building gatewayd and libgateway (native preset, RelWithDebInfo)"
  (cd "$GW_ROOT" && nice cmake --preset native >&2 && nice cmake --build build/native -j2 --target gatewayd gateway >&2)
fi
proxyd=/lib/systemd/systemd-socket-proxyd
# Debian's python3, the one python3-matplotlib is for (a python3 earlier in
# PATH, pyenv's say, lacks it).
py=/usr/bin/python3

work=$(mktemp -d /tmp/gw-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
raw=$work/raw.txt meta=$work/meta.txt
: >"$raw"
: >"$meta"

# 10,000 idle clients are 20,000 sockets in a proxy and as many in the client
# and the backend: every process started from here inherits this limit.
# The hard limit may not be raised (a container): the proxies' own limits, and
# the number of idle clients, are then derived from it.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
max_conns=$(((fd_limit - 200) / 2)) # client and backend sockets of a proxy
((max_conns <= 65536)) || max_conns=65536

g++ -std=c++17 -O2 -Wall -Wextra -Werror -o "$work/loadgen" "$GW_ROOT/bench/loadgen.cpp"
loadgen=$work/loadgen

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { # PORT: until something listens there (5 s)
  for _ in $(seq 500); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.01
  done
  gw_die "nothing listens on 127.0.0.1:$1 after 5 s (logs: $work)"
}
# Starts a command in its own process group (stopped as a group), records its PID in $started.
spawn() {
  setsid "$@" >>"$work/spawn.log" 2>&1 &
  started=$!
  pids+=("$started")
}
stop_group() {
  kill -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# ---- backends: the same for every peer ---------------------------------------
# Not in a command substitution: its PID must reach this shell's $pids.
start_backend() { # KIND: its port is then in $work/backend-KIND.port
  "$loadgen" serve "$1" >"$work/backend-$1.port" 2>>"$work/spawn.log" &
  pids+=($!)
  for _ in $(seq 500); do [ -s "$work/backend-$1.port" ] && return 0; sleep 0.01; done
  gw_die "loadgen serve $1 did not start (logs: $work)"
}
start_backend echo
start_backend sink
echo_port=$(cut -d= -f2 "$work/backend-echo.port")
sink_port=$(cut -d= -f2 "$work/backend-sink.port")

# ---- peers: each forwards 127.0.0.1:LISTEN to 127.0.0.1:BACKEND ----------------
peers=(direct socat nginx haproxy proxyd gatewayd)
peer_conf() { # PEER LISTEN BACKEND: writes the peer's configuration file
  local dir=$work/$1
  mkdir -p "$dir"
  case $1 in
    nginx)
      cat >"$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $fd_limit;
user root;
pid $dir/nginx.pid;
error_log $dir/error.log crit;
events { worker_connections $((2 * max_conns + 50)); }
stream {
    server {
        listen 127.0.0.1:$2 backlog=4096;
        proxy_pass 127.0.0.1:$3;
        proxy_timeout 1h;
    }
}
CONF
      ;;
    haproxy)
      cat >"$dir/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn $max_conns
defaults
    mode tcp
    maxconn $max_conns
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend in
    bind 127.0.0.1:$2 backlog 4096
    default_backend out
backend out
    server backend 127.0.0.1:$3
CONF
      ;;
    gatewayd | gatewayd-echo)
      local backend="tcp://127.0.0.1:$3"
      [ "$1" = gatewayd ] || backend="echo"
      cat >"$dir/gateway.conf" <<CONF
[service]
log_level = "error"
[[route]]
name = "bench"
listen = "127.0.0.1:$2"
backend = "$backend"
backlog = 4096
max_clients = 0
max_clients_per_ip = 0
idle_timeout = "0"
keepalive = false
CONF
      ;;
  esac
}
peer_command() { # PEER LISTEN BACKEND: the command line that runs it
  local dir=$work/$1
  case $1 in
    socat) echo "socat TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay TCP:127.0.0.1:$3,nodelay" ;;
    nginx) echo "nginx -p $dir -e $dir/error.log -c $dir/nginx.conf" ;;
    haproxy) echo "haproxy -db -f $dir/haproxy.cfg" ;;
    proxyd) echo "systemd-socket-activate -l 127.0.0.1:$2 $proxyd --connections-max=$max_conns 127.0.0.1:$3" ;;
    gatewayd | gatewayd-echo) echo "$gatewayd --config $dir/gateway.conf" ;;
  esac
}
# Starts PEER towards BACKEND; sets peer_pid (empty for direct) and peer_port.
start_peer() {
  local peer=$1 backend=$2
  peer_pid='' peer_port=$backend
  [ "$peer" = direct ] && return 0
  peer_port=$(free_port)
  peer_conf "$peer" "$peer_port" "$backend"
  # shellcheck disable=SC2046 # the command is words without quoting
  spawn $(peer_command "$peer" "$peer_port" "$backend")
  peer_pid=$started
  wait_listen "$peer_port"
}
stop_peer() { [ -z "$peer_pid" ] || stop_group "$peer_pid"; }

# The order of the peers in ROUND: reversed every other round.
order() {
  local list=("${peers[@]}") i
  if (($1 % 2 == 0)); then for ((i = ${#list[@]} - 1; i >= 0; i--)); do echo "${list[i]}"; done; else printf '%s\n' "${list[@]}"; fi
}

# One loadgen measurement: WORKLOAD CONFIG PEER ROUND BACKEND -- loadgen arguments.
measure() {
  local workload=$1 config=$2 peer=$3 round=$4 backend=$5 line watch=()
  shift 6
  start_peer "$peer" "$backend"
  [ -z "$peer_pid" ] || watch=(--watch "$peer_pid")
  line=$("$loadgen" "$1" "127.0.0.1:$peer_port" "${@:2}" --seconds "$seconds" --warmup "$warmup" "${watch[@]}") ||
    line="failed=1"
  stop_peer
  echo "workload=$workload config=$config peer=$peer round=$round $line" | tee -a "$raw" >&2
}

# ---- workloads -----------------------------------------------------------------
run_stream() {
  local clients round peer
  for clients in 1 8; do
    for round in $(seq "$rounds"); do
      for peer in $(order "$round"); do
        measure stream "c$clients" "$peer" "$round" "$sink_port" -- stream --clients "$clients" --size 65536
      done
    done
  done
}

run_pingpong() {
  local counts=(1 64 1024) clients size round peer
  ((quick == 0)) || counts=(1 64 256)
  for clients in "${counts[@]}"; do
    for size in 64 4096; do
      for round in $(seq "$rounds"); do
        for peer in $(order "$round"); do
          measure pingpong "c${clients}_s$size" "$peer" "$round" "$echo_port" -- pingpong --clients "$clients" --size "$size"
        done
      done
    done
  done
}

run_churn() {
  local round peer
  for round in $(seq "$rounds"); do
    for peer in $(order "$round"); do
      measure churn c16 "$peer" "$round" "$echo_port" -- churn --clients 16 --size 64
    done
  done
}

# Resident memory of the peer's processes before its idle clients connect and
# once each has had its echo (so that each has its backend connection).
idle_one() { # PEER ROUND CLIENTS
  local peer=$1 round=$2 clients=$3 before after lg line
  start_peer "$peer" "$echo_port"
  sleep 0.3
  before=$("$loadgen" proc "$peer_pid")
  rm -f "$work/idle.ready"
  "$loadgen" idle "127.0.0.1:$peer_port" --clients "$clients" --size 1 --seconds 600 --timeout 60 \
    --inflight 128 --ready "$work/idle.ready" >/dev/null &
  lg=$!
  for _ in $(seq 6500); do [ -e "$work/idle.ready" ] && break; sleep 0.01; done
  sleep 0.3 # the peer's last allocations after the last echo
  after=$("$loadgen" proc "$peer_pid")
  line=$(cat "$work/idle.ready" 2>/dev/null || echo failed=1)
  kill "$lg" 2>/dev/null || true
  wait "$lg" 2>/dev/null || true
  stop_peer
  echo "workload=idle config=c$clients peer=$peer round=$round ${line#mode=idle } $(sed 's/\([a-z_]*\)=/before_\1=/g' <<<"$before") $(sed 's/\([a-z_]*\)=/after_\1=/g' <<<"$after")" |
    tee -a "$raw" >&2
}

run_idle() {
  local clients=10000 round peer n
  ((quick == 0)) || clients=1000
  # A proxy holds two sockets per client, within its RLIMIT_NOFILE.
  ((clients <= max_conns - 100)) || clients=$((max_conns / 100 * 100 - 100))
  for round in $(seq "$rounds"); do
    for peer in $(order "$round") gatewayd-echo; do
      [ "$peer" = direct ] && continue
      # socat forks a process per connection: 1,000 of them say enough.
      n=$clients
      [ "$peer" != socat ] || ((n <= 1000)) || n=1000
      idle_one "$peer" "$round" "$n"
    done
  done
}

# ---- real clients: redis-benchmark to redis-server, wrk to nginx http -------------
start_real_backends() {
  redis_port=$(free_port) http_port=$(free_port)
  spawn redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
    --maxclients 10000 --logfile "$work/redis.log"
  redis_pid=$started
  mkdir -p "$work/www" "$work/http"
  head -c 1024 /dev/urandom >"$work/www/1k"
  head -c 1048576 /dev/urandom >"$work/www/1m"
  cat >"$work/http/nginx.conf" <<CONF
daemon off;
worker_processes 1;
user root;
pid $work/http/nginx.pid;
error_log $work/http/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$http_port backlog=4096; root $work/www; }
}
CONF
  spawn nginx -p "$work/http" -e "$work/http/error.log" -c "$work/http/nginx.conf"
  http_pid=$started
  wait_listen "$redis_port"
  wait_listen "$http_port"
}

real_one() { # CONFIG PEER ROUND
  local config=$1 peer=$2 round=$3 before after text
  case $config in redis*) start_peer "$peer" "$redis_port" ;; *) start_peer "$peer" "$http_port" ;; esac
  before=cpu_s=nan after=cpu_s=nan
  [ -z "$peer_pid" ] || before=$("$loadgen" proc "$peer_pid")
  case $config in
    redis) text=$(redis-benchmark -h 127.0.0.1 -p "$peer_port" -c 50 -n "$redis_requests" -t set,get --csv 2>&1) ;;
    http_1k) text=$(wrk -t1 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$peer_port/1k" 2>&1) ;;
    http_1m) text=$(wrk -t1 -c50 -d"${seconds}s" --latency "http://127.0.0.1:$peer_port/1m" 2>&1) ;;
  esac
  [ -z "$peer_pid" ] || after=$("$loadgen" proc "$peer_pid")
  stop_peer
  printf '%s\n' "$text" >"$work/real-$config-$peer-$round.txt"
  echo "workload=real config=$config peer=$peer round=$round $("$py" "$GW_ROOT/bench/report.py" parse-real "$config" \
    "$work/real-$config-$peer-$round.txt" "$before" "$after")" | tee -a "$raw" >&2
}

run_real() {
  local config round peer
  redis_requests=20000
  ((quick == 0)) || redis_requests=5000
  echo "redis_requests: $redis_requests" >>"$meta"
  start_real_backends
  for config in redis http_1k http_1m; do
    for round in $(seq "$rounds"); do
      for peer in $(order "$round"); do real_one "$config" "$peer" "$round"; done
    done
  done
  stop_group "$redis_pid"
  stop_group "$http_pid"
}

# ---- serial: bench/serial.sh, gatewayd against ser2net on a pty ---------------------
run_serial() {
  local count=2000 bulk=8388608
  ((quick == 0)) || count=300 bulk=1048576
  echo "bench/serial.sh $build $rounds $count $bulk" >"$work/serial.cmd"
  "$GW_ROOT/bench/serial.sh" "$build" "$rounds" "$count" "$bulk" >"$work/serial.txt" ||
    echo "bench/serial.sh failed" >>"$work/serial.txt"
}

# ---- footprint and start-up ----------------------------------------------------------
stripped_size() { # BUILD_DIR STRIP -> bytes of gatewayd + libgateway.so.0 stripped, or "not built"
  local dir=$1 strip=$2 total=0 f
  for f in service/gatewayd capi/libgateway.so.0; do
    [ -e "$dir/$f" ] || { echo "not built"; return; }
    command -v "$strip" >/dev/null || { echo "no $strip"; return; }
    "$strip" -o "$work/stripped" "$dir/$f"
    total=$((total + $(stat -c %s "$work/stripped")))
  done
  echo "$total"
}

# What the gateway and libgateway0 packages of this version for ARCH install
# (dist/, from scripts/package.sh; dh_strip has stripped them): the bytes of
# their ELF files (gatewayd, libgateway.so.0) and their Installed-Size in KiB.
# Nothing is printed where the packages were not built.
# What a set of ELF files is made of, in KiB by kind of section (readelf reads
# every architecture): machine code, unwind tables (exceptions need them),
# read-only data, what the dynamic linker needs (symbols, versions,
# relocations), writable data, the rest, and what no section holds: headers
# and the padding that aligns the segments in the file (arm64's linker
# aligns to 64 KiB pages, so that the files load on any page size).
elf_sections() { # FILE...
  local f bytes=0
  for f; do bytes=$((bytes + $(stat -c %s "$f"))); done
  for f; do readelf -S -W "$f"; done | sed -n 's/^ *\[ *[0-9]*\] //p' | awk -v bytes="$bytes" '
    function hex(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
    $2 != "NOBITS" && $1 != "NULL" {
      n = $1; size = hex($5)
      if (n ~ /^\.(text|plt|init|fini)/) k = "code"
      else if (n ~ /^\.(eh_frame|gcc_except_table)/) k = "unwind"
      else if (n ~ /^\.rodata/) k = "rodata"
      else if (n ~ /^\.(dyn|gnu\.hash|hash|gnu\.version|rela?\.|relr|got|interp)/) k = "dynamic_linking"
      else if (n ~ /^\.(data|init_array|fini_array)/) k = "data"
      else k = "other"
      kib[k] += size; all += size
    }
    END {
      kib["headers_and_padding"] = bytes - all
      split("code unwind rodata dynamic_linking data other headers_and_padding", order, " ")
      for (i = 1; i <= 7; i++) printf "%s%s_%.0f", (i > 1 ? ",_" : ""), order[i], kib[order[i]] / 1024
      print ""
    }'
}

deb_sizes() { # ARCH
  local arch=$1 version elf=0 kib=0 deb f elves=()
  version=$(sed -n 's/^project(gateway VERSION \([0-9.]*\).*/\1/p' "$GW_ROOT/CMakeLists.txt")
  for deb in "$GW_ROOT/dist/gateway_${version}_$arch.deb" "$GW_ROOT/dist/libgateway0_${version}_$arch.deb"; do
    [ -e "$deb" ] || return 0
    rm -rf "$work/deb-${deb##*/}" && dpkg-deb -x "$deb" "$work/deb-${deb##*/}"
    for f in $(find "$work/deb-${deb##*/}" -type f); do
      [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
      elf=$((elf + $(stat -c %s "$f")))
      elves+=("$f")
    done
    kib=$((kib + $(dpkg-deb -f "$deb" Installed-Size)))
  done
  echo "deb_elf_$arch=$elf"
  echo "sections_$arch=$(elf_sections "${elves[@]}")"
  echo "deb_installed_kib_$arch=$kib"
  echo "deb_built_$arch=$(date -u -r "$GW_ROOT/dist/gateway_${version}_$arch.deb" '+%Y-%m-%d_%H:%M_UTC')"
}

run_footprint() {
  local f=$work/footprint.txt port i pkg arch
  {
    for arch in amd64 arm64 armhf; do deb_sizes "$arch"; done
    echo "size_amd64=$(stripped_size "$build" strip | tr ' ' _)"
    echo "size_arm64=$(stripped_size "$cross/arm64" aarch64-linux-gnu-strip | tr ' ' _)"
    echo "size_armhf=$(stripped_size "$cross/armhf" arm-linux-gnueabihf-strip | tr ' ' _)"
    # When the builds were made: the script reads them, it does not rebuild them.
    for arch in arm64 armhf; do
      [ ! -e "$cross/$arch/service/gatewayd" ] ||
        echo "built_$arch=$(date -u -r "$cross/$arch/service/gatewayd" '+%Y-%m-%d_%H:%M_UTC'),_$(readlink "$cross/$arch/capi/libgateway.so.0" || true)"
    done
    for pkg in socat nginx nginx-light libnginx-mod-stream nginx-common haproxy systemd ser2net; do
      echo "installed_kib_$pkg=$(dpkg-query -W -f '${Installed-Size}' "$pkg" 2>/dev/null || echo 0)"
    done
    echo "file_bytes_proxyd=$(stat -c %s "$proxyd")"
  } >"$f"
  port=$(free_port)
  peer_conf gatewayd-echo "$port" 0
  spawn "$gatewayd" --config "$work/gatewayd-echo/gateway.conf"
  wait_listen "$port"
  sleep 0.5
  echo "idle_gatewayd $("$loadgen" proc "$started")" >>"$f"
  stop_group "$started"
  # The floor: what a process linked with libc alone (sleep) holds resident.
  spawn sleep 60
  sleep 0.5
  echo "idle_floor $("$loadgen" proc "$started")" >>"$f"
  stop_group "$started"
  # The floor of a C++ program: one that does nothing but is linked with
  # libstdc++ (and so libm and libgcc_s), as gatewayd is, built as the
  # distribution builds (PIE, -O2).
  printf '#include <string>\n#include <unistd.h>\nint main(int, char **argv) { std::string s(argv[0]); pause(); return int(s.size()); }\n' |
    g++ -O2 -x c++ - -o "$work/floor_cxx" -Wl,--no-as-needed -lstdc++ -lm -lgcc_s
  spawn "$work/floor_cxx"
  sleep 0.5
  echo "idle_floor_cxx $("$loadgen" proc "$started")" >>"$f"
  stop_group "$started"
  # Socket activation: systemd-socket-activate holds the listening socket and
  # starts gatewayd; the client's connect is accepted by the kernel at once and
  # its echo waits for gatewayd's start-up.
  sed -i 's/^name = "bench"/name = "echo"/' "$work/gatewayd-echo/gateway.conf"
  for i in $(seq $((rounds * 3))); do
    port=$(free_port)
    sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$work/gatewayd-echo/gateway.conf"
    spawn systemd-socket-activate -l "127.0.0.1:$port" --fdname=echo "$gatewayd" --config "$work/gatewayd-echo/gateway.conf"
    echo "activation $("$loadgen" firstbyte "127.0.0.1:$port" --timeout 10)" >>"$f"
    stop_group "$started"
  done
}

# ---- system calls per request and per connection ---------------------------------------
# Counted by the kernel's syscall tracepoints (perf stat: no ptrace, so the
# peer runs at full speed), over the middle of a loadgen run, for every
# process of the peer; divided by the requests (or connections) loadgen
# carried in that window, from its rate. Noise-free where CPU times are not:
# what a peer asks of the kernel per message is the figure that bounds it.
syscall_names=(read write readv writev recvfrom sendto recvmsg sendmsg splice epoll_wait epoll_pwait epoll_ctl
  accept4 connect socket close shutdown setsockopt getsockopt getsockname getpeername fcntl ioctl timerfd_settime)
syscalls_one() { # WORKLOAD PEER -- loadgen arguments
  local workload=$1 peer=$2 lg rate window events pids name
  shift 3
  start_peer "$peer" "$echo_port"
  "$loadgen" "$1" "127.0.0.1:$peer_port" "${@:2}" --seconds "$seconds" --warmup 0 >"$work/syscalls.lg" &
  lg=$!
  window=$(awk -v s="$seconds" 'BEGIN { print s * 0.6 }')
  sleep "$(awk -v s="$seconds" 'BEGIN { print s * 0.2 }')"
  pids=$(pgrep -d, -g "$peer_pid")
  events=raw_syscalls:sys_enter
  for name in "${syscall_names[@]}"; do
    [ ! -d "/sys/kernel/tracing/events/syscalls/sys_enter_$name" ] || events+=",syscalls:sys_enter_$name"
  done
  perf stat -x, -e "$events" -p "$pids" -o "$work/syscalls.perf" -- sleep "$window" >/dev/null 2>&1 || true
  wait "$lg" || true
  stop_peer
  rate=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$work/syscalls.lg")
  echo "workload=$workload peer=$peer window_s=$window rate=${rate:-0} $(awk -F, '$3 ~ /sys_enter/ {
      n = $3; sub(/.*sys_enter_?/, "", n); if (n == "") n = "all"; printf "%s=%s ", n, $1 }' "$work/syscalls.perf")" |
    tee -a "$work/syscalls.txt" >&2
}

run_syscalls() {
  local peer
  command -v perf >/dev/null || { gw_say "no perf: system calls not counted"; return 0; }
  [ -d /sys/kernel/tracing/events/raw_syscalls ] || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
  for peer in nginx haproxy proxyd gatewayd; do
    syscalls_one pingpong "$peer" -- pingpong --clients 64 --size 64
    syscalls_one churn "$peer" -- churn --clients 16 --size 64
  done
}

# ---- perf profile of gatewayd in ping-pong 64 clients x 64 B ---------------------------
run_profile() {
  local lg record_s
  record_s=$(awk -v s="$seconds" 'BEGIN { print s * 2 }')
  start_peer gatewayd "$echo_port"
  "$loadgen" pingpong "127.0.0.1:$peer_port" --clients 64 --size 64 --seconds "$record_s" --warmup 1 >/dev/null &
  lg=$!
  sleep 0.5
  perf record -e cpu-clock -g -p "$peer_pid" -o "$work/perf.data" -- sleep "$record_s" >/dev/null 2>&1 || true
  wait "$lg" || true
  stop_peer
  # The top 15 symbols, then where the time went by object (kernel, gatewayd, libc...).
  {
    perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -15 | sed 's/[ -]*$//'
    echo
    echo "by object:"
    perf report -i "$work/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -6 | sed 's/[ -]*$//'
  } >"$work/profile.txt" || true
}

# ---- the run ----------------------------------------------------------------------------
network_text() {
  if [ "$GW_BENCH_NETNS" = private ]; then
    echo "a private network namespace (loopback only), ephemeral ports $(sysctl -n net.ipv4.ip_local_port_range | tr '\t' -)"
  else
    echo "the host's (no private namespace could be made), ephemeral ports $(sysctl -n net.ipv4.ip_local_port_range | tr '\t' -)"
  fi
}
versions() {
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "kernel: $(uname -sr)"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "gatewayd: $("$gatewayd" --version | head -1 | sed 's/^gatewayd //') ($build, $(git -C "$GW_ROOT" rev-parse --short HEAD))"
  echo "socat: $(socat -V | sed -n 's/^socat version \([^ ]*\).*/\1/p') (Debian $(dpkg-query -W -f '${Version}' socat))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///') (nginx-light $(dpkg-query -W -f '${Version}' nginx-light))"
  echo "haproxy: $(haproxy -v | head -1 | awk '{print $3}')"
  echo "systemd-socket-proxyd: systemd $(dpkg-query -W -f '${Version}' systemd)"
  echo "redis: redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2), wrk $(dpkg-query -W -f '${Version}' wrk)"
  echo "ser2net: $(dpkg-query -W -f '${Version}' ser2net)"
  echo "loadgen: g++ -std=c++17 -O2 ($(g++ --version | head -1))"
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: $argv_text"
  echo "rounds: $rounds"
  echo "seconds: $seconds"
  echo "warmup: $warmup"
  echo "quick: $quick"
  echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "network: $(network_text)"
  versions
} >>"$meta"
t0=$(date +%s)
for w in stream pingpong churn idle real serial footprint syscalls; do
  if wanted "$w"; then
    gw_say "workload $w"
    "run_$w"
  fi
done
((profile == 0)) || run_profile
{
  echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed_s: $(($(date +%s) - t0))"
} >>"$meta"
for peer in socat nginx haproxy proxyd gatewayd; do
  peer_conf "$peer" LISTEN BACKEND
  echo "peer_command_$peer: $(peer_command "$peer" LISTEN BACKEND | sed "s|$work|WORK|g")" >>"$meta"
done
mkdir -p "$out/results" "$work/configs"
for f in nginx/nginx.conf haproxy/haproxy.cfg gatewayd/gateway.conf; do
  sed "s|$work|WORK|g" "$work/$f" >"$work/configs/${f##*/}"
done
cp "$raw" "$out/results/raw.txt"
cp "$meta" "$out/results/meta.txt"
"$py" "$GW_ROOT/bench/report.py" report --work "$work" --out "$out"
gw_say "wrote $out/RESULTS.md and $out/results/ in $(($(date +%s) - t0)) s"
