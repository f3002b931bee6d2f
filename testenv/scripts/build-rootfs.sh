#!/usr/bin/env bash
# Builds the lab's Debian rootfs (systemd, sshd, nginx with stream, haproxy, keepalived, Debian's
# etcd 3.4) with debootstrap into a cache outside the repo, keyed by suite and package list, so
# only the first run on a machine pays for it (about a minute).
#
#   build-rootfs.sh            prints the rootfs folder on stdout; progress goes to stderr
#
# MASTERSHRINK_CACHE overrides ~/.cache/mastershrink; MASTERSHRINK_DEBIAN_MIRROR overrides the
# mirror read from /etc/apt/sources.list*.
set -euo pipefail

suite=bookworm
# Bump rev when the customisation below changes, so old caches are not reused.
rev=4
packages=systemd,systemd-sysv,dbus,openssh-server,nginx,libnginx-mod-stream,iproute2,iptables,ca-certificates,procps,openssl,curl,less,etcd-server,etcd-client,haproxy,keepalived

source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
key=$(printf '%s %s %s' "$suite" "$rev" "$packages" | sha256sum | cut -c1-12)
out="$cache/rootfs/$suite-$key"
built_or_locked "$out" "lab rootfs"

log() { printf '[lab rootfs] %s\n' "$*" >&2; }

for tool in debootstrap chroot; do
  command -v "$tool" >/dev/null || { log "missing $tool: apt-get install debootstrap"; exit 1; }
done

mirror=${MASTERSHRINK_DEBIAN_MIRROR:-}
if [[ -z "$mirror" ]]; then
  # The first Debian archive URI the host itself uses (only Debian's archive may be reachable).
  mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$SECONDS
log "debootstrap $suite from $mirror into $out (first run takes about a minute)"
# sleep gets no stdout or stderr: killing the ticker orphans it, and an orphan holding the
# caller's pipes makes the caller (testenv, reading stdout) wait for it.
( while sleep 20 </dev/null >/dev/null 2>&1; do log "  still bootstrapping [$((SECONDS - start))s elapsed]"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
  tail -30 "$tmp.log" >&2
  log "debootstrap failed; full log in $tmp.log"
  exit 1
fi
kill $ticker 2>/dev/null || true

# Each machine gets its own identity and host key; the base has none.
rm -f "$tmp"/etc/ssh/ssh_host_*
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
# Distribution services that would compete with the lab's own units.
for unit in nginx.service etcd.service haproxy.service keepalived.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  fstrim.timer e2scrub_all.timer e2scrub_reap.service; do
  rm -f "$tmp"/etc/systemd/system/*.wants/"$unit"
done
# No console login prompt churn, and no waiting for a network manager that is absent.
rm -f "$tmp"/etc/systemd/system/getty.target.wants/*
ln -sf /dev/null "$tmp/etc/systemd/system/systemd-networkd-wait-online.service"
mkdir -p "$tmp/root/.ssh"
chmod 700 "$tmp/root/.ssh"
chroot "$tmp" apt-get clean
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/log/*.log
echo "$suite $mirror $packages" >"$tmp/.mastershrink-rootfs"
touch "$tmp/.complete"
rm -f "$tmp.log"
rm -rf "$out"
mv "$tmp" "$out"
log "rootfs ready in $((SECONDS - start))s ($(du -sh "$out" | cut -f1))"
echo "$out"
