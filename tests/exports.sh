#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails unless every dynamic symbol defined by libgateway.so starts with gw_
# (the version nodes of gateway.map, GW_0 ..., are absolute symbols named
# after the node: they are the only others allowed).
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $2, $3 }')
[ -n "$syms" ] || { echo "no symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^[^A] gw_' | grep -v '^A GW_[0-9][0-9.]*$' || true)
if [ -n "$bad" ]; then
    echo "symbols exported by $lib that do not start with gw_:"
    printf '%s\n' "$bad"
    exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) symbols, all gw_ (or version nodes)"
