#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails unless every dynamic symbol defined by libgateway.so starts with gw_,
# except the C++ core's, which gatewayd links: those must be in the private
# version node GW_PRIVATE and in namespace gw (mangled _ZN2gw..., _ZNK2gw...,
# and the typeinfo, vtables and thunks of gw:: classes). The version nodes of
# gateway.map, GW_0 ..., are absolute symbols named after the node: they are
# the only others allowed. Nothing else (std::, toml::, a static library's
# internals) may leak.
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $2, $3 }')
[ -n "$syms" ] || { echo "no symbols found in $lib"; exit 1; }
private='^[^A] _Z(N|NK|TIN|TSN|TVN|Thn[0-9]*_N)2gw[^@]*@@GW_PRIVATE$'
bad=$(printf '%s\n' "$syms" | grep -v '^[^A] gw_[^@]*@@*GW_[0-9]' | grep -Ev "$private" |
    grep -v '^A GW_[0-9][0-9.]*$' | grep -v '^A GW_PRIVATE$' || true)
if [ -n "$bad" ]; then
    echo "symbols exported by $lib that are neither gw_ in a public node nor gw:: in GW_PRIVATE:"
    printf '%s\n' "$bad"
    exit 1
fi
echo "$(printf '%s\n' "$syms" | grep -vc GW_PRIVATE) public symbols, all gw_ (or version nodes); $(printf '%s\n' "$syms" | grep -c '@@GW_PRIVATE$') private gw:: ones"
