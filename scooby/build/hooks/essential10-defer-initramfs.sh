#!/bin/sh
# Stop every package install (kernel postinst, initramfs-tools triggers) from generating an
# initramfs: under qemu-user each generation costs minutes. finish-agent.sh makes the one we ship.
set -eu
root="$1"
chroot "$root" dpkg-divert --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\n# scooby build: deferred, see customize90-finish-later.sh\nexit 0\n' \
	>"$root/usr/sbin/update-initramfs"
chmod 0755 "$root/usr/sbin/update-initramfs"
mkdir -p "$root/etc/initramfs-tools/conf.d"
cp "$SCOOBY_BASE_TEMPLATES/initramfs-tools/conf.d/scooby" "$root/etc/initramfs-tools/conf.d/scooby"
