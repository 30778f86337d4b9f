"""`scooby release`: turn images/scooby.img into versioned, checksummed release artifacts.

Everything a release holds is computed from two sources only: the image itself (its
`/etc/scooby/release`, read with debugfs without mounting anything) and the validated
cluster (names and addresses). Secrets are never read into a release file. Artifacts are
written under temporary names and renamed into place, so `dist/` never holds half a file.
Uploads (GitHub, S3) live in `scooby.publish`; this module only makes files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import Diagnostic, ScoobyError, error
from scooby.core.model import Cluster
from scooby.core.paths import IMAGE
from scooby.release.imageinfo import image_release
from scooby.release.versions import image_commit, is_tag, release_date
from scooby.util.files import CHUNK, atomic, sha256_file, write_text
from scooby.util.tools import not_installed

DEFAULT_IMAGE = IMAGE
DEFAULT_DIST = "dist"

# zstd -T0 uses every core. --long=27 (a 128 MiB window) finds the copies an image holds (the
# kernel and initrd in the FAT partition, /boot and the agents' TFTP folder): on a real build
# it took the image from 37.5% to 33.8% of its used bytes at the same speed. 2^27 is the
# largest window decoders accept without options (zstd -d, bmaptool, Imager's libarchive).
# Level 12: higher levels cost minutes for under 1% (benchmarks/bench_release.py).
# xz: -6 is xz's own default; -T0 makes it multi-threaded (blocks, still a standard .xz).
COMPRESSORS = {
    "zst": ["zstd", "-T0", "-12", "--long=27", "-q", "-c", "-"],
    "xz": ["xz", "-T0", "-6", "-q", "-c", "-"],
}
# GitHub: "each file included in a release must be under 2 GiB", and uploads of exactly 2 GiB
# fail with a 500; parts of 2,000,000,000 bytes stay clear of both.
PART_SIZE = 2_000_000_000
IMAGER_FILE = "rpi-imager.json"  # one stable name: .../releases/latest/download/rpi-imager.json
MANIFEST_FILE = "release.json"
SUMS_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class Artifact:
    path: Path
    size: int
    sha256: str
    kind: str  # image | part | bmap | imager | manifest | sums
    # where the uploaders send it: the whole image goes to S3; GitHub gets its parts instead
    # when it is over the asset limit.
    github: bool = True
    s3: bool = True

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Release:
    version: str
    tag: str | None  # the git tag when the version is one (v1.2.3), else None
    artifacts: list[Artifact] = field(default_factory=list)
    split: bool = False


# --- making artifacts --------------------------------------------------------------------


def artifact(path: Path, kind: str, **where: bool) -> Artifact:
    return Artifact(path, path.stat().st_size, sha256_file(path), kind, **where)


def compress(
    image: Path, dest: Path, fmt: str, advance: Callable[[int], None] | None = None
) -> tuple[str, str]:
    """Compress IMAGE to DEST with the zstd/xz tool in one pass; (raw sha256, compressed sha256).

    A thread feeds the compressor and hashes the raw bytes while this one hashes and writes
    what comes out, so the multi-GB image is read once.
    """
    command = COMPRESSORS[fmt]
    if shutil.which(command[0]) is None:
        raise ScoobyError(Diagnostic("", None, not_installed(command[0])))
    raw, packed = hashlib.sha256(), hashlib.sha256()
    failure: list[BaseException] = []
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:
        try:
            with image.open("rb") as f:
                while chunk := f.read(CHUNK):
                    raw.update(chunk)
                    proc.stdin.write(chunk)
                    if advance:
                        advance(len(chunk))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            proc.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        with atomic(dest) as tmp:
            with tmp.open("wb") as out:
                while chunk := proc.stdout.read(CHUNK):
                    packed.update(chunk)
                    out.write(chunk)
            feeder.join()
            if proc.wait() != 0 or failure:
                why = failure[0] if failure else f"{command[0]} exited {proc.returncode}"
                raise ScoobyError(Diagnostic("", None, f"compressing {image.name} failed: {why}"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return raw.hexdigest(), packed.hexdigest()


def bmap(image: Path, dest: Path) -> None:
    """`bmaptool create`: the mapped ranges (and their checksums) of the raw image."""
    if shutil.which("bmaptool") is None:
        raise ScoobyError(Diagnostic("", None, not_installed("bmaptool")))
    with atomic(dest) as tmp:
        done = subprocess.run(
            ["bmaptool", "create", "-o", str(tmp), str(image)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise ScoobyError(Diagnostic("", None, f"bmaptool create failed: {why[0]}"))


def split(path: Path, part_size: int) -> list[Path]:
    """PATH.part00, PATH.part01, ...: `cat PATH.part* > PATH` puts it back together."""
    parts = []
    size = path.stat().st_size
    with path.open("rb") as src:
        for index, start in enumerate(range(0, size, part_size)):
            dest = path.with_name(f"{path.name}.part{index:02d}")
            left = min(part_size, size - start)
            with atomic(dest) as tmp, tmp.open("wb") as out:
                while left and (chunk := src.read(min(CHUNK, left))):
                    out.write(chunk)
                    left -= len(chunk)
            parts.append(dest)
    return parts


def write_json(dest: Path, data: object) -> None:
    write_text(dest, json.dumps(data, indent=2) + "\n")


def manifest(
    cluster: Cluster,
    info: dict[str, str],
    commit: str,
    date: str,
    raw: Artifact,
    files: list[Artifact],
    split_parts: bool,
) -> dict:
    """release.json: what is in the image and where it came from. Built field by field from
    the model, so nothing from `Secrets` can slip in."""
    m = cluster.master
    k3s = "without K3S" if info["K3S_MODE"] == layout.NO_K3S else info["K3S_VERSION"]
    data = {
        "name": "scooby",
        "version": info["SCOOBY_VERSION"],
        "commit": commit,
        "release_date": date,
        "base": info["BASE"],
        "k3s": k3s,
        "k3s_mode": info["K3S_MODE"],
        "config_digest": info["CONFIG_DIGEST"],
        "master": {
            "hostname": m.hostname,
            "external": {
                "device": m.external.device,
                "address": str(m.external.address),
                "gateway": str(m.gateway),
            },
            "internal": {"device": m.internal.device, "address": str(m.internal.address)},
        },
        "agents": [
            {"name": a.name, "ip": str(a.ip), "mac": a.mac, "pxe_id": a.pxe_id}
            for a in cluster.agents
        ],
        "image": {"name": raw.name, "size": raw.size, "sha256": raw.sha256},
        "artifacts": [{"name": a.name, "size": a.size, "sha256": a.sha256} for a in files],
    }
    if split_parts:
        image = next(a for a in files if a.kind == "image")
        data["reassemble"] = f"cat {image.name}.part* > {image.name}"
    return data


def imager_list(version: str, raw: Artifact, image: Artifact, url: str, date: str) -> dict:
    """Raspberry Pi Imager's documented os_list format (doc/json-schema/os-list-schema.json).

    No `init_format`: the image is configured by its repository, and Imager's own
    customisation (users, Wi-Fi, SSH keys) would fight it, so Imager should not offer it.
    No `devices`: a custom repository has no device list, so a filter would hide the entry.
    """
    return {
        "os_list": [
            {
                "name": f"Scooby {version}",
                "description": "K3S cluster master: gateway, K3S server and network boot "
                "for the agent Pis (arm64)",
                "icon": "",
                "url": url,
                "extract_size": raw.size,
                "extract_sha256": raw.sha256,
                "image_download_size": image.size,
                "image_download_sha256": image.sha256,
                "release_date": date,
            }
        ]
    }


def sums(files: list[Artifact]) -> str:
    """`sha256sum -c SHA256SUMS` format: digest, two spaces, name."""
    return "".join(f"{a.sha256}  {a.name}\n" for a in sorted(files, key=lambda a: a.name))


def make(
    repo: Path,
    image: Path,
    dist: Path,
    cluster: Cluster,
    fmt: str = "zst",
    url_for: Callable[[str, bool], str] | None = None,
    progress=None,
    part_size: int = PART_SIZE,
) -> Release:
    """Every artifact for IMAGE in DIST; `url_for(name, split)` says where Imager downloads from."""
    if not image.is_file():
        rel = os.path.relpath(image, repo)
        raise ScoobyError(error(rel, None, "no image here: run `scooby build` first"))
    info = image_release(image, os.path.relpath(image, repo))
    digest = cluster.config_digest
    if info["CONFIG_DIGEST"] != digest:
        raise ScoobyError(
            error(
                os.path.relpath(image, repo),
                None,
                f"built from other inputs (config digest {info['CONFIG_DIGEST'][:12]}, "
                f"the repository's is {digest[:12]}): rebuild, or release from the commit "
                f"{info['SCOOBY_VERSION']}",
                "CONFIG_DIGEST",
            )
        )
    image_version = info["SCOOBY_VERSION"]
    dist.mkdir(parents=True, exist_ok=True)
    stem = f"scooby-{image_version}"
    packed_path = dist / f"{stem}.img.{fmt}"
    bmap_path = dist / f"{stem}.img.bmap"  # bmaptool copy finds it next to the .img.zst

    size = image.stat().st_size
    task = progress.add_task(f"compress {packed_path.name}", total=size) if progress else None
    advance = (lambda n: progress.advance(task, n)) if progress else None
    raw_sha, _ = compress(image, packed_path, fmt, advance)
    raw = Artifact(image, size, raw_sha, "raw", github=False, s3=False)
    bmap(image, bmap_path)

    for stale in dist.glob(f"{packed_path.name}.part*"):  # from an earlier, larger build
        stale.unlink()
    split_parts = packed_path.stat().st_size > part_size
    packed = artifact(packed_path, "image", github=not split_parts)
    files = [packed, artifact(bmap_path, "bmap")]
    if split_parts:
        files += [artifact(p, "part", s3=False) for p in split(packed_path, part_size)]

    commit = image_commit(repo, image_version)
    date = release_date(repo, commit)
    # Imager needs an absolute URL; without an upload target, the local file (a local list).
    url = (url_for(packed.name, split_parts) if url_for else None) or packed_path.resolve().as_uri()
    imager_path = dist / IMAGER_FILE
    write_json(imager_path, imager_list(image_version, raw, packed, url, date))
    files.append(artifact(imager_path, "imager"))
    manifest_path = dist / MANIFEST_FILE
    write_json(manifest_path, manifest(cluster, info, commit, date, raw, list(files), split_parts))
    files.append(artifact(manifest_path, "manifest"))
    sums_path = dist / SUMS_FILE
    write_text(sums_path, sums(files))
    files.append(artifact(sums_path, "sums"))
    return Release(
        image_version, image_version if is_tag(image_version) else None, files, split_parts
    )


def plain_name(name: str) -> bool:
    """A file directly in DIST: no folder part, not hidden, no control characters."""
    return (
        bool(name)
        and name == Path(name).name
        and "\\" not in name
        and not name.startswith(".")
        and len(name.encode("utf-8", "surrogateescape")) <= 255  # NAME_MAX
        and not any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


def from_dist(dist: Path) -> Release:
    """The artifacts an earlier `scooby release` left in DIST, each checked against SHA256SUMS:
    what a CI job with write access publishes, without building or compressing anything."""
    where = os.path.relpath(dist / SUMS_FILE)
    try:
        data = json.loads((dist / MANIFEST_FILE).read_text())
        lines = (dist / SUMS_FILE).read_text().splitlines()
    except (OSError, ValueError) as exc:
        raise ScoobyError(
            error(where, None, f"no release here ({exc}): run `scooby release --dry-run` first")
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ScoobyError(error(os.path.relpath(dist / MANIFEST_FILE), None, "has no version"))
    split_parts = "reassemble" in data
    problems, files = [], []
    for number, line in enumerate(lines, start=1):
        sha, _, name = line.partition("  ")
        if not plain_name(name) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            problems.append(
                error(where, number, "not 'SHA256  NAME' with NAME a plain file name in DIST")
            )
            continue
        path = dist / name
        if path.is_symlink() or not path.is_file() or sha256_file(path) != sha:
            problems.append(error(where, None, "missing or changed since it was listed", name))
            continue
        kind = _kind(name)
        files.append(
            Artifact(
                path,
                path.stat().st_size,
                sha,
                kind,
                github=not (split_parts and kind == "image"),
                s3=kind != "part",
            )
        )
    if problems:
        raise ScoobyError(problems)
    files.sort(key=lambda a: (_ORDER.index(a.kind), a.name))
    files.append(artifact(dist / SUMS_FILE, "sums"))
    image_version = data["version"]
    tag = image_version if is_tag(image_version) else None
    return Release(image_version, tag, files, split_parts)


_ORDER = ("image", "bmap", "part", "imager", "manifest", "sums")


def _kind(name: str) -> str:
    if ".part" in name:
        return "part"
    if name.endswith(".bmap"):
        return "bmap"
    return {IMAGER_FILE: "imager", MANIFEST_FILE: "manifest", SUMS_FILE: "sums"}.get(name, "image")
