"""The firmware view: what the Pi firmware loads per model, from a boot folder or TFTP folder.

Boot folders here are made of empty files named as Debian's raspi-firmware and kernel
packages name them, with config.txt and cmdline.txt as render writes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scooby.build import firmware

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_BOOT = ROOT / "tests" / "golden" / "example" / "boot"
DEBIAN_FIRMWARE = ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat",
                   "start_x.elf", "fixup_x.dat", "start4x.elf", "fixup4x.dat",
                   "start_cd.elf", "fixup_cd.dat", "start4cd.elf", "fixup4cd.dat")  # fmt: skip
PI_DTBS = ("bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2837-rpi-3-a-plus.dtb",
           "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb")  # fmt: skip


def boot_folder(tmp_path: Path, config: str | None = None, drop: tuple[str, ...] = ()) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir(exist_ok=True)
    for name in (*DEBIAN_FIRMWARE, *PI_DTBS, "vmlinuz", "initrd.img"):
        if name not in drop:
            (boot / name).write_bytes(b"")
    (boot / "config.txt").write_text(config or (GOLDEN_BOOT / "config.txt").read_text())
    (boot / "cmdline.txt").write_text((GOLDEN_BOOT / "cmdline.txt").read_text())
    return boot


@pytest.mark.parametrize(
    "model, start, dtb",
    [
        ("Pi 3B", "start.elf", "bcm2837-rpi-3-b.dtb"),
        ("Pi 3B+", "start.elf", "bcm2837-rpi-3-b-plus.dtb"),
        ("Pi 4B", "start4.elf", "bcm2711-rpi-4-b.dtb"),
        ("Pi 400", "start4.elf", "bcm2711-rpi-400.dtb"),
        ("CM4", "start4.elf", "bcm2711-rpi-cm4-io.dtb"),
    ],
)
def test_rendered_config_loads_every_file_for_each_model(tmp_path, model, start, dtb):
    view = firmware.view(boot_folder(tmp_path), model)
    assert view.missing == []
    assert view.name("start") == start and view.name("dtb") == dtb
    assert view.name("kernel") == "vmlinuz" and view.name("initramfs") == "initrd.img"
    assert view.name("cmdline") == "cmdline.txt"
    assert (view.name("bootcode") == "bootcode.bin") == model.startswith("Pi 3")


def test_the_old_dtb_glob_is_caught(tmp_path):
    """The defect this check exists for: only bcm2711 trees in the boot partition."""
    boot = boot_folder(tmp_path, drop=("bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb"))
    problems = firmware.check(boot, tmp_path / "tftp", [])
    assert problems == [
        "boot partition: a Pi 3B master loads bcm2837-rpi-3-b.dtb (dtb): missing",
        "boot partition: a Pi 3B+ master loads bcm2837-rpi-3-b-plus.dtb (dtb): missing",
    ]


def test_an_overlay_that_does_not_exist_is_caught(tmp_path):
    config = (GOLDEN_BOOT / "config.txt").read_text() + "dtoverlay=disable-wifi\n"
    view = firmware.view(boot_folder(tmp_path, config), "Pi 4B")
    assert [(f.purpose, f.name) for f in view.missing] == [
        ("overlay disable-wifi", "overlays/disable-wifi.dtbo")
    ]


def test_a_missing_initramfs_is_caught(tmp_path):
    view = firmware.view(boot_folder(tmp_path, drop=("initrd.img",)), "Pi 3B")
    assert [f.name for f in view.missing] == ["initrd.img"]


def test_filters_sections_and_prefixes(tmp_path):
    config = (
        "[all]\narm_64bit=1\nupstream_kernel=1\nkernel=vmlinuz\n"
        "[pi4]\ninitramfs initrd-pi4.img followkernel\n"
        "[pi3+]\nkernel=vmlinuz-3plus\n"
        "[tryboot]\nkernel=never\n"
        "[none]\ncmdline=never.txt\n"
        "[all]\nstart_x=1\n"
    )
    boot = boot_folder(tmp_path, config)
    for name in ("initrd-pi4.img", "vmlinuz-3plus"):
        (boot / name).write_bytes(b"")
    pi4, pi3b, pi3plus = (firmware.view(boot, m) for m in ("Pi 4B", "Pi 3B", "Pi 3B+"))
    assert pi4.name("initramfs") == "initrd-pi4.img" and pi3b.name("initramfs") is None
    assert pi3plus.name("kernel") == "vmlinuz-3plus" and pi3b.name("kernel") == "vmlinuz"
    assert pi4.name("start") == "start4x.elf" and pi3b.name("start") == "start_x.elf"
    assert pi4.name("cmdline") == "cmdline.txt"
    # upstream_kernel=1 tries upstream/ first, and uses it when the kernel and tree are there
    (boot / "upstream").mkdir()
    for name in ("vmlinuz", "bcm2711-rpi-4-b.dtb", "cmdline.txt", "initrd-pi4.img"):
        (boot / "upstream" / name).write_bytes(b"")
    assert firmware.view(boot, "Pi 4B").name("kernel") == "upstream/vmlinuz"
    assert firmware.view(boot, "Pi 3B").name("kernel") == "vmlinuz"  # no Pi 3 tree there


def test_tftp_folders_bootcode_at_the_root(tmp_path):
    boot = boot_folder(tmp_path)
    tftp = tmp_path / "tftp"
    folder = tftp / "c6811a52"
    folder.mkdir(parents=True)
    for f in boot.iterdir():
        if f.name != "bootcode.bin":
            (folder / f.name).symlink_to(f)
    assert firmware.check(boot, tftp, ["c6811a52"]) == [
        f"{tftp}/bootcode.bin: a Pi 3B agent loads bootcode bootcode.bin: missing",
        f"{tftp}/bootcode.bin: a Pi 3B+ agent loads bootcode bootcode.bin: missing",
    ]
    (tftp / "bootcode.bin").symlink_to(boot / "bootcode.bin")
    assert firmware.check(boot, tftp, ["c6811a52"]) == []
    (folder / "bcm2711-rpi-4-b.dtb").unlink()
    assert firmware.check(boot, tftp, ["c6811a52"]) == [
        f"{folder}/bcm2711-rpi-4-b.dtb: a Pi 4B agent loads dtb bcm2711-rpi-4-b.dtb: missing"
    ]


def test_initramfs_module_list_names_each_models_root_path():
    """The acceptance set is in the list initramfs-tools reads (MODULES=list)."""
    listed = {
        line.split("#")[0].strip()
        for line in (ROOT / "templates/base/initramfs-tools/modules").read_text().splitlines()
    }
    for module in ("fixed", "gpio_regulator", "sd_mod", "usb_storage", "uas", "sdhci_iproc",
                   "bcm2835", "genet", "smsc95xx", "lan78xx", "smsc", "microchip",
                   "phy_generic", "nfs", "overlay", "squashfs"):  # fmt: skip
        assert module in listed, module
    conf = (ROOT / "templates/base/initramfs-tools/conf.d/scooby").read_text()
    assert "MODULES=list" in conf


def test_raspios_config_takes_initramfs8_only_where_the_image_has_one(tmp_path):
    config = "[all]\narm_64bit=1\nauto_initramfs=1\nenable_uart=1\n"
    boot = boot_folder(tmp_path, config)
    (boot / "kernel8.img").write_bytes(b"")
    old = firmware.view(boot, "Pi 4B")  # an image without initramfs8 (bullseye and older)
    assert old.missing == [] and old.name("kernel") == "kernel8.img"
    assert old.name("initramfs") == "initramfs8"  # looked for, not required
    (boot / "initramfs8").write_bytes(b"")
    assert [f.found for f in firmware.view(boot, "Pi 4B").files if f.purpose == "initramfs"] == [
        True
    ]
