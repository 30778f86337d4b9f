"""The record of what is deployed on a master: every file Scooby put there, and its agents.

    {"format": 1,
     "files":   {"/etc/dnsmasq.d/scooby.conf": {"sha256": "...", "mode": 420}, ...},
     "agents":  {"willow": {"ip": "...", "mac": "...", "pxe_id": "..."}, ...},
     "release": {"base": "debian", "suite": "trixie", "k3s": "v1.31.4+k3s1", ...}}

`files` holds render's master/ tree at its on-master paths, each agent's private layer at
AGENT_LAYERS/NAME/..., and render's boot/ tree under /boot/firmware. The build writes the
record into the image (layout.DEPLOY_RECORD); `scooby deploy` reads it back, compares it
with a new render and sends the new record along with the files.
"""

from __future__ import annotations

import os
from pathlib import Path

from scooby.core import layout
from scooby.core.model import Cluster
from scooby.util.files import sha256_file

FORMAT = 1
BOOT_MOUNT = "/boot/firmware"


def _tree(root: Path, prefix: str) -> dict[str, Path]:
    """Every regular file under `root`, keyed by `prefix` + its relative path."""
    found = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            found[f"{prefix.rstrip('/')}/{rel}"] = path
    return found


def sources(cluster: Cluster, rendered: Path) -> dict[str, Path]:
    """On-master path -> the rendered file that goes there."""
    files = _tree(rendered / "master", "/")
    for agent in cluster.agents:
        files.update(_tree(rendered / "agents" / agent.name, f"{layout.AGENT_LAYERS}/{agent.name}"))
    files.update(_tree(rendered / "boot", BOOT_MOUNT))
    return dict(sorted(files.items()))


def release(cluster: Cluster) -> dict[str, str]:
    """What only a new image (an A/B deploy) can change."""
    base, k3s = cluster.master.base, cluster.master.k3s
    release = {
        "base": base.kind,
        "suite": base.suite,
        "mirror": base.mirror,
        "image": base.image_sha256,
        "k3s": k3s.version,
        "layout": layout.IMAGE_LAYOUT,
    }
    # LC_EXTRA_PACKAGES are in the master's base, so a change is a new image. Only when set:
    # a record written before the setting existed has no such key, and the plan compares
    # key by key, so "" here would plan a reboot for every master deployed before it.
    if base.extra_packages:
        release["packages"] = " ".join(base.extra_packages)
    return release


def record(cluster: Cluster, rendered: Path) -> dict:
    return {
        "format": FORMAT,
        "files": {
            path: {"sha256": sha256_file(src), "mode": src.stat().st_mode & 0o7777}
            for path, src in sources(cluster, rendered).items()
        },
        "agents": {
            a.name: {"ip": str(a.ip), "mac": a.mac, "pxe_id": a.pxe_id} for a in cluster.agents
        },
        "release": release(cluster),
    }
