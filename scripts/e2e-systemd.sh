#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test of the Debian packages on a booted systemd.
#
#   scripts/e2e-systemd.sh [amd64|arm64|armhf] [--no-build]
#   scripts/e2e-systemd.sh ARCH --rootfs-only   only step 2's cached tarball
#           (scripts/test.sh makes it in the background while it builds)
#
# 1. builds the packages for ARCH into dist/apt (scripts/package.sh ARCH),
#    unless --no-build is given and dist/apt already has them;
# 2. makes a Debian bookworm rootfs with systemd (mmdebstrap, cached as a
#    tarball in .cache/e2e/), unpacks a fresh copy under build/e2e/ARCH;
# 3. boots it with systemd-nspawn -b (own network namespace: 127.0.0.1 is the
#    container's) and runs the test below as systemd.run=, whose exit code
#    becomes the container's:
#      the repository key comes as gateway-archive-keyring; apt refuses the
#      repository signed with another key and a package changed after signing;
#      apt install gateway from the signed file: repository dist/apt;
#      systemctl start gateway.socket; gatewayd is not running;
#      a client connects to 127.0.0.1:7000 and gets its echo;
#      gateway.service is now active, triggered by the socket, and its
#      journal shows gatewayd took the socket from systemd;
#      systemd-analyze verify is clean and security exposure <= 2.0;
#      systemctl reload works; SIGKILL: systemd restarts gatewayd on the
#      same socket, no client lost; an upgrade keeps the conffile's edits;
#      serial route: the packaged drop-in (+ a test-only DeviceAllow=char-pts)
#      in /etc/systemd/system/gateway.service.d, verify clean, exposure still
#      <= 2.0; a client waiting for a missing /dev/serial/by-id link is served
#      once tests/tools/pty_peer (the device side of a pty) creates it; bytes
#      both ways; gatewayd logs the device open and holds its UUCP lock in
#      /run/lock; stop both units;
#      apt purge gateway (+ autoremove) leaves no file behind.
# arm64 and armhf boot a rootfs of their own architecture under
# qemu-user-static through binfmt_misc (slower: a few minutes), installing
# that architecture's packages.
#
# Missing host tools are installed with apt-get. The Debian mirror is taken
# from the host's apt configuration. Exit code 0 means every check passed.
set -euo pipefail

arch=amd64
build=1
rootfs_only=0
for a in "$@"; do
  case $a in
    amd64|arm64|armhf) arch=$a ;;
    --no-build) build=0 ;;
    --rootfs-only) rootfs_only=1 ;;
    *) echo "usage: $0 [amd64|arm64|armhf] [--no-build | --rootfs-only]" >&2; exit 2 ;;
  esac
done

source "$(dirname "$0")/lib/common.sh"
root=$GW_ROOT
cache=${GW_CACHE_DIR:-$root/.cache}/e2e
work=$root/build/e2e/$arch
suite=bookworm
host_arch=$(dpkg --print-architecture)
t_start=$(date +%s)
log() { printf '== e2e %s [%ss] %s\n' "$arch" "$(( $(date +%s) - t_start ))" "$*" >&2; }

# ---- host tools ---------------------------------------------------------------
need=("${GW_E2E_PACKAGES[@]}")
[ "$arch" = "$host_arch" ] || need+=("${GW_FOREIGN_PACKAGES[@]}")
gw_need_packages "${need[@]}"

if [ "$arch" != "$host_arch" ]; then
  # Foreign binaries (mmdebstrap's maintainer scripts, the booted container)
  # run through binfmt_misc and qemu-user-static.
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  case $arch in arm64) q=qemu-aarch64 ;; armhf) q=qemu-arm ;; esac
  if [ ! -e /proc/sys/fs/binfmt_misc/$q ]; then
    update-binfmts --enable $q >/dev/null 2>&1 || update-binfmts --import $q >/dev/null 2>&1 || true
  fi
  [ -e /proc/sys/fs/binfmt_misc/$q ] || { echo "e2e: cannot register $q with binfmt_misc" >&2; exit 1; }
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/$q ||
    { echo "e2e: binfmt $q lacks the F (fix binary) flag needed inside the container" >&2; exit 1; }
fi

# ---- rootfs (cached tarball) ----------------------------------------------------
# Made once per architecture and stamp; --rootfs-only stops after it.
tarball=$cache/rootfs-$suite-$arch.tar
ensure_rootfs() {
  local pkgs=systemd,systemd-sysv,dbus,libstdc++6,apt,man-db
  local stamp="$suite $arch $pkgs v2" mirror
  [ -f "$tarball" ] && [ "$(cat "$tarball.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  mirror=$(gw_debian_mirror "$suite")
  log "creating the $arch rootfs (cached in $tarball)"
  mkdir -p "$cache"
  # The image gets no apt sources of its own: it installs from dist/apt only.
  mmdebstrap --quiet --format=tar --variant=minbase --arch="$arch" --include="$pkgs" \
    --customize-hook='rm -f "$1"/etc/apt/sources.list; : > "$1"/etc/machine-id' \
    "$suite" "$cache/tmp-$arch.tar" "deb $mirror $suite main" >&2
  mv "$cache/tmp-$arch.tar" "$tarball"
  echo "$stamp" > "$tarball.stamp"
}
if [ $rootfs_only = 1 ]; then
  ensure_rootfs
  exit 0
fi

# ---- the serial route's device side ------------------------------------------
# The rootfs has no socat: the program on the pty's other side is
# tests/tools/pty_peer from the CMake build of ARCH (scripts/test.sh builds
# it in the native and cross stages, before packages and e2e).
case $arch in
  "$host_arch") preset=native ;;
  *) preset=$arch ;;
