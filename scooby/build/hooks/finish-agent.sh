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
# What cloud-init's first process reads as it starts (READAHEAD, layout.AGENT_READAHEAD):
# the .pyc and extension modules that `import cloudinit.cmd.main` loads, in import order, as
# this root's own Python reports them (-v; 3.8 s emulated). Each extension module is
# reported twice (loaded, executed): listed once. An agent reads them ahead over
# NFS, many at once (scooby-readahead.service).
mkdir -p "$root$(dirname "$READAHEAD")"
chroot "$root" python3 -B -v -c 'import cloudinit.cmd.main' 2>&1 >/dev/null |
	sed -n "s/^# code object from '\(.*\)'\$/\1/p; s/^# extension module .* loaded from '\(.*\)'\$/\1/p" \
		>"$root$READAHEAD"
# A list that lost cloud-init's own modules says the import went wrong: stop the build.
grep -q '/cloudinit/__pycache__/' "$root$READAHEAD"
