"""Where things live on the master and in the image: the contract between render and build.

The first three are the original's paths; its documented agent-reset recipe relies on them.
"""

from __future__ import annotations

import hashlib

AGENT_MOUNTS = "/mnt/scooby/agents"  # merged OverlayFS root of each agent, NFS-exported
AGENT_UPPERS = "/var/lib/scooby/agents"  # each agent's writable upper dir
AGENT_WORKDIRS = "/var/lib/scooby/overlay"  # each agent's OverlayFS work dir

AGENT_LAYERS = (
    "/var/lib/scooby/layers"  # each agent's private read-only layer (render's agents/NAME)
)
AGENT_SHARED = "/var/lib/scooby/shared"  # files every agent gets over the base (k3s binary, images)
AGENT_BASE_IMAGE = "/var/lib/scooby/base.squashfs"  # the shared agent root, compressed, read-only
AGENT_BASE = "/var/lib/scooby/base"  # where that image is mounted: the lowest overlay layer
TFTP_ROOT = "/srv/tftp"  # bootcode.bin at the top, one folder per PXE ID
TFTP_BOOT = "/srv/tftp/.boot"  # the agent base's boot files, which the PXE folders link to
HTTP_ROOT = "/srv/scooby/seed"  # NAME/{user-data,meta-data}: each agent's cloud-init seed
RELEASE_FILE = "/etc/scooby/release"  # version, base, k3s, config digest (written by build)

# The master image: MBR, FAT boot partition then ext4 root.
BOOT_PARTITION = 1
ROOT_PARTITION = 2
BOOT_LABEL = "SCOOBYBOOT"
ROOT_LABEL = "scooby-root"
HTTP_PORT = 58087  # the original's cloud-init port


def disk_id(hostname: str) -> str:
    """The MBR disk identifier: fixed per cluster so builds are reproducible."""
    return hashlib.sha256(f"scooby:{hostname}".encode()).hexdigest()[:8]


def partuuid(hostname: str, partition: int) -> str:
    return f"{disk_id(hostname)}-{partition:02d}"
