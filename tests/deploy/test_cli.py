"""`scooby deploy` as a user meets it without a master: one line, exit 1, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import WILLOW, write_repo

from scooby.build.assemble import write_deploy_record
from scooby.core import layout
from scooby.load import load_or_raise
from scooby.render import render
from scooby.render.record import record


def scooby(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scooby", *args], capture_output=True, text=True, timeout=120
    )


def test_an_unreachable_master_is_one_line_and_exit_1(repo):
    # Port 1 on loopback: nothing listens, ssh is refused at once.
    done = scooby("deploy", "--repo", str(repo), "--to", "127.0.0.1", "--port", "1",
                  "--ssh-option", "ConnectTimeout=5", "--dry-run")  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("spike@127.0.0.1: error: cannot read ")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_rollback_without_a_master_is_one_line_too(repo):
    done = scooby("deploy", "--repo", str(repo), "--to", "127.0.0.1", "--port", "1",
                  "--ssh-option", "ConnectTimeout=5", "--rollback")  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr


def test_deploy_needs_a_target(repo):
    done = scooby("deploy", "--repo", str(repo))
    assert done.returncode == 2 and "--to" in done.stderr


def test_the_build_writes_the_deploy_record(tmp_path):
    repo = write_repo(tmp_path / "repo", {"config": "", "agents/willow.agent": WILLOW})
    cluster = load_or_raise(repo, environ={})
    out = render(cluster, tmp_path / "out").out
    root = tmp_path / "root"
    write_deploy_record(root, cluster, out)
    path = root / layout.DEPLOY_RECORD.lstrip("/")
    assert path.stat().st_mode & 0o777 == 0o600
    written = json.loads(path.read_text())
    assert written == record(cluster, out)
    assert written["agents"] == {
        "willow": {"ip": "192.168.64.65", "mac": "b8:27:eb:81:1a:52", "pxe_id": "c6811a52"}
    }
    assert f"{layout.SCOOBY_APPLY}" in written["files"]
    assert "/boot/firmware/cmdline.txt" in written["files"]
    # The slot's own copy (scooby-slot commit and rollback take the release from it): the
    # same bytes, in the root rather than on the data partition, as private.
    own = root / layout.SLOT_RECORD.lstrip("/")
    assert own.read_bytes() == path.read_bytes()
    assert own.stat().st_mode & 0o777 == 0o600
    assert own.parent.stat().st_mode & 0o777 == 0o755
    assert not layout.SLOT_RECORD.startswith(tuple(f"{p}/" for p, _ in layout.DATA_BINDS))


def test_a_bundle_for_scooby_update(repo, tmp_path):
    out = tmp_path / "dist"
    done = scooby("deploy", "--repo", str(repo), "--bundle", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "scooby-deploy.tar.gz"]
    assert "scooby-deploy.tar.gz" in (out / "SHA256SUMS").read_text()
    both = scooby("deploy", "--repo", str(repo), "--bundle", str(out), "--to", "buffy")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    dry = scooby("deploy", "--repo", str(repo), "--bundle", str(out), "--dry-run")
    assert dry.returncode == 1 and dry.stderr.count("\n") == 1, dry.stderr
    assert "--bundle takes neither --dry-run nor --rollback" in dry.stderr
