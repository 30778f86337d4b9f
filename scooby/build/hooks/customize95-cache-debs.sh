#!/bin/sh
# Keep the downloaded .debs for the next build (SCOOBY_DEB_CACHE, outside the root).
set -eu
root="$1"
mkdir -p "$SCOOBY_DEB_CACHE"
find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$SCOOBY_DEB_CACHE" {} +
