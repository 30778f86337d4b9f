#!/usr/bin/env bash
# Install everything Scooby needs on a fresh Debian/Ubuntu machine: Debian packages from
# scripts/packages.txt, then nox and pre-commit. Idempotent and quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(grep -Ev '^\s*(#|$)' scripts/packages.txt)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip --version >/dev/null 2>&1 || { echo "setup: python3 with pip is required" >&2; exit 1; }
python3 -c 'import nox, pre_commit' 2>/dev/null || python3 -m pip install -q nox pre-commit
