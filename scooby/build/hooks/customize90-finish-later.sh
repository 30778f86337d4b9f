#!/bin/sh
# The agent root's last emulated work, the one initramfs, runs after this mmdebstrap: in the
# unpacked tree (finish-agent.sh, from scooby.build.finish), beside the master base's
# package installs, which start from this root's tarball. Each is emulated work of one
# process at a time: on two cores that is what a cold build waited for. This hook gets the
# root ready for it, and makes the deferred byte-compilation while depmod ends.
# Every stand-in and its diversion goes first (two dpkg-diverts at once lose an edit of
# /var/lib/dpkg/diversions), in the order of the hooks that deferred them: py3compile,
# depmod (once its background runs are done: deferred-depmod.sh), update-initramfs last, as
# before (dpkg keeps the state before the last change in diversions-old). Then the initramfs
# configuration goes in. The master base, made from this tarball, has the agent's compiled
# files already; it gets the initramfs (finish.tar) added to its own tarball.
set -eu
root="$1"
hooks=$(dirname "$0")
rm -f "$root/usr/bin/py3compile"
chroot "$root" dpkg-divert --local --rename --remove /usr/bin/py3compile
# The deferred byte-compilation on the core the background depmod leaves free: with the
# installs' shells and tools native (native-tools.sh) they end before depmod does, and this
# hook waited for it with one core idle (35-41 s). It reads the calls in the root and
# writes only __pycache__ folders; customize76 makes its .pyc unchecked.
sh "$hooks/deferred-py3compile.sh" "$root" &
compile=$!
sh "$hooks/deferred-depmod.sh" "$root"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/modules" "$root/etc/initramfs-tools/modules"
# Boot scripts of Scooby's (local-top/scooby-slot: the master's root slot, docs/day2.md 4.3).
# Under /etc so that every later update-initramfs, on a master too, keeps them.
cp -R "$SCOOBY_BASE_TEMPLATES/initramfs-tools/scripts/." "$root/etc/initramfs-tools/scripts/"
chmod 0755 "$root"/etc/initramfs-tools/scripts/*/scooby-*
wait "$compile"
