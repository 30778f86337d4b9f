"""scooby.tftp.populate: bootcode.bin at the top, one folder per PXE ID of relative links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import EXAMPLE

from scooby.build import tftp
from scooby.core import layout
from scooby.core.errors import ScoobyError
from scooby.render import renderer as render
from scooby.validate import validator as validate

FIRMWARE = ("bootcode.bin", "start4.elf", "start.elf", layout.KERNEL, "overlays/disable-bt.dtbo")


@pytest.fixture
def master(tmp_path: Path):
    """A master root: the render's files, plus placeholder boot files in TFTP_BOOT."""
    cluster, diagnostics = validate.validate(EXAMPLE, environ={})
    assert cluster is not None, diagnostics
    out = render.render(cluster, tmp_path / "out").out
    root = out / "master"
    boot = root / layout.TFTP_BOOT.lstrip("/")
    for name in FIRMWARE:
        (boot / name).parent.mkdir(parents=True, exist_ok=True)
        (boot / name).write_text(f"placeholder {name}\n")
    return cluster, root / layout.TFTP_ROOT.lstrip("/"), boot


def test_bootcode_and_a_folder_per_pxe_id(master) -> None:
    cluster, root, boot = master
    tftp.populate(root, boot, cluster)
    assert os.readlink(root / "bootcode.bin") == ".boot/bootcode.bin"
    for agent in cluster.agents:
        folder = root / agent.pxe_id
        assert os.readlink(folder / "start4.elf") == "../.boot/start4.elf"
        assert os.readlink(folder / "overlays") == "../.boot/overlays"
        assert (folder / "overlays/disable-bt.dtbo").read_text().endswith("disable-bt.dtbo\n")
        # The agent's own files, rendered there, are files and stay so.
        for own in ("cmdline.txt", "config.txt"):
            assert (folder / own).is_file() and not (folder / own).is_symlink()


def test_links_stay_right_when_the_tree_moves(master, tmp_path: Path) -> None:
    cluster, root, boot = master
    tftp.populate(root, boot, cluster)
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    agent = cluster.agents[0]
    assert (moved / agent.pxe_id / "start4.elf").read_text() == "placeholder start4.elf\n"


def test_populating_again_is_harmless(master) -> None:
    cluster, root, boot = master
    first = sorted(map(str, tftp.populate(root, boot, cluster)))
    (boot / "fixup4.dat").write_text("new firmware file\n")
    second = sorted(map(str, tftp.populate(root, boot, cluster)))
    assert set(first) < set(second)
    agent = cluster.agents[0]
    assert (root / agent.pxe_id / "fixup4.dat").read_text() == "new firmware file\n"


def test_missing_bootcode_is_an_error(master) -> None:
    cluster, root, boot = master
    (boot / "bootcode.bin").unlink()
    with pytest.raises(ScoobyError, match="bootcode.bin"):
        tftp.populate(root, boot, cluster)
