#!/bin/sh
# The byte-compilation the packages' postinsts asked for (essential50-defer-py3compile.sh
# recorded their py3compile calls): the public modules of every `py3compile -p PACKAGE` call
# all live in /usr/lib/python3/dist-packages and are compiled in one run over that folder; the
# other calls (a package's private folders) run as they were made. customize90-finish-later.sh
# runs this beside the depmod wait, once the stand-in and its diversion are gone.
set -eu
root="$1"
calls="$root/var/cache/scooby-py3compile"
[ -e "$calls" ] || exit 0
public=no
while read -r option package folders; do
	if [ "$option" = -p ] && [ -z "$folders" ]; then
		public=yes
	else
		# shellcheck disable=SC2086 # the recorded words
		chroot "$root" py3compile "$option" "$package" $folders
	fi
done <"$calls"
rm -f "$calls"
if [ "$public" = yes ]; then
	chroot "$root" py3compile /usr/lib/python3/dist-packages
fi
