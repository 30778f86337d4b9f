#!/bin/sh
# finish-agent.sh ROOT: the agent root's initramfs (update-initramfs, MODULES=list). ROOT is
# the agent base's tarball unpacked; scooby.build.finish runs this in a private mount
# namespace (`unshare --mount`), so the /proc, /sys and /dev mounts of the chroot vanish with
# it, as mmdebstrap's do. The shells and text tools of mkinitramfs and its hooks are this
# machine's (native-tools.sh private: 27 s instead of 86 s here, the same initrd bytes), but
# not as the package installs have them: initramfs-tools' hooks copy what they find under
# /usr/lib/*-linux-gnu and mirror each /lib*, so with this machine's libraries there the
# agents' initramfs got its libkmod and a lib64 link. Here the tools bring their own, in the
# root's /mnt, and nothing appears anywhere else.
set -eu
root="$1"
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --rbind /dev "$root/dev"
sh "$(dirname "$0")/native-tools.sh" private "$root"
for dir in "$root"/lib/modules/*; do
	chroot "$root" update-initramfs -c -k "$(basename "$dir")"
done
