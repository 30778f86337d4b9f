"""Small, real master-like images for release tests: MBR, FAT partition 1, ext4 partition 2
holding /etc/scooby/release. Made with sfdisk, mkfs.vfat + mcopy and mke2fs -d on a plain
file: no loop devices, no mounts, no root needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scooby.core import layout
from scooby.load.digest import config_digest
from scooby.util.git import describe

MiB = 1024 * 1024
BOOT_START = 1 * MiB
BOOT_SIZE = 16 * MiB


def release_values(repo: Path, image_version: str | None = None, **overrides: str) -> dict:
    values = {
        "SCOOBY_VERSION": image_version or describe(repo),
        "BASE": "debian",
        "K3S_VERSION": "v1.33.4+k3s1",
        "K3S_MODE": "first-boot",
        "CONFIG_DIGEST": config_digest(repo),
    }
    values.update(overrides)
    return values


def make_image(
    path: Path, release: dict[str, str], size: int = 64 * MiB, payload: bytes = b""
) -> Path:
    """An image of SIZE bytes; PAYLOAD goes into the root as /opt/payload (for compressibility)."""
    work = path.with_name(path.name + ".tree")
    etc = work / layout.RELEASE_FILE.lstrip("/")
    etc.parent.mkdir(parents=True, exist_ok=True)
    etc.write_text("".join(f"{k}={v}\n" for k, v in release.items()))
    if payload:
        (work / "opt").mkdir(exist_ok=True)
        (work / "opt/payload").write_bytes(payload)
    with path.open("wb") as f:
        f.truncate(size)
    root_start = BOOT_START + BOOT_SIZE
    table = (
        "label: dos\n"
        f"start={BOOT_START // 512}, size={BOOT_SIZE // 512}, type=c\n"
        f"start={root_start // 512}, type=83\n"
    )
    run("sfdisk", "-q", str(path), stdin=table)
    run(
        "mkfs.vfat",
        "-n",
        layout.BOOT_LABEL,
        f"--offset={BOOT_START // 512}",
        str(path),
        str(BOOT_SIZE // 1024),
    )
    boot_file = path.with_name(path.name + ".config.txt")
    boot_file.write_text("arm_64bit=1\n")
    run("mcopy", "-i", f"{path}@@{BOOT_START}", str(boot_file), "::config.txt")
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        layout.ROOT_LABEL,
        "-d",
        str(work),
        "-E",
        f"offset={root_start}",
        str(path),
        f"{(size - root_start) // 1024}k",
    )
    return path


def run(*command: str, stdin: str | None = None) -> None:
    subprocess.run(
        command,
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
