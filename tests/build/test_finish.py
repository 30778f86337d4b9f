"""The agent base's finish (scooby.build.finish): which files it hands to the master's root,
and how they are added to the master's tarball, with the real tar. The whole finish (the
chroot's initramfs and byte-compilation) runs in every image build (tests/build/test_image.py)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from scooby.build import finish
from scooby.build.rootfs import EPOCH


def write(path: Path, text: str, when: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if when is not None:
        os.utime(path, (when, when))


def test_changed_files_are_what_is_newer_than_the_clamped_tarball(tmp_path: Path):
    epoch = int(EPOCH)
    tree = tmp_path / "tree"
    write(tree / "boot/vmlinuz-6.12", "kernel", epoch)
    write(tree / "boot/initrd.img-6.12", "initrd", None)  # written by the finish
    write(tree / "usr/lib/python3/dist-packages/yaml/__init__.py", "", epoch - 5)
    write(tree / "usr/lib/python3/dist-packages/yaml/__pycache__/x.pyc", "pyc", None)
    write(tree / "tmp/mkinitramfs-scratch", "", None)  # scratch space: never handed on
    write(tree / "proc/ignored", "", None)
    for folder in ("usr/lib/python3/dist-packages", "usr/lib/python3", "usr/lib", "usr"):
        os.utime(tree / folder, (epoch, epoch))
    changed = finish.changed_files(tree, epoch)
    assert changed == [
        "boot",
        "boot/initrd.img-6.12",
        "usr/lib/python3/dist-packages/yaml",
        "usr/lib/python3/dist-packages/yaml/__pycache__",
        "usr/lib/python3/dist-packages/yaml/__pycache__/x.pyc",
    ]


def test_appended_files_come_after_the_masters_own(tmp_path: Path):
    master = tmp_path / "master"
    write(master / "etc/hostname", "master", int(EPOCH))
    write(master / "boot/initrd.img-6.12", "stale", int(EPOCH))
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(master), "-cf", str(tarball), "."], check=True)
    stage = tmp_path / "agent"
    write(stage / "tree/boot/initrd.img-6.12", "finished", None)
    finish.write_tar(stage / "tree", ["boot/initrd.img-6.12"], stage / finish.FINISH_TAR)
    finish.append_to(tarball, stage)
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        last = members[-1]
        assert last.name == "./boot/initrd.img-6.12" and last.mtime == int(EPOCH)
        assert names.count("./boot/initrd.img-6.12") == 2 and "./etc/hostname" in names
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", str(tarball)], check=True)
    assert (out / "boot/initrd.img-6.12").read_text() == "finished"
    assert (out / "etc/hostname").read_text() == "master"


def test_a_failed_finish_is_raised_where_it_is_waited_for(tmp_path: Path):
    stage = tmp_path / "stage"
    stage.mkdir()  # no rootfs.tar: the untar fails
    running = finish.AgentFinish(stage)
    with pytest.raises(subprocess.CalledProcessError):
        running.wait()
    running.cancel()  # once it is over, a cancel changes nothing
