#!/bin/sh
# Record which state of Debian's archive this root was installed from: each pocket's codename
# and InRelease Date, as `codename@YYYY-MM-DDTHH:MM:SSZ` joined by commas (apt's lists are still
# here: mmdebstrap drops them after the customize hooks). The build moves it into
# /etc/scooby/release as ARCHIVE=.
set -eu
root="$1"
mkdir -p "$root/etc/scooby"
for file in "$root"/var/lib/apt/lists/*_InRelease; do
	[ -e "$file" ] || continue
	codename=$(sed -n 's/^Codename: //p' "$file" | head -n 1)
	date=$(date -u -d "$(sed -n 's/^Date: //p' "$file" | head -n 1)" +%Y-%m-%dT%H:%M:%SZ)
	echo "$codename@$date"
done | LC_ALL=C sort | paste -s -d , >"$root/etc/scooby/archive"
