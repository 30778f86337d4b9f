"""What an A/B deploy takes out of a built image file: the root slot's file system (partition
2) and the boot partition's files (partition 1), found through the image's own MBR.

Nothing is mounted and no loop device is used: `sfdisk -J` reads the partition table, the
root file system is copied out by offset (holes stay holes: the free space of a fresh ext4
is never written, so the copy costs only the allocated blocks), e2fsprogs measure and, when
the master's slot is smaller than the new image's partition, shrink the copy, and mtools
read the FAT partition.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scooby.core import layout
from scooby.util.files import sha256_file

SECTOR = 512
CHUNK = 1 << 20
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


class TooLarge(Exception):
    """The new root does not fit the master's slot, even shrunk to its files' size."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the image
    size: int  # bytes


def partitions(image: Path) -> dict[int, Partition]:
    """The image's MBR partitions by number, from `sfdisk -J` (the table's own sector size)."""
    done = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{image}: no partition table sfdisk reads: {done.stderr.strip()}")
    table = json.loads(done.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", SECTOR))
    found = {}
    for part in table["partitions"]:
        # sfdisk names each partition after the file: IMAGE1, or IMAGEp1 when IMAGE ends in
        # a digit (as a disk's nodes are named)
        number = int(part["node"].removeprefix(str(image)).lstrip("p"))
        found[number] = Partition(number, part["start"] * sector, part["size"] * sector)
    return found


def copy_out(image: Path, part: Partition, dest: Path) -> int:
    """Partition `part` of `image` into the file `dest`, sparse: an all-zero chunk is skipped
    (seeked over), so the unwritten blocks of a fresh file system cost nothing here and the
    copy reads only what the image file holds (SEEK_DATA). The bytes copied."""
    copied = 0
    with open(image, "rb") as src, open(dest, "wb") as out:
        out.truncate(part.size)
        pos, end = part.start, part.start + part.size
        while pos < end:
            try:
                data_at = os.lseek(src.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            if data_at >= end:
                break
            hole_at = min(os.lseek(src.fileno(), data_at, os.SEEK_HOLE), end)
            src.seek(data_at)
            out.seek(data_at - part.start)
            left = hole_at - data_at
            while left > 0:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):
                    out.write(chunk)
                    copied += len(chunk)
                else:
                    out.seek(len(chunk), os.SEEK_CUR)
                left -= len(chunk)
            pos = hole_at
    return copied


def _superblock(fs: Path) -> dict[str, str]:
    done = subprocess.run(["dumpe2fs", "-h", str(fs)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{fs}: not an ext4 file system: {done.stderr.strip()[-300:]}")
    return {
        k.strip(): v.strip()
        for k, v in (ln.split(":", 1) for ln in done.stdout.splitlines() if ":" in ln)
    }


def ext4_size(fs: Path) -> int:
    """The file system's own size in bytes (its superblock's block count and block size),
    which may be less than the partition or file holding it."""
    sb = _superblock(fs)
    return int(sb["Block count"]) * int(sb["Block size"])


def _e2(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def fit(fs: Path, slot: int) -> int:
    """Make the ext4 in `fs` no larger than `slot` bytes: shrunk with resize2fs when its
    partition in the new image is larger than the master's slot (a root grows by 4 MiB steps
    with its contents: one more package can make the new image's partition larger than the
    slot the master was flashed with). Refuses (TooLarge) when its files need more than the
    slot. The file system's size in bytes, as it is now."""
    size = ext4_size(fs)
    if size <= slot:
        return size
    check = _e2(["e2fsck", "-f", "-y", str(fs)])  # resize2fs shrinks only a checked fs
    if check.returncode not in (0, 1):
        raise RuntimeError(f"e2fsck {fs} exited {check.returncode}: {check.stdout[-300:]}")
    minimum = _e2(["resize2fs", "-P", str(fs)])
    blocks = re.search(r"Estimated minimum size of the filesystem: (\d+)", minimum.stdout)
    block = int(_superblock(fs)["Block size"])
    need = int(blocks.group(1)) * block if blocks else size
    if need > slot:
        raise TooLarge(
            f"the new root file system needs {need // 2**20} MiB, and the master's slot holds"
            f" {slot // 2**20} MiB: reflash the master with the new image"
        )
    done = _e2(["resize2fs", str(fs), f"{slot // 1024}K"])
    if done.returncode != 0:
        raise TooLarge(
            f"the new root file system ({size // 2**20} MiB) does not shrink to the master's"
            f" slot ({slot // 2**20} MiB): {(done.stderr or done.stdout).strip()[-200:]}"
        )
    return ext4_size(fs)


def extract_root(image: Path, part: Partition, dest: Path, room: int) -> tuple[int, int, str]:
    """The root file system of partition `part` into `dest` (copy_out), fitted to a slot of
    `room` bytes (fit), the file cut to the file system's own size (what is written to a
    slot: the file system, not the rest of a partition). (its size, the bytes copied, its
    sha256). TooLarge when it does not fit."""
    copied = copy_out(image, part, dest)
    size = fit(dest, room)
    os.truncate(dest, size)
    return size, copied, sha256(dest, size)


def sha256(path: Path, size: int) -> str:
    """The sha256 of the first `size` bytes of `path` (what scooby-slot reads back)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise RuntimeError(f"{path} is shorter than {size} bytes")
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def boot_files(image: Path, part: Partition, into: Path | None = None) -> dict[str, str]:
    """Every file of the FAT boot partition: its path under the partition -> sha256 (mtools
    copies them out to a temporary folder, or to the empty folder `into`, where they stay;
    nothing is mounted)."""
    with tempfile.TemporaryDirectory(prefix="scooby-boot-") as scratch:
        tmp = str(into) if into is not None else scratch
        listing = subprocess.run(
            ["mdir", "-b", "-/", "-i", f"{image}@@{part.start}", "::"],
            capture_output=True, text=True, env=MTOOLS,
        )  # fmt: skip
        if listing.returncode != 0:
            raise RuntimeError(f"{image}: partition 1 is not a FAT mtools reads")
        if listing.stdout.strip():
            done = subprocess.run(
                ["mcopy", "-s", "-n", "-i", f"{image}@@{part.start}", "::*", tmp],
                capture_output=True, text=True, env=MTOOLS,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"mcopy from {image}'s boot partition: {done.stderr.strip()}")
        return tree_sums(Path(tmp))


def tree_sums(top: Path) -> dict[str, str]:
    sums = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            sums[path.relative_to(top).as_posix()] = sha256_file(path)
    return sums


def root_partition(image: Path) -> Partition:
    parts = partitions(image)
    if layout.ROOT_PARTITION not in parts:
        raise RuntimeError(f"{image} has no partition {layout.ROOT_PARTITION}")
    return parts[layout.ROOT_PARTITION]
