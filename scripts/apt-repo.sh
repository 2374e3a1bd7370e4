#!/bin/bash
# SPDX-License-Identifier: MIT
# Writes a signed flat apt repository from the .deb files in a directory.
#
#   scripts/apt-repo.sh DIR
#
# In DIR (which holds the .deb files): Packages, Packages.gz, Release, and the
# two signatures apt checks, InRelease (clear-signed Release) and Release.gpg
# (detached), plus the public key as DIR/gateway-archive-keyring.gpg and, when
# GW_KEYRING_PACKAGE=1 (what scripts/package.sh does), the package
# gateway-archive-keyring_VERSION_all.deb that installs that key as
# /usr/share/keyrings/gateway-archive-keyring.gpg. Boards then use
#   deb [signed-by=/usr/share/keyrings/gateway-archive-keyring.gpg] URI ./
#
# The signing key:
#   GW_APT_KEY      an armored secret key (the text itself), or the path of a
#                   file holding one or more secret keys (armored or binary)
#   GW_APT_KEY_ID   which key of GW_APT_KEY signs (default: its first)
# Without GW_APT_KEY a throw-away test key is made once per build tree
# (build/apt-test-key), and the script says so: fine for tests, never for boards.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
dir=${1:?usage: apt-repo.sh DIR}
dir=$(cd "$dir" && pwd)
gw_need_packages gnupg apt-utils dpkg-dev
log() { printf '== %s\n' "$*" >&2; }

# A private gpg home for this run: the caller's keys are never touched.
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT
gpg_q() { gpg --batch --quiet --no-tty --pinentry-mode loopback --passphrase '' "$@"; }

import_key() {
  if [ -n "${GW_APT_KEY:-}" ]; then
    if [[ $GW_APT_KEY == *"-----BEGIN PGP PRIVATE KEY BLOCK-----"* ]]; then
      printf '%s\n' "$GW_APT_KEY" | gpg_q --import
    elif [ -f "$GW_APT_KEY" ]; then
      gpg_q --import "$GW_APT_KEY"
    else
      gw_die "GW_APT_KEY is neither an armored secret key nor a readable key file"
    fi
    return
  fi
  local cache=$GW_ROOT/build/apt-test-key/secret.asc
  if [ ! -f "$cache" ]; then
    mkdir -p "${cache%/*}"
    gpg_q --quick-gen-key "gateway throw-away test archive key <test@invalid>" ed25519 sign 2y
    gpg_q --armor --export-secret-keys > "$cache"
    gpgconf --kill all >/dev/null 2>&1 || true
    rm -rf "${GNUPGHOME:?}"/*
  fi
  gpg_q --import "$cache"
  log "no GW_APT_KEY: signing with a throw-away test key ($cache); set GW_APT_KEY for a repository boards may trust"
}

import_key 2>/dev/null || import_key
key_id=${GW_APT_KEY_ID:-$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')}
[ -n "$key_id" ] || gw_die "no secret key to sign with"
gpg --batch --list-secret-keys "$key_id" >/dev/null 2>&1 || gw_die "GW_APT_KEY_ID $key_id is not a secret key of GW_APT_KEY"
gpg_q --export "$key_id" > "$dir/gateway-archive-keyring.gpg"
fingerprint=$(gpg --batch --with-colons --list-keys "$key_id" | awk -F: '$1 == "fpr" { print $10; exit }')

if [ "${GW_KEYRING_PACKAGE:-0}" = 1 ]; then
  stage=$GW_ROOT/build/deb/keyring/gateway-archive-keyring
  rm -rf "${stage%/*}"
  mkdir -p "$stage"
  cp -a "$GW_ROOT/packaging/keyring/debian" "$stage/debian"
  cp "$dir/gateway-archive-keyring.gpg" "$stage/"
  (cd "$stage" && dpkg-buildpackage -b -uc -us --no-sign) > "${stage%/*}/build.log" 2>&1 ||
    { tail -30 "${stage%/*}/build.log" >&2; gw_die "building gateway-archive-keyring failed"; }
  deb=$(ls "${stage%/*}"/gateway-archive-keyring_*_all.deb)
  [ "${GW_SKIP_LINTIAN:-0}" = 1 ] || lintian --fail-on error,warning "$deb" >&2
  rm -f "$dir"/gateway-archive-keyring_*_all.deb
  cp "$deb" "$dir/"
fi

(cd "$dir" &&
 dpkg-scanpackages --multiversion . > Packages 2>/dev/null &&
 gzip -9nkf Packages &&
 apt-ftparchive -o APT::FTPArchive::Release::Origin=gateway \
   -o APT::FTPArchive::Release::Label=gateway \
   -o APT::FTPArchive::Release::Suite=stable release . > Release.tmp &&
 mv Release.tmp Release)
rm -f "$dir/InRelease" "$dir/Release.gpg"
gpg_q --local-user "$fingerprint" --digest-algo SHA512 --clearsign -o "$dir/InRelease" "$dir/Release"
gpg_q --local-user "$fingerprint" --digest-algo SHA512 --armor --detach-sign -o "$dir/Release.gpg" "$dir/Release"
# What apt will do on the board: check both signatures against the exported key alone.
gpgv --quiet --keyring "$dir/gateway-archive-keyring.gpg" "$dir/InRelease" 2>/dev/null ||
  gw_die "InRelease does not verify against gateway-archive-keyring.gpg"
gpgv --quiet --keyring "$dir/gateway-archive-keyring.gpg" "$dir/Release.gpg" "$dir/Release" 2>/dev/null ||
  gw_die "Release.gpg does not verify against gateway-archive-keyring.gpg"
log "apt repository $dir signed by $fingerprint"
