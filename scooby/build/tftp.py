"""The TFTP tree the Pi boot ROMs read: `bootcode.bin` at the top, one folder per PXE ID.

    TFTP_ROOT/bootcode.bin          -> .boot/bootcode.bin   (Pi 3 boot ROMs fetch it first)
    TFTP_ROOT/<pxe_id>/start4.elf   -> ../.boot/start4.elf  (every boot file, linked)
    TFTP_ROOT/<pxe_id>/cmdline.txt     the agent's own files, rendered there by `scooby render`
    TFTP_ROOT/<pxe_id>/config.txt

The boot files exist once (layout.TFTP_BOOT); each agent's folder links to them with relative
symlinks, so the tree is correct wherever the root filesystem is mounted (an image being
assembled, or the running master). dnsmasq follows the links; it serves only world-readable
files when started as root, so the links' targets must be mode 0644 (the build's job).
"""

from __future__ import annotations

import os
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.core.model import Cluster

BOOTCODE = "bootcode.bin"  # the Pi 3 second-stage loader, requested from the TFTP root itself


def populate(root: Path, boot: Path, cluster: Cluster) -> list[Path]:
    """Create bootcode.bin and every agent's PXE folder under `root`; the links made.

    Files already in a PXE folder (the rendered cmdline.txt and config.txt) are kept; links
    from an earlier run are replaced, so calling this again after the boot files change is
    safe.
    """
    if not (boot / BOOTCODE).is_file():
        raise ScoobyError(
            error(str(boot), None, f"no {BOOTCODE} among the boot files: Pi 3 agents cannot boot")
        )
    names = sorted(p.name for p in boot.iterdir() if not p.name.startswith("."))
    made = [_link(boot / BOOTCODE, root / BOOTCODE)]
    for agent in cluster.agents:
        folder = root / agent.pxe_id
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            target = folder / name
            if target.exists() and not target.is_symlink():
                continue  # the agent's own file wins over the shared one
            made.append(_link(boot / name, target))
    return made


def _link(source: Path, link: Path) -> Path:
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(source, link.parent))
    return link
