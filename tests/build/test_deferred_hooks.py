"""The base build's deferred /etc/ssl/certs (hooks essential40-defer-ca-certificates.sh and
customize20-ca-certificates.sh), run for real on a small root.

The root is this machine's /usr seen through an OverlayFS, so the hooks' tools (dpkg-divert,
update-ca-certificates, openssl) are real; it lives in a private mount namespace, gone with the
test. The image test checks the same result in the built image, and the build's docs compare
it with an emulated build's file by file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace and chroot"),
    pytest.mark.skipif(
        not Path("/usr/sbin/update-ca-certificates").exists(), reason="no ca-certificates here"
    ),
]

HOOKS = ROOT / "scooby" / "build" / "hooks"


def small_root(tmp: Path, name: str) -> Path:
    root = tmp / name
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():  # merged /usr: /bin -> usr/bin, ...
            (root / link).parent.mkdir(parents=True, exist_ok=True)
            (root / link).symlink_to(os.readlink(f"/{link}"))
    for folder in ("usr", "dev", "tmp", "etc/ssl/certs", "etc/ca-certificates/update.d"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/diversions").write_text("")
    (root / "var/lib/dpkg/status").write_text("")
    shutil.copy("/etc/ca-certificates.conf", root / "etc")
    return root


def in_root(tmp: Path, root: Path, commands: str) -> subprocess.CompletedProcess:
    """`commands` with root's /usr an OverlayFS over this machine's (upper layer under tmp)."""
    upper, work = tmp / f"{root.name}-upper", tmp / f"{root.name}-work"
    upper.mkdir()
    work.mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir=/usr,upperdir={upper},workdir={work} {root}/usr"
        f" && mount -t devtmpfs none {root}/dev && {commands}"
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
    )


def certs(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted((root / "etc/ssl/certs").iterdir()):
        if path.is_symlink():
            out[path.name] = "-> " + os.readlink(path)
        else:
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_deferred_certificates_are_the_ones_the_package_makes(tmp_path: Path):
    reference = small_root(tmp_path, "reference")
    done = in_root(tmp_path, reference, f"chroot {reference} update-ca-certificates --fresh")
    assert done.returncode == 0, done.stderr
    root = small_root(tmp_path, "deferred")
    tool = "/usr/sbin/update-ca-certificates"
    done = in_root(
        tmp_path,
        root,
        f"{HOOKS}/essential40-defer-ca-certificates.sh {root}"
        # what ca-certificates' postinst and trigger run, now the stand-in: nothing made
        f" && chroot {root} update-ca-certificates --hooksdir '' --fresh"
        f' && chroot {root} update-ca-certificates && test -z "$(ls -A {root}/etc/ssl/certs)"'
        f" && {HOOKS}/customize20-ca-certificates.sh {root}"
        f" && ! grep -q scooby {root}{tool} && test ! -e {root}{tool}.distrib",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    made = certs(root)
    assert made == certs(reference)
    assert len(made) > 100 and "ca-certificates.crt" in made
    assert (root / "var/lib/dpkg/diversions").read_text() == ""


FAKE_DEPMOD = """#!/bin/sh
# stands for kmod's depmod: slow, and says by which name it was started
sleep 2
[ -e /etc/depmod-fails ] && { echo "depmod: ERROR: fake" >&2; exit 3; }
echo "fake depmod started as ${0##*/} with: $*"
echo "$*" >>/tmp/depmod-ran
"""


def deferred_depmod(tmp_path: Path, fails: bool) -> tuple[Path, subprocess.CompletedProcess]:
    """essential60-defer-depmod.sh, kmod's depmod unpacked at the diverted name, the kernel's
    postinst call (timed: it must return before depmod is done), then deferred-depmod.sh."""
    root = small_root(tmp_path, "depmod-fails" if fails else "depmod")
    (root / "var/cache").mkdir(parents=True)
    if fails:
        (root / "etc/depmod-fails").write_text("")
    fake = tmp_path / "fake-depmod"
    fake.write_text(FAKE_DEPMOD)
    done = in_root(
        tmp_path,
        root,
        f"{HOOKS}/essential60-defer-depmod.sh {root}"
        f" && install -m 0755 {fake} {root}/usr/sbin/depmod.distrib"
        f" && start=$(date +%s%N) && chroot {root} depmod 6.12-test"
        f' && echo "postinst waited $((($(date +%s%N) - start) / 1000000)) ms"'
        f" && test ! -e {root}/tmp/depmod-ran"
        f" && {HOOKS}/deferred-depmod.sh {root}"
        # the real depmod is back at its name
        f" && grep -q 'stands for kmod' {root}/usr/sbin/depmod"
        f" && test ! -e {root}/usr/sbin/depmod.distrib",
    )
    return root, done


def test_deferred_depmod_runs_in_the_background_and_is_waited_for(tmp_path: Path):
    root, done = deferred_depmod(tmp_path, fails=False)
    assert done.returncode == 0, done.stdout + done.stderr
    waited = int(done.stdout.split("postinst waited ")[1].split(" ms")[0])
    assert waited < 1500, done.stdout  # depmod itself takes 2 s
    assert "runs in the background" in done.stdout
    assert "fake depmod started as depmod with: 6.12-test" in done.stdout
    assert (root / "tmp/depmod-ran").read_text() == "6.12-test\n"
    # The stand-in's records and the diversion are gone.
    assert (root / "var/lib/dpkg/diversions").read_text() == ""
    assert not (root / "var/cache/scooby-depmod").exists()


def test_a_failed_background_depmod_fails_the_build(tmp_path: Path):
    root, done = deferred_depmod(tmp_path, fails=True)
    assert done.returncode != 0
    assert "depmod: ERROR: fake" in done.stdout + done.stderr
    assert "depmod 6.12-test (in the background) failed with status 3" in done.stderr
