# Shared by the scripts in scripts/: sourced, never run.

# The repository's root, whatever the caller's working directory.
GW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

gw_say() { printf '==> %s\n' "$*" >&2; }
gw_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages that are not installed yet; runs apt-get update
# once, only when something is missing. Needs root (or sudo).
gw_need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  gw_say "installing: ${missing[*]}"
  if [ -z "${GW_APT_UPDATED:-}" ]; then
    "${sudo[@]}" apt-get update -q || gw_die "apt-get update failed"
    export GW_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    gw_die "apt-get install ${missing[*]} failed"
}

# What building and testing on the host needs.
GW_BUILD_PACKAGES=(build-essential cmake ninja-build pkg-config libcmocka-dev libsystemd-dev
  libtomlplusplus-dev systemd netcat-openbsd)
