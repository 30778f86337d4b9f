"""`scooby deploy --bundle DIR`: the repository's state as a bundle for `scooby-update`, the
pull side of a deploy (docs/day2.md, 4.6): CI publishes it, the master fetches it.

    DIR/scooby-deploy.tar.gz   record.json, then files/<path> for every file in the record
    DIR/SHA256SUMS             its line (`sha256sum -c` format; other names' lines are kept)

It holds every file Scooby puts on the master, not a difference: the master plans against
its own record, as `scooby deploy` does from a laptop. Reproducible: the same repository
gives the same bytes (sorted members, no times, owner root, gzip without a time stamp).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from scooby.core.model import Cluster
from scooby.util.files import atomic, sha256_file, write_text

BUNDLE = "scooby-deploy.tar.gz"
SUMS = "SHA256SUMS"


def _member(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uname = info.gname = "root"
    return info


def write(cluster: Cluster, work: Path, out: Path) -> tuple[Path, dict]:
    """Render into `work`, write the bundle and its SHA256SUMS line into `out`; the bundle
    and its record."""
    from scooby.render import render
    from scooby.render.record import record, sources

    rendered = render(cluster, work / "render").out
    new = record(cluster, rendered)
    files = sources(cluster, rendered)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / BUNDLE
    with (
        atomic(dest) as tmp,
        tmp.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        data = json.dumps(new, sort_keys=True).encode()
        tar.addfile(_member("record.json", len(data), 0o644), io.BytesIO(data))
        for path, entry in new["files"].items():
            with files[path].open("rb") as f:
                tar.addfile(_member("files" + path, files[path].stat().st_size, entry["mode"]), f)
    sums = out / SUMS
    kept = sums.read_text().splitlines() if sums.is_file() else []
    lines = [ln for ln in kept if ln.split()[1:2] not in ([BUNDLE], [f"*{BUNDLE}"])]
    write_text(sums, "\n".join([*lines, f"{sha256_file(dest)}  {BUNDLE}"]) + "\n")
    return dest, new
