"""K3S for the image: the pinned release's arm64 binary and air-gap images, verified and cached.

`--k3s` chooses what the image carries:

- embed: both files in the image (downloaded once into .cache/downloads/k3s/VERSION/, checked
  against the sha256 pinned in config); fails, naming the files, when they can't be had.
- auto (default): embed when the files can be had, otherwise K3S_MODE=first-boot: the master
  installs the same pinned, checksum-verified release at its first boot, and the build says so.
- none: no K3S at all (offline tests); recorded in /etc/scooby/release.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.core.model import K3s
from scooby.util.files import DownloadFailed, WrongChecksum, download_verified

RELEASES = "https://github.com/k3s-io/k3s/releases/download"
BINARY = "k3s-arm64"
AIRGAP = "k3s-airgap-images-arm64.tar.zst"
TIMEOUT = 20  # seconds per connection attempt; an unreachable site fails fast
# Where the files come from; tests point this at a server on 127.0.0.1.
BASE_URL_ENV = "SCOOBY_K3S_BASE_URL"

MODES = ("auto", "embed", "none")


@dataclass(frozen=True)
class K3sFiles:
    binary: Path
    airgap: Path


@dataclass(frozen=True)
class K3sPlan:
    mode: str  # what /etc/scooby/release says: embedded | first-boot | none
    version: str
    files: K3sFiles | None
    warning: str  # "" when nothing to warn about


def url(version: str, name: str, base: str | None = None) -> str:
    base = base or os.environ.get(BASE_URL_ENV) or RELEASES
    return f"{base.rstrip('/')}/{version.replace('+', '%2B')}/{name}"


def cache_dir(downloads: Path, version: str) -> Path:
    return downloads / "k3s" / version


class Unavailable(Exception):
    """A pinned file could not be had: not cached, not downloadable, or not matching."""


def fetch(link: str, dest: Path, sha256: str) -> Path:
    """`dest` if it is there with the right sha256, else download it (temp name, verified)."""
    if not sha256:
        raise Unavailable(f"{dest.name}: no sha256 pinned in config, refusing to use it")
    try:  # a corrupt or stale file is fetched again and replaced
        return download_verified(link, dest, sha256, TIMEOUT)
    except WrongChecksum as exc:
        raise Unavailable(f"{link}: sha256 {exc.got}, expected {sha256}") from exc
    except (DownloadFailed, OSError) as exc:
        raise Unavailable(f"{link}: {exc}") from exc


def files(k3s: K3s, downloads: Path, base: str | None = None) -> K3sFiles:
    folder = cache_dir(downloads, k3s.version)
    return K3sFiles(
        binary=fetch(url(k3s.version, BINARY, base), folder / BINARY, k3s.sha256),
        airgap=fetch(url(k3s.version, AIRGAP, base), folder / AIRGAP, k3s.airgap_sha256),
    )


def how_to_provide(k3s: K3s, downloads: Path, repo: Path) -> str:
    folder = cache_dir(downloads, k3s.version)
    rel = os.path.relpath(folder, repo)
    return (
        f"download {url(k3s.version, BINARY, RELEASES)} (sha256 {k3s.sha256 or 'not pinned'}) "
        f"and {url(k3s.version, AIRGAP, RELEASES)} (sha256 {k3s.airgap_sha256 or 'not pinned'}) "
        f"into {rel}/ to build offline"
    )


def plan(mode: str, k3s: K3s, downloads: Path, repo: Path, base: str | None = None) -> K3sPlan:
    """What the image gets for `--k3s MODE`."""
    if mode == "none":
        return K3sPlan(layout.NO_K3S, k3s.version, None, "")
    try:
        return K3sPlan(layout.EMBEDDED, k3s.version, files(k3s, downloads, base), "")
    except Unavailable as exc:
        if mode == "embed":
            raise ScoobyError(
                error(
                    "config",
                    None,
                    f"K3S {k3s.version} can't be embedded ({exc}); "
                    + how_to_provide(k3s, downloads, repo),
                    "LC_K3S_VERSION",
                )
            ) from None
        return K3sPlan(
            layout.FIRST_BOOT,
            k3s.version,
            None,
            f"K3S {k3s.version} not embedded ({exc}): the master will download and install it "
            f"at first boot (needs Internet there). To embed it, "
            + how_to_provide(k3s, downloads, repo),
        )
