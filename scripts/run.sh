#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds, and runs gatewayd in the foreground on the
# default configuration (echo on 127.0.0.1:7000). Try it from another shell:
#   printf 'hi\n' | nc -q1 127.0.0.1 7000
# Arguments are passed to gatewayd (e.g. --config PATH). Ctrl-C stops it.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$GW_ROOT"
gw_need_packages "${GW_BUILD_PACKAGES[@]}"
cmake --preset native >/dev/null
cmake --build --preset native --target gatewayd
config=()
[[ " $* " == *" --config "* || " $* " == *" -c "* ]] || config=(--config "$GW_ROOT/service/gateway.conf")
gw_say "starting gatewayd ${config[*]} $*"
exec "$GW_ROOT/build/native/service/gatewayd" "${config[@]}" "$@"
