"""The Debian base's three pockets: the apt lines, the archive state that keeps the cached base
fresh, and the Packages-index reader the security-versions test uses. A file:// mirror (a
real directory tree in Debian's layout) stands in for nothing: urllib reads it as apt would."""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

from scooby.build import archive

PACKAGES = """Package: openssl
Version: 3.5.4-1~deb13u1
Architecture: arm64

Package: linux-image-arm64
Version: 6.12.57-1
Architecture: arm64
Description: Linux for 64-bit ARMv8 machines (meta-package)
 a continuation line: Version: 0
"""


def test_three_pockets_with_their_own_mirrors() -> None:
    lines = archive.sources("trixie", "http://m/debian", "", "http://s/debian-security")
    assert lines == [
        "deb http://m/debian trixie main non-free-firmware",
        "deb http://m/debian trixie-updates main non-free-firmware",
        "deb http://s/debian-security trixie-security main non-free-firmware",
    ]
    updates = archive.sources("bookworm", "http://m/debian", "http://u/debian", "http://s/ds")
    assert updates[1] == "deb http://u/debian bookworm-updates main non-free-firmware"


def mirror(root: Path, dist: str, packages: str) -> str:
    """A one-pocket mirror under ROOT: dists/DIST/{InRelease, main/binary-arm64/Packages.xz}."""
    xz = lzma.compress(packages.encode())
    index = root / "dists" / dist / "main" / "binary-arm64" / "Packages.xz"
    index.parent.mkdir(parents=True)
    index.write_bytes(xz)
    digest = hashlib.sha256(xz).hexdigest()
    (root / "dists" / dist / "InRelease").write_text(
        f"Origin: Debian\nCodename: {dist}\nDate: Mon, 30 Nov 2026 00:22:33 UTC\nMD5Sum:\n"
        f" {'0' * 32} {len(xz)} main/binary-arm64/Packages.xz\nSHA256:\n"
        f" {digest} {len(xz)} main/binary-arm64/Packages.xz\n"
        f" {'1' * 64} 12 main/binary-amd64/Packages.xz\n"
    )
    return digest


def test_the_state_is_the_indices_digests_and_changes_with_them(tmp_path: Path) -> None:
    digest = mirror(tmp_path, "trixie-security", PACKAGES)
    line = f"deb file://{tmp_path} trixie-security main non-free-firmware"
    url = f"file://{tmp_path}/dists/trixie-security/InRelease"
    assert archive.state([line]) == {url: {"main/binary-arm64/Packages.xz": digest}}
    again = tmp_path / "again"
    mirror(again, "trixie-security", PACKAGES.replace("3.5.4-1~deb13u1", "3.5.5-1~deb13u1"))
    moved = f"deb file://{again} trixie-security main non-free-firmware"
    assert archive.state([moved]) != archive.state([line])


def test_an_unreachable_archive_is_no_state(tmp_path: Path) -> None:
    assert archive.state([f"deb file://{tmp_path}/nothing trixie main"]) is None


def test_versions_from_a_packages_index_and_a_dpkg_status(tmp_path: Path) -> None:
    mirror(tmp_path, "trixie", PACKAGES)
    text = archive.packages_index(f"deb file://{tmp_path} trixie main")
    assert archive.versions(text, {"openssl", "linux-image-arm64"}) == {
        "openssl": ["3.5.4-1~deb13u1"],
        "linux-image-arm64": ["6.12.57-1"],
    }
    status = (
        "Package: openssl\nStatus: install ok installed\nVersion: 3.5.4-1~deb13u1\n\n"
        "Package: libssl3\nStatus: deinstall ok config-files\nVersion: 3.0.11-1\n"
    )
    assert archive.versions(status, {"openssl", "libssl3"}) == {"openssl": ["3.5.4-1~deb13u1"]}
