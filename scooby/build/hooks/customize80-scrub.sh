#!/bin/sh
# Nothing in a base root may identify one machine: every node makes its own at first boot.
# SSH host keys: cloud-init's ssh module generates them. machine-id: systemd writes one when
# the file is empty. Also drop caches and logs that only say when the build ran.
set -eu
root="$1"
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -f "$root/var/lib/systemd/random-seed" "$root/var/lib/systemd/credential.secret"
rm -rf "$root"/var/lib/cloud/instance "$root"/var/lib/cloud/instances/*
rm -f "$root"/var/log/*.log "$root"/var/log/apt/* "$root/var/cache/debconf/"*-old
rm -f "$root/etc/resolv.conf.upstream"
