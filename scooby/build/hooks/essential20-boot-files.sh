#!/bin/sh
# Keep the boot partition Scooby's (Debian base): divert raspi-firmware's kernel hook, which
# would rewrite config.txt and cmdline.txt on every kernel or initramfs update, and put
# Scooby's in its place (templates/base/files). It runs before the package is unpacked, so
# dpkg puts Debian's hook at the diverted name from the start. initramfs-tools' post-update.d
# and the kernel's postrm.d hooks of raspi-firmware only call this one by its path.
set -eu
root="$1"
hook=/etc/kernel/postinst.d/z50-raspi-firmware
mkdir -p "$root/usr/share/scooby/raspi-firmware"
chroot "$root" dpkg-divert --local --rename \
	--divert /usr/share/scooby/raspi-firmware/z50-raspi-firmware.debian --add "$hook"
cp -R "$SCOOBY_BASE_TEMPLATES/files/." "$root/"
