#!/bin/sh
# native-tools.sh early|on|off|private ROOT: while packages install, the arm64 root's shells, text tools,
# Perl and dpkg-deb are this machine's own, run natively instead of under qemu-user.
#
# Why: under qemu-user every program start costs ~40 ms of CPU before it does anything, and
# maintainer scripts start thousands (locales' postinst alone ~500 greps: 47.8 s emulated,
# 1.2 s with these tools, the same /etc/locale.gen); every debconf question and every unit a
# postinst enables starts Perl; dpkg unpacks each .deb through dpkg-deb's decompression.
# The same idea as Scratchbox2's and OBS's "qemu-accel" host tools in a foreign root.
#
# How: each tool in TOOLS that is a regular file both here and in the root is bind-mounted,
# read-only, over the root's file (`on`), or into a folder first in PATH (`early`); this
# machine's loader (/usr/lib64, with the /lib64 link to it), libraries
# (/usr/lib/x86_64-linux-gnu, which no arm64 package uses) and Perl's own modules are
# bind-mounted, read-only, at the same paths in the root. The root's own files are never
# written: `off` (lazily) unmounts them all and removes the folders and the link made for
# them, so the tarball holds the root's arm64 files only. A build that fails in between
# leaves only read-only mounts in mmdebstrap's private mount namespace (rootfs.py's
# `unshare --mount`), gone with it: its `rm -rf` of the chroot can't reach this machine's files.
#
# Only tools whose result does not depend on the machine they run on: no uname or arch (they
# would say x86_64), no dpkg or dpkg-query (they print the architecture they were built
# for), no compressors (their bytes may differ between versions). Python stays emulated
# (the root's python3.13 is not this machine's), but for the standard library's compile:
# given SCOOBY_NATIVE_PYTHON (scooby/build/nativepy.py, the same Debian version built for
# amd64), native-python.sh stands in front of the root's python3.X and runs that one call
# with it, the same .pyc bytes. The installed root is the same, file by file
# (docs/build.md, "Native tools in the arm64 root"). On any machine but an x86-64 one
# (an arm64 one emulates nothing), or into a root with a /lib64 of its own, this does nothing.
set -eu
action="$1"
# the root's real path: /proc/self/mountinfo names mount points by it, and a build's .cache
# may be a link (the test repositories' is the checkout's)
root=$(readlink -f "$2")
lib=/usr/lib/x86_64-linux-gnu
bin=/usr/lib/scooby-native # first in the build's PATH (rootfs.py); absent from every root
python=$bin/.python         # SCOOBY_NATIVE_PYTHON, mounted (native-python.sh runs it from there)
hooks=$(dirname "$0")
# Perl's own modules (PerlIO.pm, adduser needs it) are in its privlib, /usr/share/perl/5.NN,
# not in the library folder: an arm64 root with only perl-base has no /usr/share/perl.
privlib=$(perl -MConfig -e 'print $Config{privlib}' 2>/dev/null || true)
TOOLS="dash bash grep egrep fgrep sed perl mawk dpkg-deb
cat cp mv rm ln mkdir rmdir chmod chown chgrp touch readlink realpath basename dirname
head tail sort uniq tr cut wc ls stat install mktemp tee test [ printf echo env expr id
sleep true false comm od md5sum sha256sum cmp diff find xargs sync"

usable() {
	[ "$(uname -m)" = x86_64 ] && [ -e /usr/lib64/ld-linux-x86-64.so.2 ] && [ -d "$lib" ] &&
		[ ! -e "$root/lib64" ] && [ ! -e "$root/usr/lib64" ] && [ ! -e "$root$lib" ] &&
		[ "${privlib#/usr/share/perl/}" != "$privlib" ] && [ ! -e "$root/usr/share/perl" ] &&
		[ ! -e "$root$bin" ]
}

mounted() { # mount points under the root, deepest first
	awk -v root="$root/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

on() {
	libs_mounted || { usable && mount_libs; } || return 0
	host_tools | while read -r tool host; do
		! own_file "$tool" || bind_ro "$host" "$root/usr/bin/$tool"
	done
	[ ! -f "$root$python/name" ] || python_on
}

# native-python.sh in front of the root's python3.X, which is not installed yet: diverted, as
# the essential hooks' stand-ins are, so that dpkg unpacks the interpreter beside it
python_on() {
	name=$(cat "$root$python/name")
	chroot "$root" dpkg-divert --local --rename --add "/usr/bin/$name"
	sed "s/@PYTHON@/$name/g" "$hooks/native-python.sh" >"$root/usr/bin/$name"
	chmod 0755 "$root/usr/bin/$name"
}

# Its diversion goes before the essential hooks' (customize90-finish-later.sh): the last
# change dpkg-divert makes is still the one /var/lib/dpkg/diversions-old keeps.
python_off() {
	for wrapper in "$root"/usr/bin/python3.*; do
		grep -q '^# scooby-native-python' "$wrapper" 2>/dev/null || continue
		rm "$wrapper"
		chroot "$root" dpkg-divert --local --rename --remove "${wrapper#"$root"}"
	done
}

# the root's file itself, not a link's target: links (sh -> dash) follow by name
own_file() { [ -f "$root/usr/bin/$1" ] && [ ! -L "$root/usr/bin/$1" ]; }

host_tools() { # "TOOL HOST-FILE" for each tool in TOOLS this machine has
	for tool in $TOOLS; do
		host=$(readlink -f "/usr/bin/$tool" 2>/dev/null) || continue
		[ ! -f "$host" ] || echo "$tool $host"
	done
}

# Before the essential packages install (mmdebstrap's extract hook): their install unpacks
# the root's tools again, so nothing can be mounted over them yet. The tools go into a
# folder of their own that comes first in PATH (rootfs.py): dpkg finds dpkg-deb by PATH, and
# the maintainer scripts their tools; only the shells of #! lines stay emulated until `on`.
early() {
	usable || return 0
	mount_libs
	mkdir "$root$bin"
	mount -t tmpfs -o mode=0755 scooby-native "$root$bin"
	host_tools | while read -r tool host; do
		: >"$root$bin/$tool"
		bind_ro "$host" "$root$bin/$tool"
	done
	# a folder no command is named after, in the same tmpfs: `on` checks for it
	if [ -f "${SCOOBY_NATIVE_PYTHON-}/version" ]; then
		mkdir "$root$python"
		bind_ro "$SCOOBY_NATIVE_PYTHON" "$root$python"
	fi
}

libs_mounted() { mounted | grep -qx "$root/usr/lib64"; }

mount_libs() {
	mkdir "$root$lib" "$root/usr/lib64"
	# /lib64 as on a merged-/usr amd64 root: systemd's preinst refuses any other /lib64
	ln -s usr/lib64 "$root/lib64"
	bind_ro "$lib" "$root$lib"
	bind_ro /usr/lib64 "$root/usr/lib64"
	mkdir -p "$root$privlib"
	bind_ro "$privlib" "$root$privlib"
}

# For the finish's initramfs (finish-agent.sh, in a mount namespace of its own that takes
# every mount with it): initramfs-tools' hooks copy what they find under /usr/lib/*-linux-gnu
# and mirror each /lib* of the root, so nothing may appear there. Copies of the tools are
# patched (patchelf) to a loader and libraries of their own in a tmpfs over the root's /mnt,
# which every Debian root has, empty; then mounted over the root's files as in `on`. No
# Perl: it finds its modules by fixed paths, and mkinitramfs needs none.
private() {
	{ [ "$(uname -m)" = x86_64 ] && command -v patchelf >/dev/null && [ -d "$root/mnt" ] &&
		[ -z "$(ls -A "$root/mnt")" ]; } || return 0
	own=/mnt
	mount -t tmpfs -o mode=0755 scooby-native "$root$own"
	mkdir "$root$own/bin" "$root$own/lib"
	cp -L /usr/lib64/ld-linux-x86-64.so.2 "$root$own/lib/"
	host_tools | while read -r tool host; do
		[ "$tool" != perl ] && own_file "$tool" || continue
		cp "$host" "$root$own/bin/$tool"
		# a script (egrep) stays as it is: its #! line names a tool mounted here
		patchelf --set-interpreter "$own/lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$own/lib" \
			"$root$own/bin/$tool" 2>/dev/null || continue
		ldd "$host" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
			[ -e "$root$own/lib/${lib##*/}" ] || cp -L "$lib" "$root$own/lib/"
		done
	done
	for tool in "$root$own"/bin/*; do
		bind_ro "$tool" "$root/usr/bin/${tool##*/}"
	done
}

bind_ro() {
	mount --bind "$1" "$2"
	mount -o remount,bind,ro "$2"
}

off() {
	# `on` mounted nothing (or the root has a /lib64 of its own): nothing to undo
	libs_mounted || return 0
	python_off
	# -l: a program still running from a mounted file (a background depmod's shell) keeps
	# it; the root's path shows the root's own file at once
	mounted | while read -r point; do
		case "$point" in
		"$root$lib" | "$root/usr/lib64" | "$root$privlib" | "$root"/usr/bin/* | "$root$bin"*)
			umount -l "$point"
			;;
		esac
	done
	if mounted | grep -q -e "^$root$lib" -e "^$root/usr/lib64" -e "^$root$bin"; then
		echo "native-tools.sh: this machine's files still mounted in $root" >&2
		exit 1
	fi
	[ ! -d "$root$bin" ] || rmdir "$root$bin"
	rmdir "$root$lib" "$root/usr/lib64" "$root$privlib"
	rm "$root/lib64"
	# kept if a package installed its own Perl modules there meanwhile (dpkg owns it then)
	rmdir "$root/usr/share/perl" 2>/dev/null || true
}

"$action"
