#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails unless every dynamic symbol defined by libgateway.so starts with gw_.
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }')
[ -n "$syms" ] || { echo "no symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^gw_' || true)
if [ -n "$bad" ]; then
    echo "symbols exported by $lib that do not start with gw_:"
    printf '%s\n' "$bad"
    exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) symbols, all gw_"
