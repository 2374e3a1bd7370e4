#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs a program linked like one built against gateway 0.1.0 (unversioned
# references, tests/abi/stub_0_1.c) against today's libgateway.so.0, and
# checks first that the setup is what it claims to be.
#   $1 the program, $2 the stub library, $3 the directory of the real library
set -eu
prog="$1" stub="$2" libdir="$3"
# The stub, like 0.1.0, defines no symbol versions ...
if readelf -V --wide "$stub" | grep -q 'Version definition'; then
    echo "the stub $stub has symbol versions: it does not stand for 0.1.0"; exit 1
fi
# ... so the program's references to libgateway are unversioned.
if readelf -V --wide "$prog" | grep -q 'File: libgateway'; then
    echo "$prog requires versions of libgateway: it does not stand for a 0.1.0 program"; exit 1
fi
# Today's library: the compat functions are GW_0, the first node (index 2),
# to which ld.so binds unversioned references.
readelf -V --wide "$libdir/libgateway.so.0" | grep -q 'Index: 2 .*Name: GW_0$' || {
    echo "GW_0 is not version index 2 of $libdir/libgateway.so.0"; exit 1; }
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$prog"
