"""test-qemu's shared SSH connection against a real sshd, in a network namespace of the test's
own (root): it waits for sshd's greeting, shares one login between commands, falls back to a
connection of its own when the shared one is gone, and leaves no ssh process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from scooby.testqemu.ssh import Link, says_ssh, wait_ssh

SSHD = "/usr/sbin/sshd"
PORT = 2298

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root"),
    pytest.mark.skipif(not Path(SSHD).exists() or not shutil.which("ssh"), reason="no OpenSSH"),
]


@pytest.fixture
def sshd(tmp_path: Path):
    ns = f"scbq-ssh-{os.getpid() % 100000}"
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
        )
    shutil.copy(tmp_path / "user.pub", tmp_path / "authorized_keys")
    user = os.environ.get("USER") or "root"
    (tmp_path / "sshd_config").write_text(
        f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n"
    )
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns, tmp_path, user
    finally:
        pid = tmp_path / "sshd.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), 15)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def start_sshd(ns: str, tmp: Path) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, SSHD, "-f", str(tmp / "sshd_config"), "-E", str(tmp / "log")],
        check=True,
    )


def logins(tmp: Path) -> int:
    return (tmp / "log").read_text().count("Accepted publickey")


def test_commands_share_one_login_and_nothing_is_left(sshd) -> None:
    ns, tmp, user = sshd
    link = Link(ns, tmp / "user", user, "127.0.0.1", PORT, tmp / "control")
    assert not says_ssh(ns, "127.0.0.1", PORT)  # nothing listens yet
    start_sshd(ns, tmp)
    wait_ssh(link, time.monotonic() + 30)
    assert link.up()
    for n in range(3):
        done = link.run(f"echo {n}", 30)
        assert (done.returncode, done.stdout) == (0, f"{n}\n")
    assert logins(tmp) == 1  # one key exchange and login for all of them
    pid = link.proc.pid
    link.close()
    assert not link.up() and not (tmp / "control").exists()
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
    done = link.run("echo alone", 30)  # no shared connection: one of its own, as before
    assert (done.returncode, done.stdout) == (0, "alone\n") and logins(tmp) == 2
    link.end()
    assert link.open(time.monotonic() + 10) == "the run is ending" and link.proc is None


def test_a_wrong_key_is_no_login(sshd) -> None:
    ns, tmp, user = sshd
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "other")])
    start_sshd(ns, tmp)
    link = Link(ns, tmp / "other", user, "127.0.0.1", PORT, tmp / "control")
    with pytest.raises(TimeoutError, match="no SSH login"):
        wait_ssh(link, time.monotonic() + 3)
    assert link.proc is None or link.proc.poll() is not None
    link.end()
