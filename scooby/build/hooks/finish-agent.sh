#!/bin/sh
# finish-agent.sh ROOT: the agent root's initramfs (update-initramfs, MODULES=list). ROOT is
# the agent base's tarball unpacked; scooby.build.finish runs this in a private mount
# namespace (`unshare --mount`), so the /proc, /sys and /dev mounts of the chroot vanish with
# it, as mmdebstrap's do. Its tools stay emulated (not native-tools.sh): initramfs-tools'
# hooks copy what they find under /usr/lib/*-linux-gnu and mirror /lib*, so this machine's
# libraries would end up in the agents' initramfs.
set -eu
root="$1"
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --rbind /dev "$root/dev"
for dir in "$root"/lib/modules/*; do
	chroot "$root" update-initramfs -c -k "$(basename "$dir")"
done
