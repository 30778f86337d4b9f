#!/usr/bin/env bash
# ./scripts/build.sh [--vagrant] [scooby build options...] -> images/scooby.img
#
# On a Linux host the build runs natively (as root: sudo is used when needed). Elsewhere, or
# with --vagrant, it runs the same command inside the Debian VM described by ./Vagrantfile
# and copies the image back to ./images/scooby.img.
set -euo pipefail
cd "$(dirname "$0")/.."

vagrant=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--vagrant" ]; then vagrant=1; else args+=("$arg"); fi
done
[ "$(uname -s)" = Linux ] || vagrant=1

if [ "$vagrant" = 1 ]; then
  command -v vagrant >/dev/null || { echo "build.sh: vagrant is required on this host" >&2; exit 1; }
  vagrant up --provision
  vagrant ssh -c "cd /scooby && ./scripts/build.sh ${args[*]:-}"
  mkdir -p images
  vagrant ssh -c "cat /scooby/images/scooby.img" >images/.scooby.img.tmp
  mv images/.scooby.img.tmp images/scooby.img
  echo "build.sh: images/scooby.img"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Debian packages, arm64 emulation and .venv/ (Scooby and its dependencies): a second run
# only checks.
./scripts/setup.sh
exec $sudo env "PATH=$PATH" .venv/bin/scooby build --repo . "${args[@]}"
