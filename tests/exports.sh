#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails unless every dynamic symbol defined by libgateway.so starts with gw_,
# except the C++ core's, which gatewayd links: those must be in the private
# version node GW_PRIVATE and in namespace gw (mangled _ZN2gw..., _ZNK2gw...,
# and the typeinfo, vtables and thunks of gw:: classes). The version nodes of
# gateway.map, GW_0 ..., are absolute symbols named after the node: they are
# the only others allowed. Nothing else (std::, toml::, a static library's
# internals) may leak.
#
# With gatewayd as a second argument, GW_PRIVATE must also be no more than
# what gatewayd references: each private name exported is a long dynamic
# symbol, and keeps its code alive against --gc-sections.
set -eu
lib="$1"
daemon="${2:-}"
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
if [ -n "$daemon" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    printf '%s\n' "$syms" | sed -n 's/^[^A] \([^@]*\)@@GW_PRIVATE$/\1/p' | LC_ALL=C sort -u >"$tmp/exported"
    nm -D --undefined-only "$daemon" | awk '{ print $2 }' | sed -n 's/@GW_PRIVATE$//p' | LC_ALL=C sort -u >"$tmp/used"
    # A few may be referenced only from code that the linker then dropped from
    # gatewayd; a handful is that, the whole namespace is not.
    unused=$(LC_ALL=C comm -23 "$tmp/exported" "$tmp/used" | wc -l)
    if [ "$unused" -gt 16 ]; then
        echo "$lib exports $unused gw:: symbols in GW_PRIVATE that $daemon does not reference, e.g.:"
        LC_ALL=C comm -23 "$tmp/exported" "$tmp/used" | head -5
        exit 1
    fi
    echo "GW_PRIVATE: $(wc -l <"$tmp/exported") exported, $unused of them not referenced by gatewayd"
fi
