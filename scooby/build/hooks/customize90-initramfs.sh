#!/bin/sh
# Generate the one initramfs (MODULES=list) now that every package is in place.
set -eu
root="$1"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/modules" "$root/etc/initramfs-tools/modules"
# Boot scripts of Scooby's (local-top/scooby-slot: the master's root slot, docs/day2.md 4.3).
# Under /etc so that every later update-initramfs, on a master too, keeps them.
cp -R "$SCOOBY_BASE_TEMPLATES/initramfs-tools/scripts/." "$root/etc/initramfs-tools/scripts/"
chmod 0755 "$root"/etc/initramfs-tools/scripts/*/scooby-*
for dir in "$root"/lib/modules/*; do
	version=$(basename "$dir")
	chroot "$root" update-initramfs -c -k "$version"
done
