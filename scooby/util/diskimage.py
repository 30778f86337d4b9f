"""Disk image files read in place: the partition table from `sfdisk -J`, no loop device.

Build, release, the Raspberry Pi OS base and the QEMU test all look inside image files
this way (then mtools at `IMG@@OFFSET`, debugfs at `IMG?offset=`), never by mounting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.util.tools import not_installed


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int  # bytes from the start of the image
    size: int  # bytes
    type: str  # MBR type ("c", "83") or GPT type GUID, lower case


def partitions(image: Path, shown: str = "") -> list[Partition]:
    """Every partition of `image`; a file without a partition table is a user error."""
    done = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True)
    if done.returncode != 0:
        why = done.stderr.strip().rsplit(": ", 1)[-1] or "sfdisk failed"
        raise ScoobyError(error(shown or str(image), None, f"not a disk image: {why}"))
    table = json.loads(done.stdout)["partitiontable"]
    unit = table.get("sectorsize", 512)
    return [
        Partition(
            _number(p["node"], image, i), p["start"] * unit, p["size"] * unit, p["type"].lower()
        )
        for i, p in enumerate(table["partitions"], start=1)
    ]


def partition(image: Path, number: int, shown: str = "") -> Partition:
    found = next((p for p in partitions(image, shown) if p.number == number), None)
    if found is None:
        raise ScoobyError(error(shown or str(image), None, f"partition {number} is missing"))
    return found


def _number(node: str, image: Path, index: int) -> int:
    """sfdisk names partition N of FILE as FILEN (FILEpN after a digit)."""
    suffix = node.removeprefix(str(image)).lstrip("p")
    return int(suffix) if suffix.isdigit() else index


def debugfs(image: Path, offset: int, *args: str, check: bool = False):
    """debugfs ARGS on the ext4 file system OFFSET bytes into IMAGE: no loop device, no mount.
    The one place Scooby runs debugfs (release reads files, the Raspberry Pi OS base rdumps)."""
    if shutil.which("debugfs") is None:
        raise ScoobyError(error("", None, not_installed("debugfs")))
    return subprocess.run(
        ["debugfs", *args, f"{image}?offset={offset}"], capture_output=True, text=True, check=check
    )
