"""scooby.build.nativepy and hooks/native-python.sh: the standard library's compile in the
agent base, run by this machine's build of the root's Python.

The real check runs the real parts: the agent root a cold build made (its tarball in
.cache/stages), the native interpreter that build prepared (.cache/downloads/native-python),
native-tools.sh's early/on/off around them, and the root's own python3.X under qemu-user. The
native compile must write the very bytes the root's own compile wrote.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

from scooby.build import nativepy
from scooby.build.rootfs import EPOCH

HOOK = ROOT / "scooby" / "build" / "hooks" / "native-tools.sh"
STAGES = ROOT / ".cache" / "stages"
NATIVE = ROOT / ".cache" / "downloads" / nativepy.FOLDER


def stanza(name: str, version: str, **fields: str) -> dict[str, str]:
    return {"Package": name, "Version": version, "Base": "http://x", **fields}


def test_the_newest_version_of_each_package_wins_across_pockets():
    found = nativepy.newest(
        [
            stanza("libc6", "2.41-12"),
            stanza("libc6", "2.41-12+deb13u5"),  # a point release
            stanza("libc6", "2.41-9"),
            stanza("zlib1g", "1:1.3.1-1"),
            stanza("zlib1g", "1.4-1"),  # no epoch: older than any 1:
        ]
    )
    assert found["libc6"]["Version"] == "2.41-12+deb13u5"
    assert found["zlib1g"]["Version"] == "1:1.3.1-1"


def test_the_interpreter_is_the_one_python3_minimal_depends_on():
    stanzas = {
        "python3-minimal": stanza("python3-minimal", "3.13.5-1",
                                  **{"Pre-Depends": "python3.13-minimal (>= 3.13.5-1~)"}),
        "python3.13-minimal": stanza("python3.13-minimal", "3.13.5-2"),
        "python3.14-minimal": stanza("python3.14-minimal", "3.14.0-1"),
        **{lib: stanza(lib, "1") for lib in nativepy.LIBS},
    }  # fmt: skip
    assert nativepy.interpreter(stanzas) == "python3.13"
    del stanzas["libexpat1"]
    with pytest.raises(nativepy.Unavailable, match="libexpat1"):
        nativepy.interpreter(stanzas)


def test_the_signed_index_names_the_packages_digest():
    in_release = (
        "Origin: Debian\nSHA256:\n 00aa 12 main/binary-arm64/Packages.xz\n"
        " 11bb 34 main/binary-amd64/Packages.xz\nSHA512:\n 22cc 34 main/binary-amd64/Packages.xz\n"
    )
    assert nativepy.sha256_of(in_release, "main/binary-amd64/Packages.xz") == "11bb"
    with pytest.raises(nativepy.Unavailable):
        nativepy.sha256_of(in_release, "contrib/binary-amd64/Packages.xz")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="a native Python on x86-64 only")
def test_unreachable_archive_offers_the_newest_prepared_one_or_none(tmp_path):
    lines = ["deb http://127.0.0.1:9/debian trixie main"]  # nothing listens on port 9
    folder, said = nativepy.prepare(lines, tmp_path)
    assert folder is None and "emulated" in said
    for age, name in ((200, "python3.13_3.13.5-1"), (100, "python3.13_3.13.5-2")):
        made = tmp_path / nativepy.FOLDER / name
        made.mkdir(parents=True)
        (made / "version").write_text(name.split("_")[1] + "\n")
        os.utime(made / "version", (time.time() - age,) * 2)
    (tmp_path / nativepy.FOLDER / "python3.13_3.13.5-3").mkdir()  # interrupted: no version
    folder, said = nativepy.prepare(lines, tmp_path)
    assert folder == tmp_path / nativepy.FOLDER / "python3.13_3.13.5-2"
    assert "newest" in said


def built_root() -> tuple[Path, str, Path]:
    """The newest agent base's tarball, its python3.X and the native one of that version."""
    tarballs = sorted(STAGES.glob("agent-base-*/rootfs.tar"), key=lambda p: p.stat().st_mtime)
    if not tarballs:
        pytest.skip("needs an agent base built here: ./scripts/build.sh")
    with tarfile.open(tarballs[-1]) as tar:
        status = tar.extractfile("./var/lib/dpkg/status").read().decode()
    found = re.search(r"Package: (python3\.\d+)-minimal\n(?:.+\n)*?Version: (\S+)", status)
    assert found, "the agent root has no python3.X-minimal"
    native = NATIVE / f"{found[1]}_{found[2]}"
    if not (native / "version").is_file():
        pytest.skip(f"no native {native.name}: prepared by a cold build (./scripts/build.sh)")
    return tarballs[-1], found[1], native


def pycs(root: Path, python: str) -> dict[str, bytes]:
    """Each .pyc of the standard library, its flags word left out (customize76 sets it)."""
    out = {}
    for path in (root / "usr/lib" / python).rglob("*.pyc"):
        data = path.read_bytes()
        out[str(path.relative_to(root))] = data[:4] + data[8:]
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace and chroot")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="a native Python on x86-64 only")
def test_the_stdlib_compiles_natively_to_the_same_bytes_and_off_restores_the_root(tmp_path):
    tarball, python, native = built_root()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(tarball), "--numeric-owner", "-C", str(root)], check=True)
    built = pycs(root, python)
    for pyc in built:
        (root / pyc).unlink()  # as before the postinsts ran
    info = root / "var/lib/dpkg/info"
    files = [
        line
        for lists in info.glob(f"libpython{python.removeprefix('python')}-*.list")
        for line in lists.read_text().splitlines()
        if re.fullmatch(rf"/usr/lib/{re.escape(python)}/.*\.py", line)
    ]
    interpreter = (root / "usr/bin" / python).read_bytes()
    diversions = (root / "var/lib/dpkg/diversions").read_bytes()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", f"""
        mount -t proc proc {root}/proc
        mount --rbind /dev {root}/dev
        SCOOBY_NATIVE_PYTHON={native} sh {HOOK} early {root}
        sh {HOOK} on {root}
        chroot {root} /usr/bin/{python} -E -S /usr/lib/{python}/py_compile.py "$@"
        chroot {root} python3 -c 'import platform, sys; print(sys.executable, platform.machine())'
        sh {HOOK} off {root}
        umount -l {root}/dev {root}/proc
        """, "sh", *files],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},  # as the build: hash-based .pyc
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # the compile ran natively, and wrote what the root's own interpreter had written
    assert f"{len(files)} modules compiled by this machine's {python}" in done.stderr
    assert pycs(root, python) == built
    # any other call is the root's own interpreter, under the name it was called by
    assert "/usr/bin/python3 aarch64" in done.stdout.splitlines()
    # off: the interpreter back in its place, no diversion, nothing of the wrapper left
    assert (root / "usr/bin" / python).read_bytes() == interpreter
    assert not (root / "usr/bin" / f"{python}.distrib").exists()
    assert (root / "var/lib/dpkg/diversions").read_bytes() == diversions
    assert not (root / "usr/lib/scooby-native").exists()
