"""`raspios-base`: a Raspberry Pi OS image (LC_IMAGE_HREF, LC_IMAGE_SHA) as the base root.

The image is downloaded once into .cache/downloads/raspios/ and checked against its sha256,
unpacked from .zip or .xz, and its two partitions read without mounting anything:

    boot (FAT)   mtools `mcopy -s -i IMG@@OFFSET` -> boot/ (kernel8.img also as vmlinuz,
                 initramfs8 also as initrd.img: the names config.txt uses)
    root (ext4)  debugfs `rdump` -> a tree -> rootfs.tar, and the agents' base.squashfs

Like the original, the same root serves as the master's base and the agents' base.
Bullseye and bookworm images share this layout (FAT then ext4, MBR).
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.util import diskimage
from scooby.util.diskimage import Partition
from scooby.util.files import DownloadFailed, WrongChecksum, atomic, download_verified

KERNEL_NAMES = {"kernel8.img": layout.KERNEL, "initramfs8": layout.INITRD}
FAT_TYPES = {"b", "c", "e", "6", "ef"}
EXT_TYPES = {"83"}
CHUNK = 1 << 20


def download(href: str, sha256: str, downloads: Path) -> Path:
    """The image file (still compressed) from the cache, or downloaded and verified."""
    name = href.rstrip("/").rsplit("/", 1)[-1] or "image"
    dest = downloads / "raspios" / f"{sha256[:16]}-{name}"
    try:
        return download_verified(href, dest, sha256)
    except DownloadFailed as exc:
        why = f"can't download {href} ({exc}); put the file at {dest} to build offline"
        raise _error(why) from None
    except WrongChecksum as exc:
        raise _error(f"{href}: sha256 is {exc.got}, LC_IMAGE_SHA says {sha256}") from None


def _error(message: str) -> ScoobyError:
    return ScoobyError(error("config", None, message, "LC_IMAGE_HREF"))


def unpack(archive: Path, out: Path) -> Path:
    """The raw .img out of a .zip, an .xz, or as it is."""
    with archive.open("rb") as f:
        magic = f.read(6)  # not read_bytes(): the archive is gigabytes
    with atomic(out) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                images = [n for n in z.namelist() if n.endswith(".img")]
                if len(images) != 1:
                    raise _error(f"{archive.name}: expected one .img in the zip, found {images}")
                with z.open(images[0]) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        elif magic == b"\xfd7zXZ\x00":
            with lzma.open(archive) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        else:
            shutil.copyfile(archive, tmp)
    return out


def partitions(image: Path) -> list[Partition]:
    try:
        return diskimage.partitions(image, image.name)
    except ScoobyError as exc:  # reported against the setting that named the file
        raise _error(exc.diagnostics[0].message) from None


def boot_and_root(parts: list[Partition]) -> tuple[Partition, Partition]:
    boot = next((p for p in parts if p.type in FAT_TYPES), None)
    root = next((p for p in parts if p.type in EXT_TYPES), None)
    if boot is None or root is None:
        raise _error(f"expected a FAT boot and a Linux root partition, found {parts}")
    return boot, root


def extract_boot(image: Path, part: Partition, out: Path) -> None:
    """Every file of the FAT partition into `out`, plus the names config.txt uses."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mcopy", "-s", "-p", "-m", "-n", "-Q", "-i", f"{image}@@{part.offset}", "::*", str(out)],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    for src, name in KERNEL_NAMES.items():
        if (out / src).is_file() and not (out / name).exists():
            shutil.copyfile(out / src, out / name)
    for f in out.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)


def extract_root(image: Path, part: Partition, out: Path) -> None:
    """The ext4 root into `out` with debugfs rdump (owners and modes kept when run as root)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    done = diskimage.debugfs(image, part.offset, "-R", f"rdump / {out}")
    if done.returncode != 0 or "rdump:" in done.stderr:
        raise _error(f"{image.name}: can't read the root partition: {done.stderr.strip()}")
    os.chmod(out, 0o755)
    restore_special_bits(image, part, out)


def restore_special_bits(image: Path, part: Partition, tree: Path) -> None:
    """rdump chowns after chmod, which clears setuid/setgid: set them again from the image.

    One debugfs process lists every directory (`ls -p`: /inode/mode/uid/gid/name/size/).
    """
    dirs = ["/"] + [
        "/" + os.path.relpath(os.path.join(d, n), tree)
        for d, names, _ in os.walk(tree)
        for n in names
        if not os.path.islink(os.path.join(d, n))
    ]
    commands = tree.parent / f".{tree.name}.debugfs"
    commands.write_text("".join(f'ls -p "{d}"\n' for d in dirs))
    try:
        done = diskimage.debugfs(image, part.offset, "-f", str(commands), check=True)
    finally:
        commands.unlink()
    current = "/"
    for line in done.stdout.splitlines():
        if line.startswith("debugfs: ls -p "):
            current = line.removeprefix("debugfs: ls -p ").strip('"')
            continue
        fields = line.split("/")
        if len(fields) < 7 or not fields[2].isdigit():
            continue
        mode, name = int(fields[2], 8), fields[5]
        if mode & 0o7000 and name not in (".", ".."):
            path = tree / current.lstrip("/") / name
            if not path.is_symlink():
                os.chmod(path, mode & 0o7777)


def apt_sources(tree: Path, out: Path) -> None:
    """The image's own apt sources, suite and keyrings: how master-base installs packages."""
    lines = []
    for f in [
        tree / "etc/apt/sources.list",
        *sorted((tree / "etc/apt/sources.list.d").glob("*.list")),
    ]:
        if f.is_file():
            lines += [
                ln.strip() for ln in f.read_text().splitlines() if ln.strip().startswith("deb ")
            ]
    os_release = (
        (tree / "etc/os-release").read_text() if (tree / "etc/os-release").is_file() else ""
    )
    codename = next(
        (ln.split("=", 1)[1].strip('"') for ln in os_release.splitlines()
         if ln.startswith("VERSION_CODENAME=")),
        "",
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "sources").write_text("\n".join(lines) + "\n")
    (out / "suite").write_text(codename + "\n")
    keyrings = out / "keyrings"
    keyrings.mkdir(exist_ok=True)
    for folder in ("etc/apt/trusted.gpg.d", "usr/share/keyrings"):
        for key_file in sorted((tree / folder).glob("*.gpg")):
            shutil.copyfile(key_file, keyrings / key_file.name)


def to_tar(tree: Path, out: Path) -> None:
    subprocess.run(
        ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "--sort=name", "-cf", str(out),
         "."],
        check=True,
    )  # fmt: skip


def stage(base, cache, log):
    """(stage directory with rootfs.tar, base.squashfs, boot/), cached, note."""
    from scooby.build.cache import key
    from scooby.build.squashfs import squashfs

    stage_key = key("raspios-base", {"sha256": base.image_sha256})
    hit = cache.lookup("raspios-base", stage_key)
    if hit:
        return (hit, stage_key), True, ""
    archive = download(base.image_href, base.image_sha256, cache.downloads)
    tmp = cache.staging("raspios-base", stage_key)
    image = unpack(archive, tmp / "raspios.img")
    boot, root = boot_and_root(partitions(image))
    extract_boot(image, boot, tmp / "boot")
    extract_root(image, root, tmp / "tree")
    image.unlink()
    apt_sources(tmp / "tree", tmp / "apt")
    to_tar(tmp / "tree", tmp / "rootfs.tar")
    squashfs(tmp / "tree", tmp / "base.squashfs", log)
    shutil.rmtree(tmp / "tree")
    return (cache.commit("raspios-base", stage_key, tmp), stage_key), False, "verified"
