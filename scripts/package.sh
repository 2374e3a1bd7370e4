#!/bin/bash
# SPDX-License-Identifier: MIT
# Build the Debian packages of gateway.
#
#   scripts/package.sh [amd64|arm64|armhf|all]...     (default: amd64)
#
# For each architecture, writes to dist/:
#   gateway_<ver>_<arch>.deb         gatewayd, /etc/gateway/gateway.conf, units, man pages,
#                                    the serial drop-in in /usr/share/gateway
#   libgateway0_<ver>_<arch>.deb     libgateway.so.0 (Multi-Arch: same)
#   libgateway-dev_<ver>_<arch>.deb  header, gateway.pc, CMake package
# runs lintian on them (fails on any error or warning), and refreshes the signed
# flat apt repository dist/apt/ with scripts/apt-repo.sh (Packages, Release,
# InRelease, Release.gpg, the public key gateway-archive-keyring.gpg and the
# package gateway-archive-keyring_VERSION_all.deb that installs it):
#   deb [signed-by=/usr/share/keyrings/gateway-archive-keyring.gpg] file:/path/to/dist/apt ./
# The signing key comes from GW_APT_KEY (see scripts/apt-repo.sh); without it a
# throw-away test key is used, and the script says so.
#
# The packaging is debhelper (packaging/debian); ARM packages are cross built
# with the CMake toolchain files against a bookworm sysroot (scripts/sysroot.sh)
# and their Depends are computed by dpkg-shlibdeps from that sysroot.
# Host tools that are missing are installed with apt-get.
#
# Environment: GW_SRCDIR (source tree to package, default: this repository),
# GW_SKIP_LINTIAN=1 (skip lintian), DEB_BUILD_OPTIONS (passed on),
# GW_APT_KEY / GW_APT_KEY_ID (the repository's signing key).
set -euo pipefail

source "$(dirname "$0")/lib/common.sh"
root=$GW_ROOT
src=${GW_SRCDIR:-$root}
dist=$root/dist
work=$root/build/deb

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64)
if [ "${arches[0]}" = all ]; then arches=(amd64 arm64 armhf); fi
build_arch=$(dpkg --print-architecture)

log() { printf '== %s\n' "$*" >&2; }

# ---- host tools -------------------------------------------------------------
tools=(dpkg-dev debhelper cmake ninja-build pkg-config lintian apt-utils fakeroot file)
for a in "${arches[@]}"; do
  case $a in
    "$build_arch") tools+=(g++ libtomlplusplus-dev) ;;
    arm64|armhf) tools+=("crossbuild-essential-$a" mmdebstrap) ;;
    *) echo "package.sh: unknown architecture '$a' (amd64, arm64, armhf, all)" >&2; exit 2 ;;
  esac
done
gw_need_packages "${tools[@]}"

# ---- version: CMakeLists.txt is the single source ----------------------------
version=$(sed -n 's/^project(gateway VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || { echo "package.sh: no version in $src/CMakeLists.txt" >&2; exit 1; }
chlog_version=$(dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Version)

mkdir -p "$dist"
for arch in "${arches[@]}"; do
  t0=$(date +%s)
  sysroot=
  if [ "$arch" != "$build_arch" ]; then
    sysroot=$("$root/scripts/sysroot.sh" "$arch")
  fi

  # Staging tree: debian/ plus the units, man pages (the source is GW_SRCDIR).
  stage=$work/$arch/gateway-$version
  rm -rf "$work/$arch"
  mkdir -p "$stage"
  cp -a "$root/packaging/debian" "$stage/debian"
  cp "$root/packaging/gateway.socket" "$root/packaging/gateway.service" \
     "$root/packaging/gatewayd.8" "$root/packaging/gateway.conf.5" "$stage/debian/"
  # Drop-ins the admin copies to /etc/systemd/system (gateway.install puts
  # them in /usr/share/gateway: not /usr/share/doc, which boards often strip).
  cp -r "$root/packaging/gateway.service.d" "$stage/debian/dropins"
  if [ "$chlog_version" != "$version" ]; then
    # CMakeLists.txt was bumped without a changelog entry: say so in the package.
    { printf 'gateway (%s) unstable; urgency=medium\n\n' "$version"
      printf '  * Snapshot of upstream %s (packaging/debian/changelog has %s).\n\n' "$version" "$chlog_version"
      printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Maintainer)" "$(date -R)"
      cat "$root/packaging/debian/changelog"; } > "$stage/debian/changelog"
  fi

  log "building $arch packages of gateway $version"
  (cd "$stage" &&
   GW_SRCDIR=$src GW_SYSROOT=$sysroot \
   DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }noddebs parallel=$(nproc)" \
   dpkg-buildpackage -a"$arch" -d -b -uc -us --no-sign ) > "$work/$arch/build.log" 2>&1 || {
    tail -40 "$work/$arch/build.log" >&2
    echo "package.sh: $arch build failed, full log: $work/$arch/build.log" >&2
    exit 1
  }

  debs=()
  for p in gateway libgateway0 libgateway-dev; do
    f=${p}_${version}_${arch}.deb
    mv "$work/$arch/$f" "$dist/$f"
    debs+=("$dist/$f")
  done
  # The binaries must be of the target's machine type.
  tmpx=$(mktemp -d)
  dpkg-deb -x "$dist/gateway_${version}_${arch}.deb" "$tmpx"
  machine=$(LC_ALL=C readelf -h "$tmpx/usr/sbin/gatewayd" | sed -n 's/^ *Machine: *//p')
  rm -rf "$tmpx"
  case $arch in amd64) want='Advanced Micro Devices X86-64' ;; arm64) want=AArch64 ;; armhf) want=ARM ;; esac
  [ "$machine" = "$want" ] || { echo "package.sh: gatewayd is '$machine', expected '$want'" >&2; exit 1; }

  if [ "${GW_SKIP_LINTIAN:-0}" != 1 ]; then
    log "lintian ($arch)"
    lintian --fail-on error,warning "${debs[@]}" >&2
  fi
  log "$arch done in $(( $(date +%s) - t0 ))s: ${debs[*]##*/}"
done

# ---- signed flat apt repository ----------------------------------------------
mkdir -p "$dist/apt"
rm -f "$dist/apt"/*.deb
cp "$dist"/*_"$version"_*.deb "$dist/apt/"
GW_KEYRING_PACKAGE=1 "$root/scripts/apt-repo.sh" "$dist/apt"
cp "$dist"/apt/gateway-archive-keyring_*_all.deb "$dist/"
log "apt repository: $dist/apt (deb [signed-by=/usr/share/keyrings/gateway-archive-keyring.gpg] file:$dist/apt ./)"
