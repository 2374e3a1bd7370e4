#!/bin/bash
# SPDX-License-Identifier: MIT
# Build (or reuse) a Debian bookworm sysroot for cross-compiling gateway.
#
#   scripts/sysroot.sh arm64|armhf      -> prints the sysroot path
#
# The sysroot lives in .cache/sysroot/<arch> (gitignored). It is made with
# mmdebstrap --variant=extract from target-architecture packages, without
# touching the host's dpkg (multiarch is not used). The mirror is taken from
# the host's apt configuration at run time. A DEBIAN/ directory with the
# concatenated shlibs and symbols control files of every extracted package is
# added so dpkg-shlibdeps (scripts/package.sh) can compute Depends for ARM
# binaries: it treats the sysroot as a package build tree (-S).
#
# It also makes sure target programs can be executed directly (as the test
# suites do when they start gatewayd or build and run the examples): as root,
# it installs qemu-user-static and registers it with binfmt_misc (mounting
# /proc/sys/fs/binfmt_misc if needed). The test presets set QEMU_LD_PREFIX to
# the sysroot so those programs find their loader and libraries.
# GW_NO_BINFMT=1 skips that step.
set -euo pipefail

arch=${1:?usage: $0 arm64|armhf}
case $arch in arm64|armhf) ;; *) echo "unsupported arch: $arch" >&2; exit 2 ;; esac

source "$(dirname "$0")/lib/common.sh"
root=$GW_ROOT
cache=${GW_CACHE_DIR:-$root/.cache}
dir=$cache/sysroot/$arch
suite=bookworm
pkgs=libc6-dev,libstdc++-12-dev,libcmocka-dev,libtomlplusplus-dev,libmodbus-dev
stamp="$suite $pkgs v4"

# Register qemu-user-static for the target with binfmt_misc (best effort).
ensure_binfmt() {
  [ "${GW_NO_BINFMT:-0}" = 1 ] && return 0
  local q; case $arch in arm64) q=qemu-aarch64 ;; armhf) q=qemu-arm ;; esac
  [ -e /proc/sys/fs/binfmt_misc/$q ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "sysroot.sh: warning: $q is not registered with binfmt_misc (run as root once): suites that start target programs will fail" >&2
    return 0
  fi
  gw_need_packages qemu-user-static binfmt-support
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  update-binfmts --enable $q >/dev/null 2>&1 || update-binfmts --import $q >/dev/null 2>&1 || true
  [ -e /proc/sys/fs/binfmt_misc/$q ] ||
    echo "sysroot.sh: warning: could not register $q with binfmt_misc: suites that start target programs will fail" >&2
}

if [ -f "$dir/.gw-sysroot" ] && [ "$(cat "$dir/.gw-sysroot")" = "$stamp" ]; then
  ensure_binfmt
  echo "$dir"; exit 0
fi

gw_need_packages mmdebstrap debian-archive-keyring

mirror=$(gw_debian_mirror "$suite")

rm -rf "$dir" "$dir.tmp"
mkdir -p "$(dirname "$dir")"
echo "sysroot.sh: creating $arch sysroot in $dir" >&2
mmdebstrap --quiet --variant=extract --arch="$arch" --include="$pkgs" \
  --skip=download/empty --skip=cleanup/apt/cache \
  "$suite" "$dir.tmp" "deb $mirror $suite main" >&2

# shlibs/symbols of every extracted package, as if the sysroot were one
# package being built (see dpkg-shlibdeps -S).
mkdir -p "$dir.tmp/DEBIAN"
: > "$dir.tmp/DEBIAN/shlibs"
: > "$dir.tmp/DEBIAN/symbols"
tmp=$(mktemp -d)
for deb in "$dir.tmp"/var/cache/apt/archives/*.deb; do
  rm -rf "$tmp/c"; mkdir "$tmp/c"
  dpkg-deb --control "$deb" "$tmp/c"
  [ -f "$tmp/c/shlibs" ] && cat "$tmp/c/shlibs" >> "$dir.tmp/DEBIAN/shlibs"
  [ -f "$tmp/c/symbols" ] && cat "$tmp/c/symbols" >> "$dir.tmp/DEBIAN/symbols"
done
rm -rf "$tmp" "$dir.tmp"/var/cache/apt/archives/*.deb

# Absolute symlinks (e.g. usr/lib/<triplet>/libfoo.so -> /lib/...) would point
# at the host; make them relative so they resolve inside the sysroot.
find "$dir.tmp" -type l -lname '/*' | while read -r l; do
  t=$(readlink "$l")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$dir.tmp$t")" "$l"
done

# qemu-user's -L looks up every path in the sysroot first. The extracted /dev
# holds a ptmx node whose devpts sibling is an empty directory, so a target
# program's posix_openpt() would fail there (and /dev/pts/N would not be
# found): a sysroot needs no device nodes, and without them qemu uses the
# host's /dev.
rm -rf "$dir.tmp/dev"

echo "$stamp" > "$dir.tmp/.gw-sysroot"
mv "$dir.tmp" "$dir"
ensure_binfmt
echo "$dir"
