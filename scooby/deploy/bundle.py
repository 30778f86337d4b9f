"""`scooby deploy --bundle DIR`: the repository's state as a bundle for `scooby-update`, the
pull side of a deploy (docs/day2.md, 4.6): CI publishes it, the master fetches it.

    DIR/scooby-deploy.tar.gz   record.json, [root.json], then files/<path> for every file
                               in the record
    DIR/scooby-root.ext4.zst   with a root (below): the new image's root file system (p2),
                               zstd-compressed, as `scooby deploy` sends it to a master
    DIR/scooby-boot.tar        with a root and --allow-kernel-change: the new image's boot
                               partition's files
    DIR/SHA256SUMS             their lines (`sha256sum -c` format; other names' lines are kept)

It holds every file Scooby puts on the master, not a difference: the master plans against
its own record, as `scooby deploy` does from a laptop. A plan that needs a reboot (A/B)
needs the new root slot too, which costs an image build (as root) and a few hundred MB: it
comes when asked for (--root), or when DIR holds the previous release's bundle and the plan
from its record to this one needs a reboot. root.json then names the root's file, its
bytes, the sha256 of those bytes (what `scooby-slot write` checks) and of the zstd file, the
boot partition's files with their sha256, and whether the boot files may be written
(--allow-kernel-change; else a master whose boot partition differs refuses the release).
Reproducible: the same repository gives the same bundle bytes (sorted members, no times,
owner root, gzip without a time stamp).
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from scooby.core import layout
from scooby.core.model import Cluster
from scooby.util.files import atomic, sha256_file, write_text

BUNDLE = "scooby-deploy.tar.gz"
SUMS = "SHA256SUMS"
ROOT = "scooby-root.ext4.zst"
BOOT = "scooby-boot.tar"
MANIFEST = layout.BUNDLE_ROOT_MANIFEST


def _member(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uname = info.gname = "root"
    return info


def previous_record(out: Path) -> dict | None:
    """The record of the bundle already in `out` (the previous release), if any."""
    try:
        with tarfile.open(out / BUNDLE, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != "record.json":
                return None
            return json.load(tar.extractfile(first))
    except (OSError, tarfile.TarError, EOFError, ValueError):
        return None


def root_files(
    image: Path, out: Path, work: Path, room: int | None, allow_kernel_change: bool
) -> tuple[dict, dict[str, Path]]:
    """The new image's root slot into out/ROOT (extracted and fitted to a slot of `room`
    bytes, default its own partition, by scooby.deploy.image as `scooby deploy` does), and
    with `allow_kernel_change` its boot files into out/BOOT; root.json's content, and the
    files written."""
    from scooby.deploy import ab
    from scooby.deploy import image as img

    parts = img.partitions(image)
    root = parts[layout.ROOT_PARTITION]
    fs = work / "root.ext4"
    work.mkdir(parents=True, exist_ok=True)
    try:
        size, _, digest = img.extract_root(image, root, fs, room or root.size)
        with atomic(out / ROOT) as tmp, tmp.open("wb") as f:
            subprocess.run([*ab.ZSTD, str(fs)], stdout=f, check=True)
    finally:
        fs.unlink(missing_ok=True)
    written = {ROOT: out / ROOT}
    with tempfile.TemporaryDirectory(prefix="scooby-boot-", dir=work) as tmp:
        boot = img.boot_files(image, parts[layout.BOOT_PARTITION], Path(tmp))
        if allow_kernel_change:
            with atomic(out / BOOT) as dest:
                dest.write_bytes(ab.boot_tar({n: Path(tmp, n) for n in boot}, boot))
            written[BOOT] = out / BOOT
    manifest = {
        "format": 1,
        "root": {"file": ROOT, "bytes": size, "sha256": digest,
                 "file_sha256": sha256_file(out / ROOT)},
        "boot": boot,
        "boot_file": BOOT if allow_kernel_change else "",
        "allow_kernel_change": allow_kernel_change,
    }  # fmt: skip
    return manifest, written


def write(
    cluster: Cluster,
    work: Path,
    out: Path,
    *,
    image: Callable[[], Path] | None = None,
    root: bool = False,
    room: int | None = None,
    allow_kernel_change: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[Path, dict]:
    """Render into `work`, write the bundle and its SHA256SUMS line into `out`; the bundle
    and its record. With `root` (or when the previous bundle in `out` plans a reboot to this
    one), `image()` gives the new image, whose root slot (and boot files) go beside it."""
    from scooby.deploy.plan import plan
    from scooby.render import render
    from scooby.render.record import record, sources

    rendered = render(cluster, work / "render").out
    new = record(cluster, rendered)
    files = sources(cluster, rendered)
    out.mkdir(parents=True, exist_ok=True)
    before = previous_record(out)
    if not root and before is not None:
        reboot = plan(before, new).reboot
        if reboot:
            say(f"from the previous bundle in {out}, the plan needs a reboot ({', '.join(reboot)}):"
                " the new root slot comes with it")  # fmt: skip
            root = True
    manifest, extra = None, {}
    if root:
        if image is None:
            raise ValueError("a bundle with a root needs the image")
        manifest, extra = root_files(image(), out, work / "root", room, allow_kernel_change)
    else:
        for name in (ROOT, BOOT):  # a previous release's: not this one's
            (out / name).unlink(missing_ok=True)
    dest = out / BUNDLE
    with (
        atomic(dest) as tmp,
        tmp.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        data = json.dumps(new, sort_keys=True).encode()
        tar.addfile(_member("record.json", len(data), 0o644), io.BytesIO(data))
        if manifest is not None:
            data = json.dumps(manifest, sort_keys=True).encode()
            tar.addfile(_member(MANIFEST, len(data), 0o644), io.BytesIO(data))
        for path, entry in new["files"].items():
            with files[path].open("rb") as f:
                tar.addfile(_member("files" + path, files[path].stat().st_size, entry["mode"]), f)
    sums = out / SUMS
    kept = sums.read_text().splitlines() if sums.is_file() else []
    ours = (BUNDLE, ROOT, BOOT)
    lines = [ln for ln in kept if (ln.split()[1:2] or [""])[0].lstrip("*") not in ours]
    lines += [f"{sha256_file(dest)}  {BUNDLE}"]
    lines += [f"{sha256_file(path)}  {name}" for name, path in sorted(extra.items())]
    write_text(sums, "\n".join(lines) + "\n")
    return dest, new
