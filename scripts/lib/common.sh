# SPDX-License-Identifier: MIT
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
  # scripts/test.sh's background jobs must not race the foreground's apt-get
  # for the dpkg lock: it installs their packages before it starts them.
  [ -z "${GW_NO_APT:-}" ] ||
    gw_die "${missing[*]} missing in a background job: add them to what scripts/test.sh installs before it starts the job"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  gw_say "installing: ${missing[*]}"
  if [ -z "${GW_APT_UPDATED:-}" ]; then
    "${sudo[@]}" apt-get update -q >&2 || gw_die "apt-get update failed"
    export GW_APT_UPDATED=1
  fi
  # apt's chatter goes to stderr: some callers print a result on stdout.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    gw_die "apt-get install ${missing[*]} failed"
}

# Prints the host's Debian mirror for SUITE/main, as apt is configured here
# (the repository names no mirror). Only the plain "<suite>/main" source is
# used: for foreign architectures the security suite's index is not usable.
# GW_DEBIAN_MIRROR overrides.
gw_debian_mirror() {
  local suite=$1 mirror
  mirror=${GW_DEBIAN_MIRROR:-$(apt-cache policy | awk -v s="$suite/main" '$3 == s && $2 ~ /^https?:/ { print $2; exit }')}
  [ -n "$mirror" ] || gw_die "no '$suite main' source in the host's apt configuration (set GW_DEBIAN_MIRROR)"
  printf '%s\n' "$mirror"
}

# What building and testing on the host needs.
GW_BUILD_PACKAGES=(build-essential cmake ninja-build pkg-config libcmocka-dev
  libtomlplusplus-dev systemd netcat-openbsd clang-format-15 libmodbus-dev python3-serial)

# What scripts/e2e-systemd.sh needs on the host, and in addition for a foreign
# architecture (whose programs run under qemu-user-static via binfmt_misc).
# scripts/sysroot.sh needs a subset.
GW_E2E_PACKAGES=(mmdebstrap systemd-container debian-archive-keyring gnupg dpkg-dev)
GW_FOREIGN_PACKAGES=(qemu-user-static binfmt-support arch-test)
