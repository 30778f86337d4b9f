"""Packing small trees into a disk image, read back without mounting (sfdisk, mtools, debugfs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from scooby.build import pack
from scooby.core import layout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    boot, root, data = tmp_path / "boot", tmp_path / "root", tmp_path / "data"
    (data / "scooby/agents/willow").mkdir(parents=True)
    (data / "scooby/agents/willow/state").write_text("kept\n")
    (boot / "overlays").mkdir(parents=True)
    (boot / "config.txt").write_text("kernel=vmlinuz\n")
    (boot / "overlays" / "disable-bt.dtbo").write_bytes(b"\x00dtbo")
    (root / "usr/bin").mkdir(parents=True)
    (root / "home/pi").mkdir(parents=True)
    su = root / "usr/bin/su"
    su.write_bytes(b"#!/bin/sh\n")
    su.chmod(0o4755)
    mine = root / "home/pi/notes"
    mine.write_text("mine\n")
    os.chown(mine, 1000, 1000)
    os.link(su, root / "usr/bin/su-link")
    (root / "usr/bin/sh").symlink_to("dash")
    return boot, root, data


def debugfs(image: Path, offset: int, request: str) -> str:
    done = subprocess.run(
        ["debugfs", "-R", request, f"{image}?offset={offset}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_pack_reads_back(tmp_path: Path):
    boot, root, data = tree(tmp_path)
    out = tmp_path / "images" / "disk.img"
    packed = pack.pack(boot, root, data, "buffy", out)
    assert out.is_file() and not list(out.parent.glob(".*.partial"))
    assert out.stat().st_size == packed.size

    table = json.loads(subprocess.check_output(["sfdisk", "-J", str(out)]))["partitiontable"]
    assert table["label"] == "dos" and table["id"] == f"0x{layout.disk_id('buffy')}"
    p1, p2, p3, p4 = table["partitions"]
    assert p1["type"] == "c" and p1.get("bootable") and p2["type"] == "83"
    assert p3["type"] == "83" and p4["type"] == "83" and not p2.get("bootable")
    for p in (p1, p2, p3, p4):
        assert p["start"] * 512 % pack.ALIGN == 0 and p["size"] * 512 % pack.ALIGN == 0
    for a, b in ((p1, p2), (p2, p3), (p3, p4)):
        assert a["start"] + a["size"] == b["start"]
    assert p3["size"] == p2["size"] == packed.root_size // 512  # slot B: as large as slot A
    assert (p4["start"] + p4["size"]) * 512 == packed.size  # data last: first boot grows it

    listing = subprocess.check_output(
        ["mdir", "-b", "-/", "-i", f"{out}@@{p1['start'] * 512}", "::"],
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        text=True,
    )
    assert "::/config.txt" in listing and "::/overlays/disable-bt.dtbo" in listing

    offset = p2["start"] * 512
    assert "Mode:  04755" in debugfs(out, offset, "stat /usr/bin/su")
    notes = debugfs(out, offset, "stat /home/pi/notes")
    assert "User:  1000   Group:  1000" in notes
    assert "Links: 2" in debugfs(out, offset, "stat /usr/bin/su")
    assert 'Fast link dest: "dash"' in debugfs(out, offset, "stat /usr/bin/sh")
    assert "scooby-root" in debugfs(out, offset, "stats")

    data_at = p4["start"] * 512
    assert "scooby-data" in debugfs(out, data_at, "stats")
    assert debugfs(out, data_at, "cat /scooby/agents/willow/state") == "kept\n"


def test_slot_b_is_unwritten_and_a_hole_in_the_file(tmp_path: Path):
    """Nothing writes slot B: bmap and the compressed release skip its blocks, and no file
    system signature there could be mistaken for a root."""
    boot, root, data = tree(tmp_path)
    packed = pack.pack(boot, root, data, "buffy", tmp_path / "disk.img")
    slot_b = pack.FIRST + packed.boot_size + packed.root_size
    with packed.image.open("rb") as f:
        next_data = os.lseek(f.fileno(), slot_b, os.SEEK_DATA)
    assert next_data >= slot_b + packed.root_size  # the data partition's blocks come next
    assert (
        "Bad magic number"
        in subprocess.run(
            ["debugfs", "-R", "stats", f"{packed.image}?offset={slot_b}"],
            capture_output=True,
            text=True,
        ).stderr
    )


def test_same_trees_same_image_but_access_and_change_times(tmp_path: Path):
    """Packing the same trees twice: identical FAT partition, identical ext4 metadata and
    contents for every file; only atime/ctime (set by the kernel on the source tree) differ."""
    boot, root, data = tree(tmp_path)
    a = pack.pack(boot, root, data, "buffy", tmp_path / "a.img")
    b = pack.pack(boot, root, data, "buffy", tmp_path / "b.img")
    fat = slice(pack.FIRST, pack.FIRST + a.boot_size)
    assert a.image.read_bytes()[fat] == b.image.read_bytes()[fat]
    offset = pack.FIRST + a.boot_size
    for path in ("/", "/usr/bin/su", "/usr/bin/sh", "/home/pi", "/home/pi/notes"):

        def stat(img: Path, path=path) -> list[str]:
            out = debugfs(img, offset, f"stat {path}").splitlines()
            return [line for line in out if "time" not in line and "checksum" not in line]

        assert stat(a.image) == stat(b.image), path
    assert debugfs(a.image, offset, "cat /home/pi/notes") == "mine\n"


def test_sizes_grow_with_content(tmp_path: Path):
    root = tmp_path / "r"
    root.mkdir()
    small, _ = pack.root_size(root)
    (root / "big").write_bytes(b"x" * (64 * pack.MIB))
    big, inodes = pack.root_size(root)
    assert big - small >= 64 * pack.MIB and big % pack.ALIGN == 0 and inodes > 32768
    assert pack.boot_size(root) >= pack.BOOT_MIN


def test_split_data_moves_the_state_and_leaves_mount_points(tmp_path: Path):
    from scooby.build.assemble import split_data

    root = tmp_path / "root"
    (root / "var/lib/scooby/secrets").mkdir(parents=True)
    (root / "var/lib/scooby/secrets/token").write_text("t\n")
    (root / "var/lib/scooby").chmod(0o711)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/k3s").write_text("k3s\n")
    os.link(root / "usr/bin/k3s", root / "var/lib/scooby/k3s")
    data = split_data(root, tmp_path / "data")
    assert (data / "scooby/secrets/token").read_text() == "t\n"
    assert (data / "scooby/k3s").stat().st_ino == (root / "usr/bin/k3s").stat().st_ino
    for on_master, name in layout.DATA_BINDS:  # /var/lib/rancher was not there: made
        mount_point = root / on_master.lstrip("/")
        assert mount_point.is_dir() and not list(mount_point.iterdir())
        assert (data / name).is_dir()
    assert (root / "var/lib/scooby").stat().st_mode & 0o777 == 0o711  # the mode it had
    assert (root / layout.DATA_MOUNT.lstrip("/")).is_dir()
    assert (data / layout.DATA_SSH.removeprefix(layout.DATA_MOUNT + "/")).is_dir()
