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
#           (no error, no definite or indirect leak; scripts/valgrind.sh on
#           the native stage's build, which has the same flags)
#   fuzz    every libFuzzer target of tests/fuzz for GW_FUZZ_SECONDS (20) each,
#           from its committed corpus, one target per core at a time
#           (scripts/fuzz.sh; a long run: fuzz.sh -t 3600)
#   nosystemd  host build without systemd support (GW_WITH_SYSTEMD=OFF, preset
#           nosystemd): the whole suite, systemd tests checking the fallbacks
#   cross   arm64 and armhf cross builds, their suites run under qemu-user
#   packages  the .deb packages for amd64, arm64 and armhf, lintian-clean
#           (no error, no warning), and the flat apt repository in dist/apt
#   e2e     the amd64 .deb packages installed and started on a booted systemd
#   e2e-arm64  the same with the arm64 packages on an arm64 rootfs booted
#           under qemu-user-static (binfmt_misc); a few minutes from cold
#   e2e-armhf  the same for armhf
#
# Structure: the foreground runs the stages one after the other, each printing
# "[stage] passed in N s". Work that waits on the network or on qemu rather
# than on the compilers is started first, in the background: the arm64 and
# armhf sysroots (scripts/sysroot.sh) and the e2e rootfs tarballs
# (scripts/e2e-systemd.sh ARCH --rootfs-only), only those the chosen stages
# need. One background job makes them one after the other (never two
# mmdebstrap runs at once), under nice and ionice so the compilers keep
# priority, with GW_NO_APT=1: every package it needs is installed before it
# starts, so it never races the foreground's apt-get for the dpkg lock
# (mmdebstrap itself uses apt and dpkg inside the new root only). Each item
# logs to build/prefetch/ITEM.log and leaves its exit code in ITEM.rc; the
# stage that needs an item waits for it, and fails with its log if it failed.
# The background job is killed when this script exits early.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$GW_ROOT"

stages=("$@")
((${#stages[@]})) || stages=(native asan tsan nosystemd valgrind fuzz cross packages e2e e2e-arm64 e2e-armhf)
jobs=$(nproc)
packaged=

# ---- background prefetch ------------------------------------------------------
prefetch=$GW_ROOT/build/prefetch
prefetch_pid=
# Every item, in the order the stages need them.
prefetch_all=(sysroot-arm64 sysroot-armhf rootfs-amd64 rootfs-arm64 rootfs-armhf)

# Prints the prefetch items STAGE needs, one a line.
stage_needs() {
  case $1 in
    cross | packages) printf '%s\n' sysroot-arm64 sysroot-armhf ;;
    e2e) echo rootfs-amd64 ;;
    e2e-arm64 | e2e-armhf) printf '%s\n' "sysroot-${1#e2e-}" "rootfs-${1#e2e-}" ;;
  esac
}

# Makes ITEM (in the cache the stages use, where it is kept between runs).
prefetch_make() {
  case $1 in
    sysroot-*) scripts/sysroot.sh "${1#sysroot-}" ;;
    rootfs-*) scripts/e2e-systemd.sh "${1#rootfs-}" --rootfs-only ;;
  esac
}

# Starts the background job making ITEM...; returns at once. The job is the
# leader of its own process group (set -m) so prefetch_stop reaches mmdebstrap.
prefetch_start() {
  rm -rf "$prefetch"
  mkdir -p "$prefetch"
  gw_say "[prefetch] in the background: $* (logs in ${prefetch#"$GW_ROOT"/})"
  set -m
  (
    export GW_NO_APT=1
    # Priority is a wish, not a need: a host that refuses it still runs the job.
    renice -n 10 -p "$BASHPID" >/dev/null 2>&1 || true
    ionice -c 2 -n 7 -p "$BASHPID" >/dev/null 2>&1 || true
    for item; do
      t0=$SECONDS rc=0
      prefetch_make "$item" </dev/null >"$prefetch/$item.log" 2>&1 || rc=$?
      echo "$((SECONDS - t0))" >"$prefetch/$item.seconds"
      echo "$rc" >"$prefetch/$item.rc.tmp" && mv "$prefetch/$item.rc.tmp" "$prefetch/$item.rc"
    done
  ) &
  prefetch_pid=$!
  set +m
}

