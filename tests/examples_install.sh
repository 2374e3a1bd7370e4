#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs the project to a temporary prefix, builds examples/ from there with
# pkg-config only (as firmware would), and runs both examples briefly.
#   examples_install.sh BUILD_DIR SOURCE_DIR CC "CFLAGS"
# CFLAGS are the project's (e.g. the sanitizer flags of the asan preset),
# needed to link against an instrumented library.
set -euo pipefail
build=$1 src=$2 cc=$3 cflags=${4:-}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prefix=$tmp/prefix
for component in runtime dev; do
    cmake --install "$build" --prefix "$prefix" --component "$component" >/dev/null
done
pc=$(find "$prefix" -name gateway.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no gateway.pc installed under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pc")
# the .pc file must describe the prefix it was installed to
[ "$(pkg-config --variable=prefix gateway)" = "$prefix" ] ||
    fail "gateway.pc says prefix=$(pkg-config --variable=prefix gateway), installed to $prefix"
libdir=$(pkg-config --variable=libdir gateway)
[ -e "$libdir/libgateway.so.0" ] || fail "libdir=$libdir has no libgateway.so.0"
[ -e "$(pkg-config --variable=includedir gateway)/gateway/gateway.h" ] || fail "includedir has no gateway/gateway.h"

cp -r "$src/examples" "$tmp/examples"
make -s -C "$tmp/examples" CC="$cc" CFLAGS="-O1 -g -Wall -Wextra -Werror $cflags" LDFLAGS="$cflags" ||
    fail "examples do not build with pkg-config"

export LD_LIBRARY_PATH=$libdir

# start EXE ARGS...: runs it in the background, sets pid and port
start() {
    "$@" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    port=
    for _ in $(seq 50); do
        port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$tmp/out")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$tmp/err" >&2
    fail "$1 did not start"
}

# stop: SIGTERM, must exit 0 within 5 s
stop() {
    kill -TERM "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "did not stop on SIGTERM"
    wait "$pid" || fail "exited with status $?: $(cat "$tmp/err")"
    pid=
}

# sensor_server: periodic broadcasts, and an answer to "get"
start "$tmp/examples/sensor_server" 127.0.0.1:0 100
exec 3<>"/dev/tcp/127.0.0.1/$port"
IFS= read -r -t 5 line <&3 || fail "no broadcast from sensor_server"
[[ $line == "sensor temp="* ]] || fail "unexpected broadcast: '$line'"
printf 'get\n' >&3
answer=
for _ in $(seq 20); do
    IFS= read -r -t 5 line <&3 || break
    if [[ $line == temp=* ]]; then answer=$line; break; fi
done
[[ $answer =~ ^temp=[0-9]+\.[0-9][0-9]$ ]] || fail "no answer to get (last line: '$line')"
exec 3<&-
stop
echo "sensor_server: $answer"

# poll_embed: upper-casing echo in the example's own poll loop
start "$tmp/examples/poll_embed" 127.0.0.1:0
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'hello embed\n' >&3
IFS= read -r -t 5 line <&3 || fail "no echo from poll_embed"
[ "$line" = "HELLO EMBED" ] || fail "poll_embed echoed '$line'"
exec 3<&-
stop
echo "poll_embed: $line"
