"""`scooby test-qemu --board raspi3b|raspi4b` on a freshly built default image.

The image is test_qemu.py's (same repository, same cached stages). Each test boots the
master on one of QEMU's Raspberry Pi boards under TCG with the image's own kernel, initrd,
the device tree the firmware would choose (upstream_kernel=1) and cmdline.txt: raspi3b from
the SD card and from a USB mass-storage device, raspi4b from the SD card. Slow (several
minutes each): marked `pi`, run by `nox -s test_qemu_pi` and the build workflow.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from test_qemu import ROOT, Built, assert_cleaned_up, build_repo, statuses

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.pi,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the test's network need root"),
]
PHASES = ("prepare", "root-mounted", "master-banner", "failed-units")


@pytest.fixture(scope="session")
def built() -> Built:
    return build_repo()


@pytest.mark.parametrize(
    "board, medium, device",
    [("raspi3b", "sd", "mmcblk"), ("raspi3b", "usb", "sd"), ("raspi4b", "sd", "mmcblk")],
)
def test_master_boots_on_pi_board(built: Built, board: str, medium: str, device: str):
    machines = subprocess.run(["qemu-system-aarch64", "-M", "help"], capture_output=True, text=True)
    if board not in machines.stdout:
        pytest.skip(f"this QEMU has no {board} board (raspi4b needs QEMU >= 9)")
    out = ROOT / "build" / f"test-qemu-{board}-{medium}"
    proc = subprocess.Popen(
        ["scooby", "test-qemu", "--repo", str(built.repo), "--image", str(built.image),
         "--board", board, "--medium", medium, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=3600)
    assert_cleaned_up(proc.pid, out)
    report = json.loads((out / "phases.json").read_text())
    got = statuses(report)
    assert proc.returncode == 0, f"{got}\n{stderr[-3000:]}"
    assert [p["name"] for p in report["phases"]] == list(PHASES)
    assert all(status == "passed" for status, _ in got.values()), got
    assert got["root-mounted"][1].startswith(f"/dev/{device}"), got["root-mounted"]
    prepare = got["prepare"][1]
    dtb = "bcm2837-rpi-3-b.dtb" if board == "raspi3b" else "bcm2711-rpi-4-b.dtb"
    assert f"dtb={dtb}" in prepare and "console=ttyS1,115200" in prepare, prepare
    print(f"{board} {medium}: {report['timings']}")
