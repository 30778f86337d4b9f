#!/usr/bin/env bash
# Everything Scooby needs on a fresh Debian 12, Debian 13 or Ubuntu 24.04 machine, where
# nothing but git (and bash) can be assumed:
#   1. the Debian packages in scripts/packages.txt (QEMU from bookworm-backports on Debian 12);
#   2. arm64 programs runnable through qemu-user (binfmt_misc);
#   3. the project's own virtual environment .venv/: Scooby, its dependencies, nox, pre-commit.
# A second run checks and changes nothing. As root, or a user who may sudo (apt-get only).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release

# Package names (first word), those tagged @backports and @ubuntu (scripts/packages.txt).
packages() { grep -Ev '^\s*(#|$)' scripts/packages.txt | awk -v want="$1" -v os="$ID" '
  { tags = ""; for (i = 2; i <= NF; i++) if ($i ~ /^@/) tags = tags $i }
  want == "all" && (tags !~ /@ubuntu/ || os == "ubuntu") { print $1 }
  want != "all" && index(tags, want) { print $1 }'; }

# One dpkg-query for all: what is installed now.
installed_now() { dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" { print $2 }'; }

apt_updated=0
apt_update() {
  ((apt_updated)) && return
  echo "setup: apt-get update"
  $sudo apt-get update -qq
  apt_updated=1
}

apt_install() { # apt_install [-t SUITE] PACKAGE...
  $sudo apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

# Debian 12's QEMU (7.2) has no raspi4b board; bookworm-backports has QEMU >= 9. Its source
# is added beside the machine's own bookworm one, same mirror, signed by Debian's keyring.
backports=()
if [ "$ID" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  mapfile -t backports < <(packages @backports)
  suites=$(apt-get indextargets --format '$(RELEASE)' 2>/dev/null | sort -u)
  if ! grep -qx bookworm-backports <<<"$suites"; then
    mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null |
      awk '$2 == "bookworm" { print $1; exit }')
    echo "setup: adding bookworm-backports (${mirror:=http://deb.debian.org/debian})"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" | $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    apt_updated=0
    apt_update
  fi
fi

# 1. Debian packages: only what is missing, so a second run makes no network request.
missing=() old_qemu=()
mapfile -t missing < <(packages all | sort -u | comm -23 - <(installed_now | sort -u))
for p in "${backports[@]}"; do
  # bookworm's own QEMU (7.2) counts as missing: the backport must replace it.
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
  [ -z "$v" ] || dpkg --compare-versions "$v" ge 1:9 || old_qemu+=("$p")
done
if ((${#missing[@]} + ${#old_qemu[@]})); then
  echo "setup: installing ${missing[*]} ${old_qemu[*]}"
  apt_update
  regular=() from_backports=()
  for p in "${missing[@]}" "${old_qemu[@]}"; do
    if printf '%s\n' "${backports[@]}" | grep -qx "$p"; then from_backports+=("$p"); else regular+=("$p"); fi
  done
  ((${#regular[@]} == 0)) || apt_install "${regular[@]}"
  ((${#from_backports[@]} == 0)) || apt_install -t bookworm-backports "${from_backports[@]}"
fi

# 2. arm64 programs run under qemu-user through binfmt_misc. QEMU's package registers the
# format through systemd-binfmt at boot or install, which a container or a chroot lacks (and
# often the binfmt_misc mount too). Its own file in binfmt.d says how: the kernel's format
# (flags OPF: the interpreter is opened now, so it works in a chroot of another root).
if ! arch-test arm64 >/dev/null 2>&1; then
  echo "setup: enabling arm64 emulation (binfmt_misc, qemu-aarch64)"
  binfmt=/proc/sys/fs/binfmt_misc
  [ -e $binfmt/register ] || $sudo mount -t binfmt_misc binfmt_misc $binfmt
  [ ! -e $binfmt/qemu-aarch64 ] || echo -1 | $sudo tee $binfmt/qemu-aarch64 >/dev/null
  $sudo tee $binfmt/register </usr/lib/binfmt.d/qemu-aarch64.conf >/dev/null
  arch-test arm64 >/dev/null
fi

# 3. The project's own Python environment. Nothing relies on what the system's Python can
# import (the source folder is importable from here, its dependencies are not). pip runs
# only when pyproject.toml changed since the last install.
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python 3.11 or newer is needed ($(python3 --version 2>&1))" >&2
  exit 1
}
stamp=.venv/.scooby-setup
want="$(python3 --version) $(sha256sum pyproject.toml | cut -c1-64)"
if [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: .venv (Scooby and its dependencies, nox, pre-commit)"
  python3 -m venv .venv
  .venv/bin/python -m pip install -qq --upgrade pip
  .venv/bin/python -m pip install -qq -e '.[test,lint]' nox pre-commit
  echo "$want" >$stamp
fi

# Everything in place? `scooby doctor` checks the programs, files and kernel features (tun,
# network namespaces, arm64) and names what is still missing.
.venv/bin/scooby doctor --quiet
echo "setup: ready in $(($(date +%s) - started)) s"
