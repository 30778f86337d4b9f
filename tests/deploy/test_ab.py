"""The laptop's side of an A/B deploy, without a master: the root file system taken out of a
real image file (made by the build's own pack), fitted to a slot, its sha256; the boot
partition's files and their install script (run here on a folder); the plan's A/B lines;
and the refusals that come before anything is sent.

What needs a master (the stream into scooby-slot, the trial boot, the wait) runs in
`nox -s test_day2` against a booted one.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import WILLOW, write_repo

from scooby.build import pack
from scooby.core import layout
from scooby.core.errors import ScoobyError
from scooby.deploy import Target, ab, deploy_ab, image
from scooby.deploy.plan import describe, plan
from scooby.load import load_or_raise
from scooby.render import render
from scooby.render.record import record

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="pack stores root-owned files")


def trees(tmp: Path) -> tuple[Path, Path, Path]:
    boot, root, data = tmp / "boot", tmp / "root", tmp / "data"
    (boot / "overlays").mkdir(parents=True)
    (boot / "config.txt").write_text("kernel=vmlinuz\n")
    (boot / "overlays" / "disable-bt.dtbo").write_bytes(b"\x00dtbo")
    (root / "etc/scooby").mkdir(parents=True)
    (root / "etc/scooby/release").write_text("SCOOBY_VERSION=test\n")
    # Some incompressible bytes, so the file system has something to keep when shrunk.
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/blob").write_bytes(os.urandom(3 * 2**20))
    (data / "scooby").mkdir(parents=True)
    return boot, root, data


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[pack.Packed, Path]:
    if os.geteuid() != 0:
        pytest.skip("pack stores root-owned files")
    tmp = tmp_path_factory.mktemp("ab")
    boot, root, data = trees(tmp)
    return pack.pack(boot, root, data, "buffy", tmp / "scooby.img"), boot


def debugfs_cat(fs: Path, path: str) -> bytes:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(fs)], capture_output=True, check=True
    ).stdout


@needs_root
def test_the_root_comes_out_of_the_image_by_its_mbr(packed, tmp_path):
    img, _ = packed
    parts = image.partitions(img.image)
    assert sorted(parts) == [1, 2, 3, 4]
    root = parts[layout.ROOT_PARTITION]
    assert root.size == img.root_size and parts[3].size == img.root_size
    fs = tmp_path / "root.ext4"
    copied = image.copy_out(img.image, root, fs)
    assert fs.stat().st_size == root.size == image.ext4_size(fs)
    # Sparse: a fresh ext4's free space was never written, and the copy keeps it a hole.
    assert copied < root.size // 4 and fs.stat().st_blocks * 512 < root.size // 4
    with open(img.image, "rb") as f:
        f.seek(root.start)
        want = hashlib.sha256(f.read(root.size)).hexdigest()
    assert image.sha256(fs, root.size) == want
    assert debugfs_cat(fs, "/etc/scooby/release") == b"SCOOBY_VERSION=test\n"
    clean = subprocess.run(["e2fsck", "-fn", str(fs)], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout


@needs_root
def test_a_root_larger_than_the_slot_is_shrunk_to_it(packed, tmp_path):
    img, _ = packed
    fs = tmp_path / "root.ext4"
    image.copy_out(img.image, image.root_partition(img.image), fs)
    slot = img.root_size - 64 * 2**20  # a master flashed with a smaller root
    size = image.fit(fs, slot)
    assert size <= slot and image.ext4_size(fs) == size
    os.truncate(fs, size)
    clean = subprocess.run(["e2fsck", "-fn", str(fs)], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    assert debugfs_cat(fs, "/etc/scooby/release") == b"SCOOBY_VERSION=test\n"
    # One that fits is left as it is.
    assert image.fit(fs, slot) == size


@needs_root
def test_a_root_whose_files_do_not_fit_the_slot_is_refused(packed, tmp_path):
    img, _ = packed
    fs = tmp_path / "root.ext4"
    image.copy_out(img.image, image.root_partition(img.image), fs)
    with pytest.raises(image.TooLarge, match=r"needs \d+ MiB, and the master's slot holds 2 MiB"):
        image.fit(fs, 2 * 2**20)


@needs_root
def test_the_boot_partitions_files_and_what_changed(packed):
    img, boot = packed
    files = image.boot_files(img.image, image.partitions(img.image)[layout.BOOT_PARTITION])
    assert files == image.tree_sums(boot)
    assert set(files) == {"config.txt", "overlays/disable-bt.dtbo"}
    master = dict(files, **{"config.txt": "0" * 64, "only-on-the-master": "1" * 64})
    master.pop("overlays/disable-bt.dtbo")
    assert ab.boot_changes(files, master) == ["config.txt", "overlays/disable-bt.dtbo"]
    assert ab.boot_changes(files, files) == []


def test_the_boot_install_checks_every_file_before_it_renames_one(tmp_path):
    """boot_install's shell, run here on a folder standing in for /boot/firmware."""
    folder = tmp_path / "firmware"
    (folder / "overlays").mkdir(parents=True)
    (folder / "vmlinuz").write_bytes(b"old kernel")
    (folder / "config.txt").write_text("old\n")
    new = tmp_path / "new"
    (new / "overlays").mkdir(parents=True)
    (new / "vmlinuz").write_bytes(b"new kernel")
    (new / "overlays" / "x.dtbo").write_bytes(b"dtbo")
    files = {"vmlinuz": new / "vmlinuz", "overlays/x.dtbo": new / "overlays" / "x.dtbo"}
    sums = image.tree_sums(new)
    script = ab.boot_install(str(folder))

    damaged = dict(sums, vmlinuz="0" * 64)
    done = subprocess.run(["sh", "-c", script], input=ab.boot_tar(files, damaged),
                          capture_output=True)  # fmt: skip
    assert done.returncode != 0
    assert (folder / "vmlinuz").read_bytes() == b"old kernel"
    assert not (folder / "overlays" / "x.dtbo").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["config.txt", "overlays", "vmlinuz"]

    done = subprocess.run(["sh", "-c", script], input=ab.boot_tar(files, sums), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert (folder / "vmlinuz").read_bytes() == b"new kernel"
    assert (folder / "overlays" / "x.dtbo").read_bytes() == b"dtbo"
    assert (folder / "config.txt").read_text() == "old\n"  # not in the new set: left alone
    assert sorted(p.name for p in folder.iterdir()) == ["config.txt", "overlays", "vmlinuz"]


def test_the_boot_tar_carries_the_sums():
    with tarfile.open(fileobj=io.BytesIO(ab.boot_tar({}, {}))) as tar:
        assert tar.getnames() == ["SHA256SUMS"]


def test_scooby_slot_status_is_read_as_key_value_lines():
    text = (
        "BOOTED=a\nCOMMITTED=a\nTRIAL=\nTRIES=0\nVERIFIED=b:abc\n"
        "LAST='trial b failed: dnsmasq is failed'\nRELEASE_A=0.1/x\nRELEASE_B=\n"
    )
    status = ab.parse_status(text)
    assert status["BOOTED"] == "a" and status["TRIAL"] == "" and status["RELEASE_B"] == ""
    assert status["LAST"] == "trial b failed: dnsmasq is failed"  # shlex.quote'd by scooby-slot
    assert ab.other("a") == "b" and ab.other("b") == "a"
    with pytest.raises(ScoobyError, match="a trial of slot b is under way"):
        ab.check_idle(Target("spike@buffy"), dict(status, TRIAL="b"))
    assert ab.check_idle(Target("spike@buffy"), status) == "a"


def state(tmp: Path, name: str, files: dict[str, str]) -> tuple[object, dict]:
    repo = write_repo(tmp / name, files)
    cluster = load_or_raise(repo, environ={})
    return cluster, record(cluster, render(cluster, tmp / f"{name}-out").out)


def test_a_reboot_plan_says_what_goes_with_the_slot_and_what_goes_live(tmp_path):
    _, v1 = state(tmp_path, "v1", {"config": "", "agents/willow.agent": WILLOW})
    manifest = "server/var/lib/rancher/k3s/server/manifests/hello.yaml"
    _, v2 = state(tmp_path, "v2", {
        "config": "", "agents/willow.agent": WILLOW, manifest: "kind: Namespace\n",
        "server/etc/systemd/system/extra.service": "[Unit]\n",
    })  # fmt: skip
    v2["release"] = dict(v2["release"], suite="forky")
    p = plan(v1, v2)
    assert "/etc/systemd/system/extra.service" in p.reboot
    in_slot, live = ab.sent_by_slot(p)
    assert in_slot == ["/etc/systemd/system/extra.service"]
    assert live == ["/var/lib/rancher/k3s/server/manifests/hello.yaml"]
    text = "\n".join(describe(p, "buffy") + ab.describe(p, False))
    assert "REBOOT (A/B)" in text and "release suite: trixie -> forky" in text
    assert "1 changed files come with it" in text and "1 files on the data partition" in text
    assert "REFUSED" not in text


def test_a_boot_partition_change_is_refused_before_anything_is_sent(tmp_path):
    cluster, v1 = state(tmp_path, "v1", {"config": "", "agents/willow.agent": WILLOW})
    v2 = dict(v1, files=dict(v1["files"]))
    v2["files"]["/boot/firmware/config.txt"] = {"sha256": "0" * 64, "mode": 0o644}
    p = plan(v1, v2)
    assert "--allow-kernel-change" in "\n".join(ab.describe(p, False))
    assert "REFUSED" not in "\n".join(ab.describe(p, True))
    # Port 1 on loopback: any connection would fail with another message.
    nowhere = Target("spike@127.0.0.1", 1, options=("ConnectTimeout=5",))
    with pytest.raises(ScoobyError) as refused:
        deploy_ab(cluster, nowhere, tmp_path / "work", tmp_path, v1, v2, p, False, 60,
                  lambda line: None, 0.0)  # fmt: skip
    (line,) = map(str, refused.value.diagnostics)
    assert line == (
        "spike@127.0.0.1: error: the boot partition changes (/boot/firmware/config.txt): A/B"
        " does not protect it (both slots share it); --allow-kernel-change to write it anyway"
    )
    assert not (tmp_path / "work").exists()


def test_the_deploy_options_are_there():
    done = subprocess.run([sys.executable, "-m", "scooby", "deploy", "--help"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0
    assert "--allow-kernel-change" in done.stdout and "--wait SECONDS" in done.stdout


def test_partitions_of_an_image_whose_name_ends_in_a_digit(tmp_path):
    """sfdisk names the partitions of card1 card1p1, card1p2 (as a disk's nodes)."""
    card = tmp_path / "card1"
    with open(card, "wb") as f:
        f.truncate(64 * 2**20)
    script = "label: dos\nunit: sectors\nstart=8192, size=8192, type=c\nstart=16384, type=83\n"
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", str(card)], input=script,
                   capture_output=True, text=True, check=True)  # fmt: skip
    parts = image.partitions(card)
    assert sorted(parts) == [1, 2]
    assert parts[1] == image.Partition(1, 8192 * 512, 8192 * 512)
    assert parts[2].start == 16384 * 512 and parts[2].size == 64 * 2**20 - 16384 * 512
