#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds, and runs every test.
#
#   scripts/test.sh            every stage, as CI runs it
#   scripts/test.sh STAGE...   only these stages
#
# Stages:
#   native  host build (RelWithDebInfo, -Werror) and its whole CTest suite
#   asan    the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan    the same suite under ThreadSanitizer (cross-thread stop, post, wake-up)
#   valgrind  the gatewayd suites with every gatewayd under valgrind memcheck
#           (no error, no definite or indirect leak; scripts/valgrind.sh)
#   fuzz    every libFuzzer target of tests/fuzz for GW_FUZZ_SECONDS (20) each,
#           from its committed corpus (scripts/fuzz.sh; a long run: fuzz.sh -t 3600)
#   nosystemd  host build without libsystemd (GW_WITH_SYSTEMD=OFF, preset
#           nosystemd): the whole suite, systemd tests checking the fallbacks
#   cross   arm64 and armhf cross builds, their suites run under qemu-user
#   packages  the .deb packages for amd64, arm64 and armhf, lintian-clean
#           (no error, no warning), and the flat apt repository in dist/apt
#   e2e     the amd64 .deb packages installed and started on a booted systemd
#   e2e-arm64  the same with the arm64 packages on an arm64 rootfs booted
#           under qemu-user-static (binfmt_misc); a few minutes from cold
#   e2e-armhf  the same for armhf
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$GW_ROOT"

stages=("$@")
((${#stages[@]})) || stages=(native asan tsan nosystemd valgrind fuzz cross packages e2e e2e-arm64 e2e-armhf)
jobs=$(nproc)
packaged=

run_preset() {
  local preset=$1
  gw_say "[$preset] configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
}

gw_need_packages "${GW_BUILD_PACKAGES[@]}"
for stage in "${stages[@]}"; do
  start=$SECONDS
  case $stage in
    native | asan | tsan | nosystemd) run_preset "$stage" ;;
    valgrind) gw_need_packages valgrind && scripts/valgrind.sh ;;
    fuzz) scripts/fuzz.sh -t "${GW_FUZZ_SECONDS:-20}" ;;
    cross)
      gw_need_packages crossbuild-essential-arm64 crossbuild-essential-armhf qemu-user mmdebstrap debian-archive-keyring
      for arch in arm64 armhf; do
        scripts/sysroot.sh "$arch" >/dev/null
        run_preset "$arch"
      done
      ;;
    packages) scripts/package.sh all && packaged=1 ;;
    # The packages stage of this same run built them: test those.
    e2e) scripts/e2e-systemd.sh amd64 ${packaged:+--no-build} ;;
    e2e-arm64) scripts/e2e-systemd.sh arm64 ${packaged:+--no-build} ;;
    e2e-armhf) scripts/e2e-systemd.sh armhf ${packaged:+--no-build} ;;
    *) gw_die "unknown stage '$stage' (native, asan, tsan, nosystemd, valgrind, fuzz, cross, packages, e2e, e2e-arm64, e2e-armhf)" ;;
  esac
  gw_say "[$stage] passed in $((SECONDS - start)) s"
done
gw_say "all stages passed: ${stages[*]}"
