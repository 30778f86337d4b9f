"""mksquashfs for the agents' shared, read-only root (Debian and Raspberry Pi OS bases alike)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scooby.util import proc


def squashfs(tree: Path, out: Path, log) -> None:
    """The agent root as one compressed, read-only file (OverlayFS lower layer over NFS)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "1700000000")
    # zstd level 6, not 15: a tenth of the CPU time (5 s instead of 53 s for the Debian agent
    # base) for a file 4.5 % larger (192.4 MB instead of 184.2 MB); as fast to decompress.
    cmd = [
        "nice", "-n", "10", "mksquashfs", str(tree), str(out), "-noappend", "-no-progress",
        "-comp", "zstd", "-Xcompression-level", "6", "-mkfs-time", epoch, "-all-time", epoch,
        "-wildcards", "-e", "boot/vmlinuz-*", "boot/initrd.img-*", "boot/firmware/*",
    ]  # fmt: skip
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
