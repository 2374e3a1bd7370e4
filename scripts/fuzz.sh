#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (preset fuzz: clang-15, ASan+UBSan) and runs each.
#
#   scripts/fuzz.sh                 every target for 30 s (test.sh: 20 s each)
#   scripts/fuzz.sh -t 3600 config  one target for an hour (a long run)
#   scripts/fuzz.sh -l              list the targets
#
# Each target starts from its committed seeds (tests/fuzz/corpus/NAME) and the
# crash regressions (tests/fuzz/regressions/NAME); new inputs it finds go to
# build/fuzz/work/NAME, crashes to build/fuzz/artifacts/NAME. A crash fails the
# run and says how to keep it as a regression test. Prints, per target, the
# executions and the time, from libFuzzer's own summary. Targets run
# GW_FUZZ_JOBS (default: the number of cores) at a time.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$GW_ROOT"

seconds=30
list=0
while getopts "t:lh" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    l) list=1 ;;
    h) sed -n '3,14p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

all_targets() { sed -n 's/^gw_fuzz_target(\([a-z0-9_]*\).*/\1/p' tests/fuzz/CMakeLists.txt; }
if ((list)); then all_targets; exit 0; fi
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(all_targets)

gw_need_packages "${GW_BUILD_PACKAGES[@]}" clang-15 libfuzzer-15-dev
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")

build=build/fuzz

# Fuzzes target NAME for the given seconds, leaving libFuzzer's exit code in
# $build/NAME.rc. libFuzzer runs one thread, so targets run GW_FUZZ_JOBS
# (default: one per core) at a time, each for the full time.
fuzz_one() {
  local name=$1 work=$build/work/$1 artifacts=$build/artifacts/$1 rc=0
  mkdir -p "$work" "$artifacts"
  local seeds=(tests/fuzz/corpus/"$name") dict=()
  [ -d tests/fuzz/regressions/"$name" ] && seeds+=(tests/fuzz/regressions/"$name")
  [ -f tests/fuzz/"$name".dict ] && dict=(-dict=tests/fuzz/"$name".dict)
  "$build"/tests/fuzz/fuzz_"$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$work" "${seeds[@]}" >"$build/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$build/$name.rc"
}

# Says how target NAME did, from its log; fails if it crashed.
fuzz_report() {
  local name=$1 log=$build/$1.log artifacts=$build/artifacts/$1 runs crash
  if [ "$(cat "$build/$name.rc")" = 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    gw_say "[fuzz] $name: ${runs:-?} executions in ${seconds} s, no crash ($(find "$build/work/$name" -type f | wc -l) inputs in the work corpus)"
    return 0
  fi
  tail -40 "$log" >&2
  gw_say "[fuzz] $name FAILED; keep the input as a regression test:"
  for crash in "$artifacts"/*; do
    [ -f "$crash" ] && gw_say "  mkdir -p tests/fuzz/regressions/$name && cp $crash tests/fuzz/regressions/$name/"
  done
  return 1
}

parallel=${GW_FUZZ_JOBS:-$(nproc)}
for name in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
  rm -f "$build/$name.rc"
  gw_say "[fuzz] $name for ${seconds} s"
  fuzz_one "$name" &
done
wait
failed=()
for name in "${targets[@]}"; do
  fuzz_report "$name" || failed+=("$name")
done
((${#failed[@]} == 0)) || gw_die "fuzz targets failed: ${failed[*]}"
gw_say "[fuzz] ${#targets[@]} targets passed: ${targets[*]}"
