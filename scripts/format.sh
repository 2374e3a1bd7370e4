#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Applies .clang-format to every C and C++ file git tracks.
#
#   scripts/format.sh          rewrite the files in place
#   scripts/format.sh --check  change nothing; list the files that differ and fail
#
# The test suite runs the check (CTest test `format`), so a change in another
# style does not land.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${CLANG_FORMAT:-clang-format-15}
command -v "$tool" >/dev/null || { echo "format.sh: $tool is not installed (apt-get install clang-format-15)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
((${#files[@]})) || { echo "format.sh: no tracked C or C++ files (not a git checkout?)" >&2; exit 2; }
if [[ ${1:-} == --check ]]; then
  bad=()
  for f in "${files[@]}"; do
    "$tool" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if ((${#bad[@]})); then
    printf 'not formatted as .clang-format says (run scripts/format.sh):\n' >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "${#files[@]} files formatted as .clang-format says"
else
  "$tool" -i "${files[@]}"
fi
