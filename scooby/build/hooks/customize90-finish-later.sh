#!/bin/sh
# The agent root's last emulated work, the one initramfs and the deferred byte-compilation,
# runs after this mmdebstrap: in the unpacked tree (finish-agent.sh, from
# scooby.build.finish), beside the master base's package installs, which start from this
# root's tarball. Each of the three is emulated work of one process at a time: on two cores
# that is what a cold build waited for. This hook gets the root ready for it.
# Every stand-in and its diversion goes first (two dpkg-diverts at once lose an edit of
# /var/lib/dpkg/diversions), in the order of the hooks that deferred them: py3compile,
# depmod (once its background runs are done: deferred-depmod.sh), update-initramfs last, as
# before (dpkg keeps the state before the last change in diversions-old). Then the initramfs
# configuration goes in, and the recorded py3compile calls move out of the root into the
# stage ($SCOOBY_FINISH): the master base, made from this tarball, compiles nothing of the
# agent's; it gets the finished files (finish.tar) added to its own tarball.
set -eu
root="$1"
hooks=$(dirname "$0")
rm -f "$root/usr/bin/py3compile"
chroot "$root" dpkg-divert --local --rename --remove /usr/bin/py3compile
sh "$hooks/deferred-depmod.sh" "$root"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/modules" "$root/etc/initramfs-tools/modules"
# Boot scripts of Scooby's (local-top/scooby-slot: the master's root slot, docs/day2.md 4.3).
# Under /etc so that every later update-initramfs, on a master too, keeps them.
cp -R "$SCOOBY_BASE_TEMPLATES/initramfs-tools/scripts/." "$root/etc/initramfs-tools/scripts/"
chmod 0755 "$root"/etc/initramfs-tools/scripts/*/scooby-*
calls="$root/var/cache/scooby-py3compile"
if [ -e "$calls" ]; then
	mv "$calls" "$SCOOBY_FINISH/py3compile-calls"
fi