esac
peer=$root/build/$preset/tests/pty_peer
if [ ! -x "$peer" ]; then
  echo "e2e: no $peer: build it first with" >&2
  [ "$preset" = native ] || echo "  scripts/sysroot.sh $arch &&" >&2
  echo "  cmake --preset $preset && cmake --build --preset $preset --target pty_peer" >&2
  exit 1
fi
case $arch in amd64) want='Advanced Micro Devices X86-64' ;; arm64) want=AArch64 ;; armhf) want=ARM ;; esac
machine=$(LC_ALL=C readelf -h "$peer" | sed -n 's/^ *Machine: *//p')
[ "$machine" = "$want" ] || { echo "e2e: $peer is '$machine', expected '$want' for $arch" >&2; exit 1; }

# ---- packages -------------------------------------------------------------------
version=$(sed -n 's/^project(gateway VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
if [ $build = 1 ] || [ ! -f "$root/dist/apt/gateway_${version}_${arch}.deb" ]; then
  log "building packages"
  "$root/scripts/package.sh" "$arch"
fi
[ -f "$root/dist/apt/Packages" ] || { echo "e2e: no dist/apt/Packages" >&2; exit 1; }

# ---- the repositories the board sees -------------------------------------------
# make_repos DIR writes, under DIR:
#   gateway-apt           dist/apt as package.sh signed it
#   gateway-apt-next      the same with gateway repacked as VERSION+e2e1, signed
#                         with the same key: the upgrade
#   gateway-apt-otherkey  dist/apt signed with a fresh key the board never saw
#   gateway-apt-tampered  dist/apt with one byte of the gateway package changed
#                         after signing
make_repos() {
  local srv=$1 deb tmp
  mkdir -p "$srv"
  cp -r "$root/dist/apt" "$srv/gateway-apt"

  cp -r "$root/dist/apt" "$srv/gateway-apt-next"
  deb=$(ls "$srv"/gateway-apt-next/gateway_*_"$arch".deb)
  tmp=$(mktemp -d)
  dpkg-deb -R "$deb" "$tmp/pkg"
  sed -i 's/^Version: .*/&+e2e1/' "$tmp/pkg/DEBIAN/control"
  rm "$deb"
  dpkg-deb -b "$tmp/pkg" "$srv/gateway-apt-next/gateway_${version}+e2e1_$arch.deb" >/dev/null
  rm -rf "$tmp"
  "$root/scripts/apt-repo.sh" "$srv/gateway-apt-next" 2>/dev/null

  cp -r "$root/dist/apt" "$srv/gateway-apt-otherkey"
  tmp=$(mktemp -d)
  GNUPGHOME=$tmp gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key "not the gateway archive key <other@invalid>" ed25519 sign 1d
  GW_APT_KEY=$(GNUPGHOME=$tmp gpg --batch --armor --export-secret-keys) \
    "$root/scripts/apt-repo.sh" "$srv/gateway-apt-otherkey" 2>/dev/null
  GNUPGHOME=$tmp gpgconf --kill all >/dev/null 2>&1 || true
  rm -rf "$tmp"
  # The board must judge by its own key, not by one the repository offers.
  rm -f "$srv/gateway-apt-otherkey/gateway-archive-keyring.gpg"

  cp -r "$root/dist/apt" "$srv/gateway-apt-tampered"
  deb=$(ls "$srv"/gateway-apt-tampered/gateway_*_"$arch".deb)
  local middle=$(( $(stat -c %s "$deb") / 2 ))
  local byte
  byte=$(od -An -tu1 -j "$middle" -N1 "$deb" | tr -d ' ')
  printf "$(printf '\\%03o' $(( (byte + 1) % 256 )))" | dd of="$deb" bs=1 seek="$middle" conv=notrunc status=none
}

ensure_rootfs
rm -rf "$work"
mkdir -p "$work/root"
tar -C "$work/root" -xf "$tarball"
make_repos "$work/root/srv"
cp "$root"/dist/apt/gateway-archive-keyring_*_all.deb "$work/root/root/"
install -m 0755 "$root/scripts/e2e-systemd-inside.sh" "$work/root/root/e2e.sh"
install -m 0755 "$peer" "$work/root/root/pty_peer"

# ---- boot and test ------------------------------------------------------------------
timeout_s=${GW_E2E_TIMEOUT:-$([ "$arch" = "$host_arch" ] && echo 180 || echo 1500)}
log "booting the container (timeout ${timeout_s}s)"
rc=0
timeout --foreground -k 10 "$timeout_s" \
  systemd-nspawn --quiet --register=no --keep-unit --private-network \
    --machine="gw-e2e-$arch" -D "$work/root" \
    -b systemd.firstboot=off systemd.run=/root/e2e.sh \
    systemd.run_success_action=exit systemd.run_failure_action=exit \
    > "$work/console.log" 2>&1 || rc=$?
if [ -f "$work/root/root/e2e.log" ]; then cat "$work/root/root/e2e.log"; else cat "$work/console.log"; fi
if [ $rc -eq 0 ] && grep -q '^E2E: PASS' "$work/root/root/e2e.log" 2>/dev/null; then
  log "PASS"
  [ "${GW_E2E_KEEP:-0}" = 1 ] || rm -rf "$work"
  exit 0
fi
log "FAIL (container exit code $rc; console: $work/console.log)"
exit 1
