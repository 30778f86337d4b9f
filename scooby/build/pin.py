"""`scooby k3s pin VERSION`: pin a K3S release and its two checksums in `config`.

It reads the release's own `sha256sum-arm64.txt` (from GitHub, where that is reachable, or a
copy given with `--sums FILE`), takes the lines for `k3s-arm64` and
`k3s-airgap-images-arm64.tar.zst`, and writes LC_K3S_VERSION, LC_K3S_SHA256 and
LC_K3S_AIRGAP_SHA256 into `config`: a key already there is changed on its line, a
commented-out one (`#LC_K3S_VERSION=...`) is replaced, a missing one is added at the end;
every other line stays as it was. A minor past its end of life is refused, as validate does.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

from scooby.build import k3s
from scooby.core.errors import ScoobyError, error
from scooby.load import envfile
from scooby.validate.k3s import end_of_life, minor

SUMS = "sha256sum-arm64.txt"
VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
KEYS = {
    "LC_K3S_SHA256": k3s.BINARY,
    "LC_K3S_AIRGAP_SHA256": k3s.AIRGAP,
}


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum` output (`HEX  NAME` or `HEX *NAME`) -> {NAME: hex}."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*([0-9A-Fa-f]{64})\s+\*?(\S+)\s*", line)
        if m:
            out[m[2].rsplit("/", 1)[-1]] = m[1].lower()
    return out


def fetch_sums(version: str) -> str:
    link = k3s.url(version, SUMS)
    try:
        with urllib.request.urlopen(link, timeout=k3s.TIMEOUT) as response:
            return response.read(1 << 20).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScoobyError(
            error(
                "config",
                None,
                f"cannot fetch {link} ({reason}). Where GitHub is reachable, download it "
                f"(`curl -fLO {k3s.url(version, SUMS, k3s.RELEASES)}`), bring the file here "
                f"and run `scooby k3s pin {version} --sums {SUMS}`",
                "LC_K3S_VERSION",
            )
        ) from None


def pin(repo: Path, version: str, sums: Path | None = None) -> str:
    if not VERSION.match(version):
        raise ScoobyError(
            error(
                "config",
                None,
                f"{version!r} is not a K3S release like v1.36.4+k3s1",
                "LC_K3S_VERSION",
            )
        )
    eol, how = end_of_life(version)
    if eol is not None and eol < date.today():
        raise ScoobyError(
            error(
                "config",
                None,
                f"K3S {minor(version)} reached its end of life ({how or 'on'} {eol}): pick a "
                "supported minor (schemas/k3s-releases.json)",
                "LC_K3S_VERSION",
            )
        )
    if sums is not None:
        try:
            text = sums.read_text("utf-8", "replace")
        except OSError as exc:
            raise ScoobyError(error(str(sums), None, f"cannot read: {exc.strerror}")) from None
        where = str(sums)
    else:
        text, where = fetch_sums(version), k3s.url(version, SUMS)
    found = parse_sums(text)
    missing = [name for name in KEYS.values() if name not in found]
    if missing:
        raise ScoobyError(
            error(
                str(sums) if sums else "config",
                None,
                f"{where} has no line for {' or '.join(missing)}: is it K3S {version}'s {SUMS}?",
            )
        )
    values = {"LC_K3S_VERSION": version, **{key: found[name] for key, name in KEYS.items()}}
    write_config(repo / "config", values)
    return (
        f"pinned K3S {version} in config: {k3s.BINARY} {values['LC_K3S_SHA256']}, "
        f"{k3s.AIRGAP} {values['LC_K3S_AIRGAP_SHA256']} (from {where})"
    )


def write_config(path: Path, values: dict[str, str]) -> None:
    """Set each KEY=VALUE in the env file at `path`, in place; nothing half-written."""
    text = path.read_text("utf-8") if path.exists() else ""
    parsed, problems = envfile.parse(text, "config")
    if problems:
        raise ScoobyError(problems)
    lines = text.splitlines()
    at = parsed.lines()
    for key, value in values.items():
        new = f"{key}={value}"
        if key in at:
            lines[at[key] - 1] = new
            continue
        commented = next((i for i, s in enumerate(lines) if re.match(rf"^\s*#\s*{key}=", s)), None)
        if commented is not None:
            lines[commented] = new
        else:
            lines.append(new)
    tmp = path.with_name(f".{path.name}.scooby-pin")
    tmp.write_text("\n".join(lines) + "\n", "utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
