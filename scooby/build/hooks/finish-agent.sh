#!/bin/sh
# finish-agent.sh ROOT CALLS: the agent root's initramfs (update-initramfs, MODULES=list) and
# the deferred byte-compilation (deferred-py3compile.sh, the calls in CALLS) at once, then
# its .pyc files made unchecked (customize76-pyc-unchecked.sh). ROOT is the agent base's
# tarball unpacked; scooby.build.finish runs this in a private mount namespace (`unshare
# --mount`), so the /proc, /sys and /dev mounts of the chroot vanish with it, as mmdebstrap's
# do. The two touch different files: the initramfs takes no Python, the compile writes only
# __pycache__ folders.
set -eu
root="$1"
calls="$2"
hooks=$(dirname "$0")
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --rbind /dev "$root/dev"
sh "$hooks/deferred-py3compile.sh" "$root" "$calls" &
compile=$!
failed=0
for dir in "$root"/lib/modules/*; do
	version=$(basename "$dir")
	chroot "$root" update-initramfs -c -k "$version" || failed=$?
done
wait "$compile" || failed=$?
[ "$failed" = 0 ] || exit "$failed"
sh "$hooks/customize76-pyc-unchecked.sh" "$root"
