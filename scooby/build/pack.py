"""Pack a boot, a root and a data tree into one MBR disk image, without loop devices or mounts.

    sector 0            MBR (sfdisk on a plain file), disk identifier = layout.disk_id
    4 MiB ...           partition 1: FAT32 (mkfs.vfat --offset, files copied in by mcopy)
    ...                 partition 2: root slot A, ext4 (mke2fs -E offset= -d ROOT: ownership,
                        modes, setuid bits, hard links and xattrs come from the tree as it is)
    ...                 partition 3: root slot B, the same size, unwritten: a hole in the
                        image file, so bmap and the compressed release skip it
    ...                 partition 4: the data partition, ext4 from the DATA tree (the state)

Each file system is written straight into the image at its offset, so no partition is
copied twice. Sizes come from the contents plus headroom; the data partition, last on the
card, grows to fill it on first boot (scooby-firstboot). Every identifier and timestamp
derives from the hostname and SOURCE_DATE_EPOCH, so the same trees give the same image.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from scooby.core import layout
from scooby.util import proc
from scooby.util.files import atomic

MIB = 1024 * 1024
SECTOR = 512
ALIGN = 4 * MIB  # partition starts and sizes: SD cards erase in 4 MiB blocks
FIRST = 4 * MIB  # where partition 1 starts
BOOT_MIN = 256 * MIB  # room for a second kernel and initrd (a day-two update)
ROOT_HEADROOM = 256 * MIB  # free space on a root slot (it never grows: slot B follows it)
DATA_HEADROOM = 64 * MIB  # free space on the data partition until first boot grows it
ROOT_SLACK = 1.10  # ext4 metadata and journal over the files' own blocks
EPOCH = 1_700_000_000  # default SOURCE_DATE_EPOCH: no build clock in the image


@dataclass(frozen=True)
class Packed:
    image: Path
    size: int
    boot_size: int
    root_size: int
    data_size: int


def align(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def tree_usage(root: Path) -> tuple[int, int]:
    """(bytes the files take in 4 KiB blocks, number of inodes) of a tree, links counted once."""
    blocks, inodes, seen = 0, 0, set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            inodes += 1
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks += -(-st.st_size // 4096)
    return blocks * 4096, inodes + 1


def boot_size(boot: Path) -> int:
    used, _ = tree_usage(boot)
    return max(BOOT_MIN, align(int(used * 1.25) + 16 * MIB))


def root_size(root: Path, headroom: int = ROOT_HEADROOM) -> tuple[int, int]:
    """(partition bytes, inode count) for an ext4 holding `root` with headroom."""
    used, inodes = tree_usage(root)
    # Inode tables: 256 bytes each, room for first-boot files (k3s unpacks ~thousands).
    inode_count = int(inodes * 1.5) + 32768
    size = align(int(used * ROOT_SLACK) + inode_count * 256 + headroom)
    return size, inode_count


@dataclass(frozen=True)
class Parts:
    """Where each partition starts and how large it is, in bytes."""

    boot: int
    root: int
    data: int

    @property
    def starts(self) -> tuple[int, int, int, int]:
        """p1 boot, p2 root A, p3 root B (as large as A), p4 data."""
        return (FIRST, FIRST + self.boot, FIRST + self.boot + self.root,
                FIRST + self.boot + 2 * self.root)  # fmt: skip

    @property
    def total(self) -> int:
        return self.starts[3] + self.data


def _uuid(hostname: str, what: str) -> str:
    return str(uuid.UUID(hashlib.sha256(f"scooby:{hostname}:{what}".encode()).hexdigest()[:32]))


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", EPOCH))


def run(cmd: list[str], env: dict | None = None, log=None) -> None:
    done = proc.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if log is not None:
        log.write(f"$ {' '.join(cmd)}\n{done.stdout}")
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stdout.strip()[-2000:]}")


def partition_table(image: Path, hostname: str, parts: Parts, log=None) -> None:
    """MBR: FAT32-LBA boot partition (bootable), then Linux root A, root B and data."""
    sizes = (parts.boot, parts.root, parts.root, parts.data)
    lines = [f"start={start // SECTOR}, size={size // SECTOR}, type=83"
             for start, size in zip(parts.starts, sizes, strict=True)]  # fmt: skip
    lines[0] = lines[0].replace("type=83", "type=c, bootable")
    script = f"label: dos\nlabel-id: 0x{layout.disk_id(hostname)}\nunit: sectors\n" + "".join(
        f"{line}\n" for line in lines
    )
    done = proc.run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe=never", str(image)],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if log is not None:
        log.write(f"$ sfdisk {image}\n{script}{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"sfdisk failed: {done.stderr.strip()}")


def _touch_tree(tree: Path, epoch: int) -> None:
    """Every mtime to `epoch`. Only where it differs: utime also sets ctime (to now), which
    mke2fs stores, so the one timestamp left differing between builds is the inode ctime."""
    for path in [str(tree)] + [
        os.path.join(d, n) for d, dirs, files in os.walk(tree) for n in dirs + files
    ]:
        if os.lstat(path).st_mtime != epoch:
            os.utime(path, (epoch, epoch), follow_symlinks=False)


def fat(image: Path, offset: int, size: int, boot: Path, hostname: str, log=None) -> None:
    """FAT32 at `offset` in `image`, holding `boot`'s files (mtools: no mount)."""
    volume_id = layout.disk_id(hostname)
    run(
        [
            "mkfs.vfat", "-F", "32", "-s", "1", "--invariant", "-n", layout.BOOT_LABEL,
            "-i", volume_id, "--offset", str(offset // SECTOR), str(image), str(size // 1024),
        ],
        log=log,
    )  # fmt: skip
    _touch_tree(boot, _epoch())
    entries = sorted(str(p) for p in boot.iterdir())
    if entries:
        run(
            ["mcopy", "-s", "-p", "-m", "-Q", "-i", f"{image}@@{offset}", *entries, "::"],
            env={"MTOOLS_SKIP_CHECK": "1"},
            log=log,
        )


def ext4(image: Path, offset: int, size: int, inodes: int, root: Path, hostname: str, log=None,
         label: str = layout.ROOT_LABEL):  # fmt: skip
    """ext4 at `offset` in `image`, populated from `root` with mke2fs -d (no mount)."""
    # The root keeps the identifiers it had before the data partition came.
    what, seed = ("root", "hash") if label == layout.ROOT_LABEL else (label, f"{label}:hash")
    fs_uuid = _uuid(hostname, what)
    _touch_tree(root, _epoch())
    run(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-N", str(inodes),
            "-L", label, "-U", fs_uuid,
            "-E", f"offset={offset},hash_seed={_uuid(hostname, seed)},root_owner=0:0",
            "-d", str(root), str(image), f"{size // 1024}k",
        ],
        env={"E2FSPROGS_FAKE_TIME": str(_epoch())},
        log=log,
    )  # fmt: skip


def pack(boot: Path, root: Path, data: Path, hostname: str, out: Path, log=None) -> Packed:
    """Write the disk image to `out` (via a temporary name, renamed when complete).
    Nothing writes slot B (partition 3): it stays a hole in the file."""
    rsize, inodes = root_size(root)
    dsize, dinodes = root_size(data, DATA_HEADROOM)
    parts = Parts(boot_size(boot), rsize, dsize)
    boot_at, root_at, _, data_at = parts.starts
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic(out) as tmp:
        with open(tmp, "wb") as f:
            f.truncate(parts.total)  # sparse: untouched space costs nothing on disk
        partition_table(tmp, hostname, parts, log)
        fat(tmp, boot_at, parts.boot, boot, hostname, log)
        ext4(tmp, root_at, rsize, inodes, root, hostname, log)
        ext4(tmp, data_at, dsize, dinodes, data, hostname, log, label=layout.DATA_LABEL)
    return Packed(out, parts.total, parts.boot, rsize, dsize)
