#!/bin/sh
# Wait for the depmod runs the kernel's postinst started in the background (the stand-in of
# essential60-defer-depmod.sh), show their output, fail if one failed, then put the real
# depmod back. customize90-finish-later.sh runs this before it removes any other diversion or
# starts anything in the background: the initramfs needs the module index.
set -eu
root="$1"
jobs="$root/var/cache/scooby-depmod"
start=$(date +%s)
for job in "$jobs"/job.*; do
	[ -d "$job" ] || continue
	pid=$(cat "$job/pid")
	while [ ! -e "$job/status" ] && kill -0 "$pid" 2>/dev/null; do
		sleep 0.2
	done
	cat "$job/log"
	if [ ! -e "$job/status" ]; then
		echo "depmod $(cat "$job/args") (in the background) ended without a status" >&2
		exit 1
	fi
	status=$(cat "$job/status")
	if [ "$status" != 0 ]; then
		echo "depmod $(cat "$job/args") (in the background) failed with status $status" >&2
		exit 1
	fi
	echo "scooby build: depmod $(cat "$job/args") done, waited $(($(date +%s) - start)) s for it"
done
rm -rf "$jobs"
tool=/usr/sbin/depmod
# Only the stand-in goes: a kmod that put its own depmod here replaced it.
if [ -f "$root$tool" ] && [ ! -L "$root$tool" ] && grep -q '^# scooby build: ' "$root$tool"; then
	rm -f "$root$tool"
fi
chroot "$root" dpkg-divert --local --rename --remove "$tool"
