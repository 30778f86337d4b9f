#!/bin/sh
# /etc/ssl/certs as ca-certificates' postinst and trigger make it, made once and natively: the
# root's own update-ca-certificates script, run by this machine's sh, sed, coreutils and openssl,
# writes into the root's /etc/ssl/certs, with the root's certificate folders bind-mounted (in a
# private mount namespace) at the paths its symlinks name. Same files and links as an emulated
# run (tests/build/test_deferred_hooks.py; docs/build.md). Emulated as before when the root has
# update.d hooks (they must run in the root) or a folder this machine can't mount it over.
set -eu
root="$1"
tool=/usr/sbin/update-ca-certificates
rm -f "$root$tool"
chroot "$root" dpkg-divert --local --rename --remove "$tool"
[ -e "$root$tool" ] || exit 0 # ca-certificates is not installed
certs=/usr/share/ca-certificates
local=/usr/local/share/ca-certificates
if [ -n "$(ls -A "$root/etc/ca-certificates/update.d" 2>/dev/null)" ] || [ ! -d "$certs" ] ||
	{ [ -d "$root$local" ] && [ ! -d "$local" ]; }; then
	chroot "$root" update-ca-certificates --fresh
	exit 0
fi
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private sh -c '
	root=$1 certs=$2 local=$3 tool=$4
	mount --bind "$root$certs" "$certs"
	if [ -d "$root$local" ]; then
		mount --bind "$root$local" "$local"
	else
		local="$root$local" # not there: nothing of this machine is read
	fi
	sh "$root$tool" --fresh --hooksdir "" --certsconf "$root/etc/ca-certificates.conf" \
		--etccertsdir "$root/etc/ssl/certs" --localcertsdir "$local"
' sh "$root" "$certs" "$local" "$tool"
