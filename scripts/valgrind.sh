#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the gatewayd integration suites (CTest label "daemon") with every
# gatewayd they start under valgrind memcheck: no error and no definite or
# indirect leak may remain, or the run fails.
#
#   scripts/valgrind.sh [BUILD_DIR] [CTEST_REGEX]
#
# BUILD_DIR defaults to build/valgrind (configured here: RelWithDebInfo, no
# sanitizers, which valgrind cannot run under). The harness starts gatewayd
# through GWD_WRAPPER and stretches its waits by GWD_TIME_SCALE (valgrind
# runs gatewayd some 20-50 times slower). Each gatewayd writes its own
# valgrind log (build dir, valgrind/vg.PID.log); an exit code 99 from memcheck
# fails that test, and the logs are checked once more at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build/valgrind}")
regex=${2:-}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_WERROR=ON >/dev/null
fi
cmake --build "$build" -j "${GW_JOBS:-2}"

logs=$build/valgrind
rm -rf "$logs"
mkdir -p "$logs"
export GWD_WRAPPER="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-fds=no --log-file=$logs/vg.%p.log"
export GWD_TIME_SCALE=${GWD_TIME_SCALE:-6}

start=$SECONDS
rc=0
args=(--test-dir "$build" -L daemon --output-on-failure --timeout $((60 * GWD_TIME_SCALE)))
[ -n "$regex" ] && args+=(-R "$regex")
ctest "${args[@]}" || rc=$?

# Every log of a gatewayd run: count the runs, and find any error summary
# that is not zero (a run killed by its test leaves no summary: not an error).
runs=$(find "$logs" -name 'vg.*.log' | wc -l)
bad=$(grep -l -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]' "$logs"/vg.*.log 2>/dev/null || true)
if [ -n "$bad" ]; then
  for f in $bad; do echo "== $f"; cat "$f"; done
  rc=1
fi
echo "valgrind.sh: $runs gatewayd runs under memcheck, $(echo -n "$bad" | grep -c . || true) with errors or leaks; $((SECONDS - start)) s"
exit $rc