# Waits until every ITEM... is made; shows the log of one that failed and dies.
prefetch_wait() {
  local item rc t0
  for item; do
    t0=$SECONDS
    while [ ! -f "$prefetch/$item.rc" ]; do
      kill -0 "$prefetch_pid" 2>/dev/null || [ -f "$prefetch/$item.rc" ] ||
        gw_die "[prefetch] the background job ended before making $item (log: $prefetch/$item.log)"
      sleep 1
    done
    rc=$(cat "$prefetch/$item.rc")
    if [ "$rc" != 0 ]; then
      cat "$prefetch/$item.log" >&2
      gw_die "[prefetch] $item failed with exit code $rc (its log is above and in $prefetch/$item.log)"
    fi
    gw_say "[prefetch] $item made in $(cat "$prefetch/$item.seconds") s in the background; waited $((SECONDS - t0)) s for it"
  done
}

# Ends the background job and its children (the EXIT trap: a stage failed or
# the run was interrupted; after a full run it has already ended).
prefetch_stop() {
  [ -n "$prefetch_pid" ] && kill -0 "$prefetch_pid" 2>/dev/null && kill -- "-$prefetch_pid" 2>/dev/null
  return 0
}

run_preset() {
  local preset=$1
  gw_say "[$preset] configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
}

# The prefetch items of the chosen stages, and what they need installed.
mapfile -t wanted < <(for stage in "${stages[@]}"; do stage_needs "$stage"; done)
items=()
for item in "${prefetch_all[@]}"; do
  [[ " ${wanted[*]} " == *" $item "* ]] && items+=("$item")
done
host_packages=("${GW_BUILD_PACKAGES[@]}")
((${#items[@]})) && host_packages+=("${GW_E2E_PACKAGES[@]}")
[[ " ${items[*]} " == *-arm* ]] && host_packages+=("${GW_FOREIGN_PACKAGES[@]}")
gw_need_packages "${host_packages[@]}"
trap prefetch_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
((${#items[@]} == 0)) || prefetch_start "${items[@]}"

for stage in "${stages[@]}"; do
  start=$SECONDS
  mapfile -t needs < <(stage_needs "$stage")
  ((${#needs[@]} == 0)) || prefetch_wait "${needs[@]}"
  case $stage in
    native | asan | tsan | nosystemd) run_preset "$stage" ;;
    # The native build has valgrind.sh's own flags (RelWithDebInfo, no
    # sanitizers): testing that tree saves building the same objects again.
    valgrind) gw_need_packages valgrind && cmake --preset native >/dev/null && scripts/valgrind.sh build/native ;;
    fuzz) scripts/fuzz.sh -t "${GW_FUZZ_SECONDS:-20}" ;;
    cross)
      gw_need_packages crossbuild-essential-arm64 crossbuild-essential-armhf qemu-user mmdebstrap debian-archive-keyring
      for arch in arm64 armhf; do
        scripts/sysroot.sh "$arch" >/dev/null
        run_preset "$arch"
      done
      ;;
    # Not "package.sh && packaged=1": set -e ignores a failure that is not
    # the last command of an && list, and the stage would pass.
    packages) scripts/package.sh all; packaged=1 ;;
    # The packages stage of this same run built them: test those.
    e2e) scripts/e2e-systemd.sh amd64 ${packaged:+--no-build} ;;
    e2e-arm64) scripts/e2e-systemd.sh arm64 ${packaged:+--no-build} ;;
    e2e-armhf) scripts/e2e-systemd.sh armhf ${packaged:+--no-build} ;;
    *) gw_die "unknown stage '$stage' (native, asan, tsan, nosystemd, valgrind, fuzz, cross, packages, e2e, e2e-arm64, e2e-armhf)" ;;
  esac
  gw_say "[$stage] passed in $((SECONDS - start)) s"
done
gw_say "all stages passed: ${stages[*]}"
