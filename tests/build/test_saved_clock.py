"""fake-hwclock's saved time in the master's root (assemble.saved_clock): the archive's newest
Date, not the build's clock, so two builds of the same inputs give the same file. The image
test checks it in a built image."""

from __future__ import annotations

import os
from pathlib import Path

from scooby.build.assemble import FAKE_HWCLOCK_DATA, archive_time, saved_clock

ARCHIVE = (
    "trixie-security@2026-11-30T00:22:33Z,trixie-updates@2026-11-30T02:21:41Z,"
    "trixie@2026-11-21T09:15:44Z"
)


def root_with_clock(tmp_path: Path, saved: str) -> Path:
    root = tmp_path / "root"
    data = root / FAKE_HWCLOCK_DATA.lstrip("/")
    data.parent.mkdir(parents=True)
    data.write_text(saved)
    data.chmod(0o644)
    return root


def test_the_newest_pocket_date_is_the_saved_time(tmp_path: Path):
    root = root_with_clock(tmp_path, "2026-12-02 15:51:07\n")  # the postinst's: the build's clock
    saved_clock(root, ARCHIVE)
    data = root / FAKE_HWCLOCK_DATA.lstrip("/")
    assert data.read_text() == "2026-11-30 02:21:41\n"  # trixie-updates, as `date -u` writes it
    assert data.stat().st_mode & 0o777 == 0o644


def test_two_builds_at_other_times_save_the_same_time(tmp_path: Path):
    first = root_with_clock(tmp_path / "1", "2026-12-02 15:51:07\n")
    second = root_with_clock(tmp_path / "2", "2026-12-02 17:03:59\n")
    for root in (first, second):
        saved_clock(root, ARCHIVE)
    path = FAKE_HWCLOCK_DATA.lstrip("/")
    assert (first / path).read_bytes() == (second / path).read_bytes()


def test_without_an_archive_date_the_file_stays(tmp_path: Path):
    """An older stand-in would set a Pi's first clock back (fake-hwclock 0.14 loads the saved
    time whatever the clock says): no archive date, no change."""
    root = root_with_clock(tmp_path, "2026-12-02 15:51:07\n")
    saved_clock(root, "")
    assert (root / FAKE_HWCLOCK_DATA.lstrip("/")).read_text() == "2026-12-02 15:51:07\n"


def test_no_fake_hwclock_no_file(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    saved_clock(root, ARCHIVE)
    assert not os.listdir(root / "etc")


def test_archive_time_reads_each_pocket():
    assert archive_time(ARCHIVE).isoformat() == "2026-11-30T02:21:41+00:00"
    assert archive_time("") is None
    assert archive_time("trixie@someday") is None
