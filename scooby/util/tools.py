"""The host tools Scooby runs, and the one way it says that one is missing."""

from __future__ import annotations

import shutil

# tool -> its Debian package (scripts/packages.txt lists them all); a tool not named here is
# its own package's name.
PACKAGES = {
    "iptables-nft-restore": "iptables",
    "ip6tables-nft-restore": "iptables",
    "xtables-legacy-multi": "iptables",
    "systemd-analyze": "systemd",
    "sshd": "openssh-server",
    "exportfs": "nfs-kernel-server",
    "mmdebstrap": "mmdebstrap",
    "unshare": "util-linux",
    "mksquashfs": "squashfs-tools",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "tar": "tar",
    "xz": "xz-utils",
    "bmaptool": "bmap-tools",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-img": "qemu-utils",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def missing(tools: tuple[str, ...] | list[str]) -> list[str]:
    """The tools not on PATH, in the given order."""
    return [t for t in tools if shutil.which(t) is None]


def not_installed(tool: str) -> str:
    """`TOOL` is not installed (Debian package PKG, see scripts/packages.txt)."""
    package = PACKAGES.get(tool, tool)
    return f"`{tool}` is not installed (Debian package {package}, see scripts/packages.txt)"
