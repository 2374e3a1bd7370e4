#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs inside the booted test container (see scripts/e2e-systemd.sh) as
# systemd.run=: its exit code becomes the container's.
set -uo pipefail
exec > /root/e2e.log 2>&1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0

step() { printf '\n--- %s\n' "$*"; }
fail() { printf 'E2E: FAIL: %s\n' "$*"; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }

# The file system without the volatile parts, to compare before/after.
snapshot() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
      -o -path /var/log -o -path /var/cache -o -path /var/lib/apt/lists -o -path /root \
      -o -path /var/tmp -o -path /var/lib/systemd/timers -o -path /var/lib/systemd/random-seed \
      -o -path /var/lib/systemd/catalog -o -path /var/lib/systemd/coredump -o -path /etc/ld.so.cache \
      -o -name '*-old' -o -path /var/lib/dpkg/triggers \) -prune -o -print | sort
}

step "system: $(uname -m), $(systemctl --version | head -1)"
# (no "is-system-running --wait": this script is itself part of the boot)
systemctl --no-pager --failed || true

# echo_check TEXT: a client on 127.0.0.1:7000 must get TEXT back.
echo_check() {
  local reply
  reply=$(timeout 30 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/7000 || exit 1
    printf "%s\n" "$1" >&3
    IFS= read -r -t 20 line <&3 || exit 1
    printf "%s" "$line"' _ "$1") || return 1
  [ "$reply" = "$1" ]
}

# security_check: systemd-analyze security rates gateway.service as loaded now
# (drop-ins included) at most 2.0; sets $exposure.
security_check() {
  systemd-analyze security --no-pager gateway.service > /root/security.txt 2>&1
  exposure=$(sed -n 's/.*Overall exposure level for gateway.service: \([0-9.]*\).*/\1/p' /root/security.txt)
  echo "exposure: $exposure"
  [ -n "$exposure" ] || { cat /root/security.txt; fail "no exposure level"; }
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || { cat /root/security.txt; fail "exposure $exposure > 2.0"; }
}

# use_repo DIR: the only gateway source is DIR, trusted through the one key
# that gateway-archive-keyring installs (never trusted=yes).
use_repo() {
  echo "deb [signed-by=/usr/share/keyrings/gateway-archive-keyring.gpg] file:$1 ./" \
    > /etc/apt/sources.list.d/gateway.list
  rm -rf /var/lib/apt/lists/*
  apt-get update -q > /root/update.txt 2>&1
  local rc=$?
  cat /root/update.txt
  return $rc
}

step "the repository key, delivered to the board out of band"
apt-get install -y -q /root/gateway-archive-keyring_*_all.deb || fail "install gateway-archive-keyring"
[ -s /usr/share/keyrings/gateway-archive-keyring.gpg ] || fail "no /usr/share/keyrings/gateway-archive-keyring.gpg"
grep -rqs 'trusted=yes' /etc/apt/sources.list /etc/apt/sources.list.d && fail "an apt source says trusted=yes"
ok "key installed by gateway-archive-keyring $(dpkg-query -W -f '${Version}' gateway-archive-keyring)"

step "apt refuses a repository signed with another key"
use_repo /srv/gateway-apt-otherkey && fail "apt-get update accepted a repository signed with another key"
grep -Eq 'NO_PUBKEY|not signed|signatures were invalid' /root/update.txt || fail "apt gave no signature error"
apt-cache policy gateway | grep -q 'Candidate: (none)' || apt-cache policy gateway | grep -q '^N: Unable' ||
  [ -z "$(apt-cache policy gateway)" ] || fail "packages of the wrongly signed repository are installable"
ok "repository signed with another key refused"

step "apt refuses a package changed after signing"
use_repo /srv/gateway-apt-tampered || fail "apt-get update of the tampered repository (its index is intact)"
apt-get install -y -q gateway > /root/tampered.txt 2>&1 && { cat /root/tampered.txt; fail "apt installed a tampered package"; }
cat /root/tampered.txt
grep -Eqi 'hash sum mismatch|hashes of the file|size mismatch' /root/tampered.txt || fail "no hash error for the tampered package"
dpkg -s gateway >/dev/null 2>&1 && fail "gateway got installed from the tampered repository"
apt-get clean
ok "tampered package refused"

use_repo /srv/gateway-apt || fail "apt-get update of the signed repository"
grep -Eq 'W: |E: ' /root/update.txt && fail "apt-get update of the signed repository warned"
snapshot > /root/before.txt

step "apt install gateway from file:/srv/gateway-apt (signed)"
apt-get install -y -q gateway || fail "apt-get install gateway"
dpkg -s gateway libgateway0 | grep -E '^(Package|Version|Architecture|Depends):'
[ -x /usr/sbin/gatewayd ] || fail "no /usr/sbin/gatewayd"
dpkg-query -W -f '${Conffiles}\n' gateway | grep -q ' /etc/gateway/gateway.conf ' || fail "gateway.conf is not a conffile"
ok "installed; /etc/gateway/gateway.conf is a conffile"
/usr/sbin/gatewayd --version || fail "gatewayd --version"
/usr/sbin/gatewayd --check-config --config /etc/gateway/gateway.conf || fail "packaged gateway.conf does not check"
ok "gatewayd runs; the packaged configuration is valid"
systemctl is-enabled gateway.socket || fail "gateway.socket not enabled by the package"
systemctl is-active gateway.socket || fail "gateway.socket not started by the package"
ok "gateway.socket enabled and started on installation"

step "systemd-analyze verify / security"
systemd-analyze verify /lib/systemd/system/gateway.socket /lib/systemd/system/gateway.service > /root/verify.txt 2>&1
cat /root/verify.txt
[ -s /root/verify.txt ] && fail "systemd-analyze verify is not clean"
ok "systemd-analyze verify: clean"
security_check
ok "systemd-analyze security: exposure $exposure (<= 2.0)"

step "socket activation"
systemctl start gateway.socket || fail "systemctl start gateway.socket"
systemctl is-active gateway.socket || fail "gateway.socket not active"
systemctl --no-pager status gateway.socket || true
systemctl is-active gateway.service && fail "gateway.service is active before any client"
pidof gatewayd && fail "gatewayd runs before any client"
ok "socket listening, gatewayd not running yet"

echo_check "hello gateway" || fail "no echo from 127.0.0.1:7000"
ok "client got its echo: 'hello gateway'"

systemctl is-active gateway.service || fail "gateway.service not active after a client"
pid=$(systemctl show -p MainPID --value gateway.service)
[ "$pid" != 0 ] && [ "$(cat /proc/$pid/comm)" = gatewayd ] || fail "MainPID is not gatewayd"
systemctl show -p TriggeredBy --value gateway.service | grep -qw gateway.socket || fail "not TriggeredBy gateway.socket"
systemctl --no-pager status gateway.service || true
journalctl --no-pager -o short-monotonic -u gateway.socket -u gateway.service > /root/journal.txt
cat /root/journal.txt
# gatewayd says where its socket came from; systemd logs the start.
grep -q 'Started gateway.service' /root/journal.txt || fail "no start of gateway.service in the journal"
grep -q 'gatewayd.*route "echo": serving the socket systemd passed' /root/journal.txt ||
  fail "journal does not show gatewayd taking the socket from systemd"
grep -q 'gatewayd.*watchdog: every' /root/journal.txt || fail "gatewayd did not arm the watchdog"
ok "gateway.service active (pid $pid, uid $(stat -c %u /proc/$pid)), started from gateway.socket"

step "reload"
systemctl reload gateway.service || fail "systemctl reload gateway.service"
sleep 1
systemctl is-active gateway.service || fail "gateway.service not active after reload"
[ "$(systemctl show -p MainPID --value gateway.service)" = "$pid" ] || fail "reload restarted gatewayd"
ok "reload kept pid $pid"

step "SIGKILL under socket activation: clients keep connecting, systemd restarts gatewayd"
# 200 clients one after the other, each must get its echo; after the 50th,
# gatewayd is killed with SIGKILL (between two clients, so no accepted
# connection dies with it). systemd still holds the listening socket: the next
# clients wait in its backlog until Restart=on-failure has started a new
# gatewayd, which takes the same socket. None may be refused or lost.
restarts_before=$(systemctl show -p NRestarts --value gateway.service)
served=0; lost=0; t0=$(date +%s%N)
for i in $(seq 1 200); do
  if echo_check "client $i"; then served=$((served + 1)); else lost=$((lost + 1)); printf 'client %s: no echo\n' "$i"; fi
  [ "$i" -eq 50 ] && kill -KILL "$pid"
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
killed=$pid
pid=$(systemctl show -p MainPID --value gateway.service)
restarts=$(systemctl show -p NRestarts --value gateway.service)
printf 'SIGKILL: 200 connects in %s ms: %s echoed, %s refused or lost; gatewayd %s killed, now %s (NRestarts %s -> %s)\n' \
  "$ms" "$served" "$lost" "$killed" "$pid" "$restarts_before" "$restarts"
[ "$lost" -eq 0 ] || fail "$lost of 200 clients got no echo across the SIGKILL"
[ "$pid" != 0 ] && [ "$pid" != "$killed" ] || fail "gatewayd was not restarted after SIGKILL (pid $killed -> $pid)"
[ "$restarts" -gt "$restarts_before" ] || fail "systemd did not count a restart"
systemctl is-active gateway.service gateway.socket || fail "units not active after the restart"
# The restart is proven above (new MainPID, NRestarts up, every client
# served). systemd's own line about the kill is shown when journald has it:
# under qemu (arm64) it was still missing 30 s later, so it is not required.
journalctl --sync 2>/dev/null || true
journalctl --no-pager -u gateway.service | grep -E 'code=killed|status=9/KILL|Scheduled restart' ||
  echo "(journald shows no line about the kill yet)"
ok "SIGKILL: all 200 clients served; systemd restarted gatewayd (pid $killed -> $pid) on the same socket"

step "upgrade from the signed repository: local configuration kept, running service restarted"
echo "# local edit (e2e)" >> /etc/gateway/gateway.conf
use_repo /srv/gateway-apt-next || fail "apt-get update of the next release's repository"
apt-get upgrade -y -q || fail "apt-get upgrade"
dpkg-query -W -f '${Version}' gateway | grep -q '+e2e1$' || fail "gateway was not upgraded"
grep -q '^# local edit (e2e)' /etc/gateway/gateway.conf || fail "upgrade lost the local edit of the conffile"
systemctl is-active gateway.socket || fail "gateway.socket not active after upgrade"
echo_check "after upgrade" || fail "no echo after upgrade"
newpid=$(systemctl show -p MainPID --value gateway.service)
[ "$newpid" != 0 ] && [ "$newpid" != "$pid" ] || fail "gatewayd was not restarted by the upgrade (pid $pid -> $newpid)"
ok "upgraded to $(dpkg-query -W -f '${Version}' gateway): conffile edit kept, gatewayd restarted (pid $pid -> $newpid)"
sed -i '/^# local edit (e2e)/d' /etc/gateway/gateway.conf

step "serial route: the packaged drop-in, a pty standing in for the UART"
# The container has no UART: tests/tools/pty_peer (copied to /root by
# e2e-systemd.sh) holds a pty's master side, answers each byte with its
# uppercase, and names the slave (root:dialout 0660, like a UART node) with a
# /dev/serial/by-id link, as udev names a USB adapter.
dropin=/usr/share/gateway/gateway.service.d/serial.conf
link=/dev/serial/by-id/usb-gateway_e2e_pty-if00-port0
[ -x /root/pty_peer ] || fail "no /root/pty_peer"
[ -f "$dropin" ] || fail "the package ships no $dropin"
dpkg -S "$dropin" | grep -q '^gateway: ' || fail "$dropin does not belong to the gateway package"
# The UUCP lock directory must exist for ReadWritePaths=-/run/lock to bind it.
[ -d /run/lock ] || fail "no /run/lock on this system"
echo "/run/lock: $(stat -c '%A %U:%G' /run/lock)"
mkdir -p /etc/systemd/system/gateway.service.d
cp "$dropin" /etc/systemd/system/gateway.service.d/serial.conf
# Test only: the pty slaves (the "pts" group of /proc/devices) stand in for
# the ttyS/ttyUSB/ttyACM groups that the shipped drop-in allows.
printf '[Service]\n# e2e only: a pseudo-terminal stands in for the UART\nDeviceAllow=char-pts rw\n' \
  > /etc/systemd/system/gateway.service.d/zz-e2e-pty.conf
cp /etc/gateway/gateway.conf /root/gateway.conf.orig
# The device is missing until pty_peer runs: a client waits for it.
printf '\n[[route]]\nname = "serial"\nlisten = "127.0.0.1:7001"\nbackend = "serial:%s"\n%s\n%s\n' \
  "$link" 'on_device_missing = "wait"' 'device_wait = "30s"' >> /etc/gateway/gateway.conf
/usr/sbin/gatewayd --check-config --config /etc/gateway/gateway.conf || fail "the serial route does not check"
systemctl daemon-reload || fail "daemon-reload"
systemctl restart gateway.service || fail "restart gateway.service with the serial drop-in"
systemctl is-active gateway.service || fail "gateway.service not active with the serial drop-in"
systemctl show -p DropInPaths -p PrivateDevices -p DevicePolicy -p DeviceAllow -p SupplementaryGroups \
  -p ReadWritePaths gateway.service
systemctl show -p DropInPaths --value gateway.service | grep -q 'gateway.service.d/serial.conf' ||
  fail "the serial drop-in is not loaded"
[ "$(systemctl show -p PrivateDevices --value gateway.service)" = no ] || fail "PrivateDevices is not off"
[ "$(systemctl show -p DevicePolicy --value gateway.service)" = closed ] || fail "DevicePolicy is not closed"
systemctl show -p SupplementaryGroups --value gateway.service | grep -qw dialout || fail "no SupplementaryGroups=dialout"
systemd-analyze verify gateway.service > /root/verify-serial.txt 2>&1
cat /root/verify-serial.txt
[ -s /root/verify-serial.txt ] && fail "systemd-analyze verify is not clean with the serial drop-in"
security_check
ok "drop-in loaded; verify clean; systemd-analyze security with it: exposure $exposure (<= 2.0)"

pid=$(systemctl show -p MainPID --value gateway.service)
dialout_gid=$(getent group dialout | cut -d: -f3)
grep '^Groups:' "/proc/$pid/status"
grep '^Groups:' "/proc/$pid/status" | grep -qw "$dialout_gid" || fail "gatewayd is not in the dialout group"
# In the service's mount namespace: /run/lock writable although
# ProtectSystem=strict makes /run read-only. Read from its mountinfo (the last
# mount on a path is the one on top), not with nsenter: qemu-user has no
# setns().
grep -E '^([^ ]+ ){4}/run(/lock)? ' "/proc/$pid/mountinfo"
lock_mount=$(awk '$5 == "/run/lock" { o = $6 } END { print o }' "/proc/$pid/mountinfo")
case $lock_mount in rw*) ;; *) fail "/run/lock is not a writable mount in gateway.service's namespace ('$lock_mount')" ;; esac
ok "gatewayd (pid $pid) has group dialout ($dialout_gid); /run/lock is writable in its namespace"

# serial_exchange TEXT: a client on 127.0.0.1:7001 sends TEXT and must get its
# uppercase back from the device.
serial_exchange() {
  local reply want
  want=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
  reply=$(timeout 40 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/7001 || exit 1
    printf "%s\n" "$1" >&3
    IFS= read -r -t 35 line <&3 || exit 1
    printf "%s" "$line"' _ "$1") || { echo "no reply to '$1'"; return 1; }
  echo "sent '$1', got '$reply'"
  [ "$reply" = "$want" ]
}
# peer_read TEXT: pty_peer logged TEXT and its newline arriving from the route.
peer_read() {
  grep -qF "read $(( ${#1} + 1 )) bytes: \"$1\\n\"" /root/pty_peer.log
}
# journal_wait TEXT: gateway.service's journal since this step shows TEXT
# within 20 s.
journal_wait() {
  local i
  for i in $(seq 1 40); do
    journalctl --no-pager -u gateway.service --since "@$serial_t0" | grep -qF "$1" && return 0
    sleep 0.5
  done
  return 1
}
serial_t0=$(date +%s)

# Hot-plug: a client that comes before the device waits; the by-id link
# appearing (/dev/serial does not exist yet, so gatewayd watches /dev with
# inotify) opens the device and the client is served.
[ -e /dev/serial ] && fail "/dev/serial already exists"
serial_exchange "hello serial" > /root/serial-first.txt 2>&1 &
waiting=$!
journal_wait "device missing" || fail "gatewayd did not log the serial device missing"
/root/pty_peer "$link" > /root/pty_peer.log 2>&1 &
peer=$!
wait "$waiting"; rc=$?
cat /root/serial-first.txt /root/pty_peer.log
[ "$rc" -eq 0 ] || fail "the waiting client got no answer from the device once it appeared"
peer_read "hello serial" || fail "the device did not receive the client's bytes"
journal_wait "serial:$link: device open (" || fail "gatewayd did not log the device open"
journalctl --no-pager -u gateway.service --since "@$serial_t0" | grep -F "serial:$link"
ok "a waiting client was served once $link appeared (inotify under the sandbox)"

# Both directions with the device present, and the UUCP lock that gatewayd
# holds in /run/lock while a client has the port.
serial_exchange "second line" || fail "no answer from the device on the second exchange"
peer_read "second line" || fail "the device did not receive the second line"
exec 3<>/dev/tcp/127.0.0.1/7001 || fail "connect to the serial route"
printf 'held\n' >&3
IFS= read -r -t 20 line <&3 || fail "no answer while holding the port"
[ "$line" = HELD ] || fail "answer '$line', expected 'HELD'"
ls -l /run/lock
lockfile=$(grep -lsx " *$pid" /run/lock/LCK..* | head -1)
[ -n "$lockfile" ] || fail "no UUCP lock file of gatewayd (pid $pid) in /run/lock"
exec 3>&-
ok "client -> device and device -> client on the serial route; gatewayd held $lockfile"

# Back to the packaged state: no drop-in, the packaged configuration.
kill "$peer"; wait "$peer"
[ -e "$link" ] && fail "pty_peer left $link behind"
rm -r /etc/systemd/system/gateway.service.d
cp /root/gateway.conf.orig /etc/gateway/gateway.conf
systemctl daemon-reload || fail "daemon-reload"
systemctl restart gateway.service || fail "restart gateway.service without the drop-in"
[ "$(systemctl show -p PrivateDevices --value gateway.service)" = yes ] || fail "PrivateDevices not back on"
echo_check "after serial" || fail "no echo after removing the serial drop-in"
ok "drop-in removed: PrivateDevices=yes again, the echo route answers"

step "stop"
systemctl stop gateway.service gateway.socket || fail "systemctl stop"
systemctl is-active gateway.service gateway.socket && fail "units still active"
pidof gatewayd && fail "gatewayd still running"
ok "both units stopped"

step "apt purge gateway"
apt-get purge -y -q gateway || fail "apt-get purge gateway"
apt-get autoremove --purge -y -q || fail "apt-get autoremove --purge"
# The key stays: the board still trusts the repository for its next install.
dpkg -l | grep -E 'gateway' | grep -v '^un' | grep -v ' gateway-archive-keyring ' && fail "packages left: see above"
snapshot > /root/after.txt
if ! diff -u /root/before.txt /root/after.txt > /root/leftover.txt; then
  cat /root/leftover.txt
  fail "the file system differs after purge"
fi
ok "purge left nothing behind"

step "removal stops a running service"
apt-get install -y -q gateway >/dev/null || fail "reinstall"
echo_check "again" || fail "no echo after reinstall"
systemctl is-active gateway.service || fail "gateway.service not active after reinstall"
apt-get purge -y -q gateway libgateway0 >/dev/null || fail "purge with the service running"
pidof gatewayd && fail "gatewayd still running after purge"
echo_check "gone" && fail "127.0.0.1:7000 still answers after purge"
systemctl is-active gateway.socket gateway.service && fail "units active after purge"
systemctl reset-failed >/dev/null 2>&1 || true
snapshot > /root/after2.txt
diff -u /root/before.txt /root/after2.txt || fail "the file system differs after the second purge"
ok "purge stopped socket and service and left nothing behind"

printf '\nE2E: PASS (%s)\n' "$(uname -m)"
exit 0
