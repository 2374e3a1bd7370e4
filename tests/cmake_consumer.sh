#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs the project to a temporary prefix and builds/runs a tiny project
# that uses find_package(gateway) and links gateway::gateway.
#   cmake_consumer.sh BUILD_DIR SOURCE_DIR CC "CFLAGS"
set -euo pipefail
build=$1 src=$2 cc=$3 cflags=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for component in runtime dev; do
    cmake --install "$build" --prefix "$tmp/prefix" --component "$component" >/dev/null
done
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src/tests/cmake_consumer" -B "$tmp/build" "${gen[@]}" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" >"$tmp/configure.log" ||
    { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/build/consumer"
