#!/bin/sh
# Seed apt's archive with the .debs earlier builds downloaded: no second download.
set -eu
root="$1"
mkdir -p "$root/var/cache/apt/archives/partial"
if [ -d "$SCOOBY_DEB_CACHE" ]; then
	find "$SCOOBY_DEB_CACHE" -maxdepth 1 -name '*.deb' -exec cp -t "$root/var/cache/apt/archives" {} +
fi
