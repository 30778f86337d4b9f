"""native-tools.sh (the build's hooks essential05 / customize05, customize10 and the finish):
the host's own tools mounted into a foreign root while packages install, run for real on a
small root in a private mount namespace.

The root stands in for the arm64 one: its /usr/bin files are placeholders (a real arm64 root
would need a cold build; the image test and docs/build.md compare the built roots member by
member with ones built without native tools). What is checked here is what the hook must
guarantee whatever the root: the tools run natively inside it, nothing of the root is written,
the host's files can't be deleted through the root while mounted, and `off` leaves the root
exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace and chroot"),
    pytest.mark.skipif(
        platform.machine() != "x86_64", reason="native tools are mounted on x86-64 hosts only"
    ),
]

HOOK = ROOT / "scooby" / "build" / "hooks" / "native-tools.sh"
TOOLS = ("dash", "grep", "sed", "perl", "dpkg-deb", "uname")


def foreign_root(tmp: Path) -> Path:
    """A merged-/usr root without /lib64 (as Debian's arm64 ones), its tools placeholders."""
    root = tmp / "root"
    for folder in ("usr/bin", "usr/lib/aarch64-linux-gnu", "usr/share", "etc", "dev"):
        (root / folder).mkdir(parents=True)
    for link in ("bin", "lib", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    for tool in TOOLS:
        (root / "usr/bin" / tool).write_text(f"arm64 {tool}\n")
    (root / "usr/bin/sh").symlink_to("dash")
    (root / "etc/words").write_text("alpha\nbeta\n")
    return root


def listing(root: Path) -> dict[str, str]:
    """Every path under root: its type, mode and content (or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what = "link " + os.readlink(path)
        elif path.is_dir():
            what = "dir"
        else:
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = f"{st.st_mode:o} {what}"
    return out


def in_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C"},
    )


def test_tools_run_natively_and_off_restores_the_root(tmp_path):
    root = foreign_root(tmp_path)
    before = listing(root)
    done = in_namespace(
        f"""
        mount --rbind /dev {root}/dev
        sh {HOOK} early {root}
        chroot {root} /usr/lib/scooby-native/grep -c b /etc/words
        cat {root}/usr/bin/grep
        sh {HOOK} on {root}
        chroot {root} /usr/bin/grep -c a /etc/words
        chroot {root} /bin/sh -c 'echo "$0" | /usr/bin/sed s/sh/SH/'
        chroot {root} /usr/bin/perl -MPerlIO -e 'print "perl ok\\n"'
        cat {root}/usr/bin/uname
        sh {HOOK} off {root}
        cat {root}/usr/bin/grep
        """
    )
    assert done.returncode == 0, done.stderr
    # before the essential install: a folder of native tools, the root's own files untouched
    assert done.stdout.splitlines()[:2] == ["1", "arm64 grep"]
    # then grep, the shell, sed and Perl (with its own modules) in the root's place, natively
    assert done.stdout.splitlines()[2:5] == ["2", "/bin/SH", "perl ok"]
    # uname is never swapped: it would name this machine's architecture
    assert "arm64 uname" in done.stdout
    assert done.stdout.splitlines()[-1] == "arm64 grep"
    assert listing(root) == before


def test_the_hosts_files_cannot_be_deleted_through_the_root(tmp_path):
    """A failed mmdebstrap removes its chroot with rm -rf while the mounts are still there."""
    root = foreign_root(tmp_path)
    done = in_namespace(
        f"""
        sh {HOOK} on {root}
        if rm -rf {root}/usr/lib 2>/dev/null; then echo removed; else echo refused; fi
        if rm -f {root}/usr/bin/grep 2>/dev/null; then echo removed; else echo refused; fi
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "refused"]
    assert Path("/usr/bin/grep").exists() and Path("/usr/lib/x86_64-linux-gnu").is_dir()


def test_a_root_with_its_own_lib64_is_left_alone(tmp_path):
    root = foreign_root(tmp_path)
    (root / "usr/lib64").mkdir()
    (root / "lib64").symlink_to("usr/lib64")
    before = listing(root)
    done = in_namespace(f"sh {HOOK} on {root}; cat {root}/usr/bin/grep; sh {HOOK} off {root}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "arm64 grep\n"
    assert listing(root) == before


def test_a_root_reached_through_a_link_is_unmounted_too(tmp_path):
    """mountinfo names the real path; a build's .cache may be a link (the test repos' is)."""
    root = foreign_root(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path)
    before = listing(root)
    via = tmp_path / "link" / "root"
    done = in_namespace(
        f"sh {HOOK} early {via}; sh {HOOK} on {via}; cat {root}/usr/bin/uname; "
        f"sh {HOOK} off {via}; cat {root}/usr/bin/grep"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "arm64 uname\narm64 grep\n"
    assert listing(root) == before


def test_private_tools_bring_their_own_libraries_and_vanish_with_the_namespace(tmp_path):
    """The finish's initramfs: initramfs-tools' hooks copy what is under /usr/lib/*-linux-gnu
    and mirror every /lib*, so the tools must run with nothing of this machine's there."""
    root = foreign_root(tmp_path)
    (root / "mnt").mkdir()
    before = listing(root)
    done = in_namespace(
        f"""
        sh {HOOK} private {root}
        chroot {root} /usr/bin/grep -c a /etc/words
        chroot {root} /bin/sh -c 'echo "$0" | /usr/bin/sed s/sh/SH/'
        ls -d {root}/lib64 {root}/usr/lib64 {root}/usr/lib/x86_64-linux-gnu 2>&1 || true
        cat {root}/usr/bin/perl {root}/usr/bin/uname
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["2", "/bin/SH"]  # natively, with the loader and libraries in /mnt
    assert all("No such file" in line for line in lines[2:5]), lines[2:5]
    # Perl (it finds its modules by fixed paths) and uname stay the root's own
    assert lines[5:] == ["arm64 perl", "arm64 uname"]
    assert listing(root) == before  # the namespace took the tmpfs and the mounts with it
