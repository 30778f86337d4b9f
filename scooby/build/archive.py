"""Debian's archive pockets for the `debian` base: the suite, SUITE-updates, SUITE-security.

The build installs from all three and leaves the same three `deb` lines in the image's apt
sources (mmdebstrap writes them to /etc/apt/sources.list), so the image starts with the fixes
of the day of its build and `apt upgrade` on the master keeps getting them.

`state` reads each pocket's InRelease (a few hundred KiB, plain HTTP like apt) and keeps the
sha256 of its arm64 Packages indices: the archive's content, not its clock (Release files get
a new Date every few hours even when nothing changed). A cached base root built from another
state is stale and is rebuilt, so a cached image never lags the security pocket; with a
snapshot mirror the state never changes and the cache always holds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

COMPONENTS = ("main", "non-free-firmware")  # Broadcom Wi-Fi/BT firmware is in non-free-firmware
ARCH = "arm64"
TIMEOUT = 20  # seconds per InRelease: an unreachable archive must not stall a cached build


def sources(suite: str, mirror: str, updates: str, security: str) -> list[str]:
    """The `deb` lines of the three pockets (mmdebstrap takes whole lines as mirrors)."""
    comps = " ".join(COMPONENTS)
    return [
        f"deb {mirror} {suite} {comps}",
        f"deb {updates or mirror} {suite}-updates {comps}",
        f"deb {security} {suite}-security {comps}",
    ]


def in_release_url(line: str) -> str:
    _, uri, dist, *_ = line.split()
    return f"{uri.rstrip('/')}/dists/{dist}/InRelease"


def packages_digests(in_release: str, arch: str = ARCH) -> dict[str, str]:
    """`COMPONENT/binary-ARCH/Packages.xz` -> sha256, from an InRelease's SHA256 section."""
    wanted = {packages_path(comp, arch) for comp in COMPONENTS}
    found: dict[str, str] = {}
    in_sha256 = False
    for line in in_release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.startswith("SHA256:")
            continue
        fields = line.split()
        if in_sha256 and len(fields) == 3 and fields[2] in wanted:
            found[fields[2]] = fields[0]
    return found


def state(lines: list[str]) -> dict[str, dict[str, str]] | None:
    """Each pocket's Packages digests, or None when the archive can't be reached (offline)."""
    out: dict[str, dict[str, str]] = {}
    for line in lines:
        url = in_release_url(line)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (apt's own URLs)
                text = response.read().decode("utf-8", "replace")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        out[url] = packages_digests(text)
    return out


def packages_path(component: str = "main", arch: str = ARCH) -> str:
    """A Packages index's path under dists/DIST/, as its InRelease names it."""
    return f"{component}/binary-{arch}/Packages.xz"


def packages_url(line: str, component: str = "main", arch: str = ARCH) -> str:
    _, uri, dist, *_ = line.split()
    return f"{uri.rstrip('/')}/dists/{dist}/{packages_path(component, arch)}"


def packages_index(line: str, component: str = "main") -> str:
    """The text of one pocket's arm64 Packages index (from its Packages.xz)."""
    import lzma

    url = packages_url(line, component)
    with urllib.request.urlopen(url, timeout=TIMEOUT * 3) as response:  # noqa: S310
        return lzma.decompress(response.read()).decode("utf-8", "replace")


def fields(stanza: str) -> dict[str, str]:
    """A Packages (or dpkg status) stanza's fields, each on its first line only."""
    return dict(
        line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
    )


def versions(index: str, names: set[str]) -> dict[str, list[str]]:
    """Every version of each wanted package in a Packages (or dpkg status) text."""
    out: dict[str, list[str]] = {}
    for stanza in index.split("\n\n"):
        got = fields(stanza)
        if got.get("Package") in names and "Version" in got:
            if "Status" in got and not got["Status"].endswith(" installed"):
                continue
            out.setdefault(got["Package"], []).append(got["Version"])
    return out


ARCHIVE_JSON = "archive.json"  # in a cached agent-base stage: the state it was built from


def record(stage: Path, current: dict | None) -> None:
    (stage / ARCHIVE_JSON).write_text(json.dumps(current, sort_keys=True) + "\n")


def built_from(stage: Path) -> dict | None:
    path = stage / ARCHIVE_JSON
    return json.loads(path.read_text()) if path.is_file() else None
