#!/bin/sh
# Generate the one initramfs (MODULES=list) now that every package is in place, with the
# deferred byte-compilation (deferred-py3compile.sh) beside it: each is emulated work of one
# process at a time, so on two cores the compile costs no wall time. They touch different
# files (the initramfs takes no Python; the compile writes only __pycache__ folders).
# First, before anything runs in the background (two dpkg-diverts at once lose an edit of
# /var/lib/dpkg/diversions), every stand-in and its diversion goes, in the order of the
# hooks that deferred them: py3compile, depmod (once its background runs are done:
# deferred-depmod.sh), update-initramfs last, as before (dpkg keeps the state before the
# last change in diversions-old).
set -eu
root="$1"
hooks=$(dirname "$0")
rm -f "$root/usr/bin/py3compile"
chroot "$root" dpkg-divert --local --rename --remove /usr/bin/py3compile
sh "$hooks/deferred-depmod.sh" "$root"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
sh "$hooks/deferred-py3compile.sh" "$root" &
compile=$!
failed=0
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/modules" "$root/etc/initramfs-tools/modules" ||
	failed=$?
# Boot scripts of Scooby's (local-top/scooby-slot: the master's root slot, docs/day2.md 4.3).
# Under /etc so that every later update-initramfs, on a master too, keeps them.
cp -R "$SCOOBY_BASE_TEMPLATES/initramfs-tools/scripts/." "$root/etc/initramfs-tools/scripts/" ||
	failed=$?
chmod 0755 "$root"/etc/initramfs-tools/scripts/*/scooby-* || failed=$?
if [ "$failed" = 0 ]; then
	for dir in "$root"/lib/modules/*; do
		version=$(basename "$dir")
		chroot "$root" update-initramfs -c -k "$version" || failed=$?
	done
fi
# The compile's status: set -e fails the hook, once nothing runs in the root any more.
wait "$compile"
exit "$failed"
