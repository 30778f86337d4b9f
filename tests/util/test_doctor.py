"""`scooby doctor`: scripts/packages.txt's programs and files, and the kernel's features."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from scooby.util import doctor


def test_the_list_reads_packages_programs_files_and_tags():
    packages = {p.name: p for p in doctor.read_packages()}
    assert "qemu-system-aarch64" in packages["qemu-system-arm"].gives
    assert packages["qemu-system-arm"].tags == {"backports"}
    # bookworm's ipxe-qemu has it under /usr/lib, trixie's under /usr/share: QEMU reads both
    assert packages["ipxe-qemu"].gives == (
        "/usr/share/qemu/efi-virtio.rom|/usr/lib/ipxe/qemu/efi-virtio.rom",
    )
    line = (ROOT / "scripts/packages.txt").read_text().splitlines()[packages["dnsmasq"].line - 1]
    assert line.split()[0] == "dnsmasq"


def test_a_missing_program_is_one_line_with_its_package(tmp_path: Path):
    listed = tmp_path / "packages.txt"
    listed.write_text("# comment\nsh-ok   sh\nfrobnicator   frob-no-such-program  /no/such/file\n")
    report = doctor.examine(listed)
    lines = [str(d) for d in doctor.diagnostics(report)]
    assert [c.what for c in report.missing() if c.line] == ["frob-no-such-program", "/no/such/file"]
    assert lines[0] == (
        "scripts/packages.txt:3: error: doctor: frob-no-such-program is missing: "
        "apt-get install frobnicator"
    )


def test_scooby_doctor_passes_on_a_machine_set_up_by_setup_sh():
    """This machine (and CI's root) ran scripts/setup.sh: nothing is missing."""
    run = subprocess.run([sys.executable, "-m", "scooby", "doctor"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "MISSING" not in run.stdout


@pytest.fixture(scope="session")
def bare_root() -> Path:
    """A minimal Debian root with Python and nothing of Scooby's list: mmdebstrap minbase,
    made once and kept under .cache/ (about 30 s and 150 MB)."""
    if os.geteuid() != 0 or not shutil.which("mmdebstrap"):
        pytest.skip("making a Debian root needs root and mmdebstrap")
    root = ROOT / ".cache" / "test-roots" / "bookworm-python3"
    if not (root / "usr/bin/python3").exists():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=python3",
                "bookworm",
                str(tmp),
            ],
            check=True,
        )
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root


@pytest.mark.image
def test_doctor_in_a_root_without_qemu_and_dnsmasq_names_both(bare_root: Path):
    """The acceptance check: a machine lacking qemu-system-arm and dnsmasq is told both, with
    their packages, and doctor exits 1. The checkout is mounted read-only into the root."""
    script = (
        'mkdir -p "$1/scooby" && mount --bind -o ro "$2" "$1/scooby" && '
        'mount -t proc proc "$1/proc" && '
        'exec chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 '
        'sh -c "cd /scooby && exec python3 -m scooby.util.doctor"'
    )
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(bare_root), str(ROOT)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    errors = run.stderr.splitlines()
    assert any(
        "qemu-system-aarch64 is missing: apt-get install qemu-system-arm" in e for e in errors
    ), run.stderr
    assert any("dnsmasq is missing: apt-get install dnsmasq" in e for e in errors), run.stderr
    assert all(e.startswith("scripts/packages.txt:") or ": error: doctor:" in e for e in errors)
    assert "Traceback" not in run.stderr
