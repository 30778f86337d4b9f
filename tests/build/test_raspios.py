"""A Raspberry Pi OS base, from a small image the test makes in the same layout.

TEST DOUBLE: the real Raspberry Pi OS image (~0.5-3.5 GB, raspberrypi.com) can't be
downloaded here; `fake_raspios` builds an image with the same partition layout (MBR, FAT32
boot with kernel8.img/start4.elf/config.txt, ext4 root with os-release and apt sources),
zipped or xz-compressed, served from a file:// URL.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import subprocess
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from scooby.build import pack, raspios
from scooby.build.cache import Cache
from scooby.core.errors import ScoobyError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")

SOURCES = "deb http://raspbian.raspberrypi.com/raspbian/ bookworm main contrib non-free rpi\n"


def fake_raspios(tmp_path: Path) -> Path:
    boot, root = tmp_path / "src-boot", tmp_path / "src-root"
    (boot / "overlays").mkdir(parents=True)
    for name in ("kernel8.img", "start4.elf", "bootcode.bin", "config.txt", "cmdline.txt"):
        (boot / name).write_text(f"{name}\n")
    (boot / "overlays" / "vc4-kms-v3d.dtbo").write_text("dtbo\n")
    (root / "etc/apt").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    (root / "etc/apt/sources.list").write_text(SOURCES)
    (root / "usr/bin").mkdir(parents=True)
    sudo = root / "usr/bin/sudo"
    sudo.write_text("sudo\n")
    sudo.chmod(0o4755)
    (root / "home/pi").mkdir(parents=True)
    os.chown(root / "home/pi", 1000, 1000)
    data = tmp_path / "src-data"
    data.mkdir()
    image = pack.pack(boot, root, data, "raspberrypi", tmp_path / "raspios.img").image
    # Raspberry Pi OS's layout has two partitions, FAT then ext4: no slot B, no data.
    subprocess.run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "--delete", str(image), "3", "4"],
        check=True,
        capture_output=True,
    )
    return image


def zipped(image: Path) -> Path:
    out = image.with_suffix(".zip")
    with zipfile.ZipFile(out, "w") as z:
        z.write(image, image.name)
    return out


def xzed(image: Path) -> Path:
    out = image.with_suffix(".img.xz")
    out.write_bytes(lzma.compress(image.read_bytes(), preset=0))
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("compress", [zipped, xzed])
def test_stage_extracts_boot_root_and_apt(tmp_path: Path, compress):
    archive = compress(fake_raspios(tmp_path))
    base = SimpleNamespace(image_href=archive.as_uri(), image_sha256=sha(archive))
    cache = Cache(tmp_path / ".cache")
    with open(tmp_path / "log", "w") as log:
        (folder, key), cached, _ = raspios.stage(base, cache, log)
    assert not cached and folder == cache.stage_dir("raspios-base", key)

    boot = folder / "boot"
    assert (boot / "start4.elf").read_text() == "start4.elf\n"
    assert (boot / "vmlinuz").read_text() == "kernel8.img\n"  # the name config.txt uses
    assert (boot / "overlays" / "vc4-kms-v3d.dtbo").is_file()

    listing = subprocess.check_output(
        ["tar", "-tvf", str(folder / "rootfs.tar"), "--numeric-owner"], text=True
    )
    assert any(
        line.startswith("-rwsr-xr-x 0/0") and "usr/bin/sudo" in line
        for line in listing.splitlines()
    )
    assert any("1000/1000" in line and "home/pi" in line for line in listing.splitlines())
    assert (folder / "base.squashfs").stat().st_size > 0
    assert (folder / "apt" / "suite").read_text() == "bookworm\n"
    assert (folder / "apt" / "sources").read_text() == SOURCES
    assert not list(folder.glob("*.img"))  # the unpacked image is not kept

    with open(tmp_path / "log", "a") as log:
        (again, _), cached, _ = raspios.stage(base, cache, log)
    assert cached and again == folder
    # The download is cached too: the stage works offline once the file is there.
    assert list((cache.downloads / "raspios").iterdir())


def test_wrong_checksum_is_refused(tmp_path: Path):
    archive = zipped(fake_raspios(tmp_path))
    with pytest.raises(ScoobyError, match="sha256"):
        raspios.download(archive.as_uri(), "0" * 64, tmp_path / "downloads")
    assert not list((tmp_path / "downloads" / "raspios").iterdir())


def test_unreachable_says_where_to_put_the_file(tmp_path: Path):
    with pytest.raises(ScoobyError, match="to build offline"):
        raspios.download("http://127.0.0.1:9/raspios.zip", "0" * 64, tmp_path / "d")
