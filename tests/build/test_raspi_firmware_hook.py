"""Scooby's raspi-firmware kernel hook (templates/base/files), run for real on a small root.

The root is this machine's /usr seen through an OverlayFS (so the hook's own tools run),
plus a /boot with a kernel, an initrd and the boot partition's files at /boot/firmware, and
the kernel's Pi device trees: the shape of the master's root after a kernel update. It all
lives in a private mount namespace, gone with the test. The image test runs the same hook
from `update-initramfs -u` and a kernel postinst inside the built image's own root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import GOLDEN, ROOT

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root for a private mount namespace and chroot"
)

HOOK = ROOT / "templates/base/files/etc/kernel/postinst.d/z50-raspi-firmware"
VERSION = "6.12.99+deb13-arm64"
DTBS = ("bcm2837-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-cm4-io.dtb")


def fake_root(tmp: Path, config: bytes) -> Path:
    root = tmp / "root"
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():  # merged /usr: /bin -> usr/bin, ...
            (root / link).parent.mkdir(parents=True, exist_ok=True)
            (root / link).symlink_to(os.readlink(f"/{link}"))
    for folder in ("usr", "dev", "tmp", "boot/firmware", "etc/kernel/postinst.d"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(HOOK, root / "etc/kernel/postinst.d/z50-raspi-firmware")
    (root / f"boot/vmlinuz-{VERSION}").write_bytes(b"new kernel")
    (root / f"boot/initrd.img-{VERSION}").write_bytes(b"new initrd")
    firmware = root / "boot/firmware"
    (firmware / "config.txt").write_bytes(config)
    (firmware / "cmdline.txt").write_bytes((GOLDEN / "boot/cmdline.txt").read_bytes())
    (firmware / "vmlinuz").write_bytes(b"old kernel")
    (firmware / "initrd.img").write_bytes(b"old initrd")
    return root


def run_hook(tmp: Path, root: Path, params: str = "configure") -> subprocess.CompletedProcess:
    """The hook chrooted into `root`, its /usr an OverlayFS over this machine's, where the
    kernel package's device trees are added (upper layer under tmp)."""
    upper, work = tmp / "upper", tmp / "work"
    broadcom = upper / f"lib/linux-image-{VERSION}/broadcom"
    broadcom.mkdir(parents=True)
    work.mkdir()
    for dtb in DTBS:
        (broadcom / dtb).write_bytes(dtb.encode())
    (broadcom / "bcm2837-other-board.dtb").write_bytes(b"not a Pi tree")
    script = (
        f"mount -t overlay overlay -o lowerdir=/usr,upperdir={upper},workdir={work} "
        f"{root}/usr && mount -t devtmpfs none {root}/dev 2>/dev/null; "
        f"chroot {root} env DEB_MAINT_PARAMS='{params}' /etc/kernel/postinst.d/z50-raspi-firmware"
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
    )


def test_kernel_update_refreshes_kernel_initrd_and_trees_only(tmp_path):
    config = (GOLDEN / "boot/config.txt").read_bytes()
    root = fake_root(tmp_path, config)
    firmware = root / "boot/firmware"
    cmdline = (firmware / "cmdline.txt").read_bytes()
    done = run_hook(tmp_path, root)
    assert done.returncode == 0, done.stderr
    assert (firmware / "config.txt").read_bytes() == config
    assert (firmware / "cmdline.txt").read_bytes() == cmdline
    assert (firmware / "vmlinuz").read_bytes() == b"new kernel"
    assert (firmware / "initrd.img").read_bytes() == b"new initrd"
    for dtb in DTBS:
        assert (firmware / dtb).read_bytes() == dtb.encode()
    assert not (firmware / "bcm2837-other-board.dtb").exists()
    left = sorted(p.name for p in firmware.iterdir())
    assert left == sorted(["config.txt", "cmdline.txt", "vmlinuz", "initrd.img", *DTBS])


@pytest.mark.parametrize("params", ["remove", "upgrade"])
def test_nothing_on_remove_or_other_actions(tmp_path, params):
    root = fake_root(tmp_path, (GOLDEN / "boot/config.txt").read_bytes())
    done = run_hook(tmp_path, root, params)
    assert done.returncode == 0, done.stderr
    assert (root / "boot/firmware/vmlinuz").read_bytes() == b"old kernel"


def test_nothing_where_the_boot_partition_is_not_scoobys(tmp_path):
    """The image build's chroot, an agent's NFS root: no Scooby config.txt, nothing written."""
    root = fake_root(tmp_path, b"# someone else's\nkernel=kernel8.img\n")
    done = run_hook(tmp_path, root)
    assert done.returncode == 0, done.stderr
    assert (root / "boot/firmware/vmlinuz").read_bytes() == b"old kernel"
    assert not (root / "boot/firmware" / DTBS[0]).exists()
