#!/bin/sh
# Generate the one initramfs (MODULES=list) now that every package is in place.
set -eu
root="$1"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/modules" "$root/etc/initramfs-tools/modules"
for dir in "$root"/lib/modules/*; do
	version=$(basename "$dir")
	chroot "$root" update-initramfs -c -k "$version"
done
