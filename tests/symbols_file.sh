#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails unless the symbols libgateway.so exports are exactly those that
# packaging/debian/libgateway0.symbols lists, version by version (name@NODE,
# as dpkg-gensymbols writes them; a version node N is the symbol N@N): a
# symbol removed or renamed, a version dropped, or a new export the file does
# not list (which dpkg-gensymbols would only warn about) all fail here, at
# test time, not at package build. The private node GW_PRIVATE (the C++
# core, for gatewayd only; tests/exports.sh checks what it holds) is listed as
# one "(symver)GW_PRIVATE" pattern, as dpkg-gensymbols allows: its symbols are
# not an ABI and change with every release.
set -eu
lib="$1"
symbols="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# nm -D prints name@@NODE for a node's default symbol, name@NODE for an older
# one, and a node itself as an absolute (A) symbol without a version.
nm -D --defined-only "$lib" | awk 'NF >= 3 {
    name = $3
    if ($2 == "A" && name !~ /@/) name = name "@" name
    sub(/@@/, "@", name)
    print name
}' | grep -v '@GW_PRIVATE$' | LC_ALL=C sort -u >"$tmp/built"
[ -s "$tmp/built" ] || { echo "no symbols found in $lib"; exit 1; }
# Symbol lines start with a space: " name@NODE minimal-version [...]".
grep '^ ' "$symbols" | grep -v '^ (symver)GW_PRIVATE ' | awk '{ print $1 }' | LC_ALL=C sort -u >"$tmp/listed"
grep -q '^ (symver)GW_PRIVATE ' "$symbols" || { echo "$symbols does not list the private node: (symver)GW_PRIVATE"; exit 1; }
nm -D --defined-only "$lib" | grep -q '@@GW_PRIVATE$' || { echo "$lib exports nothing in GW_PRIVATE (gatewayd links it)"; exit 1; }
grep -q . "$tmp/listed" || { echo "no symbols listed in $symbols"; exit 1; }
if grep -v '@' "$tmp/listed" >"$tmp/unversioned"; then
    echo "entries of $symbols without a version node:"; cat "$tmp/unversioned"; exit 1
fi
status=0
missing=$(LC_ALL=C comm -23 "$tmp/listed" "$tmp/built")
extra=$(LC_ALL=C comm -13 "$tmp/listed" "$tmp/built")
if [ -n "$missing" ]; then
    echo "listed in $symbols but not exported by $lib (removed or renamed?):"
    printf '  %s\n' $missing
    status=1
fi
if [ -n "$extra" ]; then
    echo "exported by $lib but not listed in $symbols (add them, with the version that introduced them):"
    printf '  %s\n' $extra
    status=1
fi
[ $status = 0 ] && echo "$(wc -l <"$tmp/built") exported symbols, all listed in $(basename "$symbols")"
exit $status
