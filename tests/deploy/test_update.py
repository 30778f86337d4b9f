"""scooby-update, the pull side of a deploy: a bundle from `scooby deploy --bundle`, from a
local file or over HTTPS, checked against SHA256SUMS and applied by scooby-apply.

Both scripts run for real against a master tree in a temporary directory (SCOOBY_APPLY_ROOT,
as in test_apply.py: the commands scooby-apply would run are logged there, not run -- a TEST
DOUBLE for the master's services). The HTTPS server is real (tests/nethelpers.py: Python's
http.server behind ssl, on loopback, its certificate signed by a throwaway CA made by
openssl); curl fetches from it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import WILLOW, write_repo
from nethelpers import https_server, make_ca
from test_apply import XANDER, Version, at, commands, install, tree
from test_apply import apply as push

from scooby.core import layout
from scooby.deploy import bundle
from scooby.deploy.plan import describe, plan
from scooby.load import load_or_raise


def make_bundle(tmp: Path, name: str, files: dict[str, str]) -> Path:
    """DIR with scooby-deploy.tar.gz and SHA256SUMS, as CI makes them."""
    repo = write_repo(tmp / f"{name}-repo", {"config": "", **files})
    out = tmp / f"{name}-dist"
    bundle.write(load_or_raise(repo, environ={}), tmp / f"{name}-work", out)
    return out


def update(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(at(root, layout.SCOOBY_UPDATE)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SCOOBY_APPLY_ROOT": str(root)},
    )


@pytest.fixture
def master(tmp_path):
    """A master as the build leaves it with agent A (willow), and the bundle that adds B."""
    v1 = Version(tmp_path, "v1", {"agents/willow.agent": WILLOW})
    root = tmp_path / "master"
    install(root, v1)
    (at(root, layout.AGENT_UPPERS) / "willow" / "kept").write_text("mine")
    dist = make_bundle(
        tmp_path, "v2", {"agents/willow.agent": WILLOW, "agents/xander.agent": XANDER}
    )
    return root, v1, dist


def test_the_bundle_is_reproducible_and_summed(tmp_path):
    files = {"agents/willow.agent": WILLOW}
    one, two = make_bundle(tmp_path, "one", files), make_bundle(tmp_path, "two", files)
    data = (one / bundle.BUNDLE).read_bytes()
    assert data == (two / bundle.BUNDLE).read_bytes()
    assert (one / bundle.SUMS).read_text() == (
        f"{hashlib.sha256(data).hexdigest()}  {bundle.BUNDLE}\n"
    )
    with tarfile.open(one / bundle.BUNDLE) as tar:
        names = tar.getnames()
    assert names[0] == "record.json"
    assert "files" + layout.SCOOBY_UPDATE in names and "files" + layout.SCOOBY_APPLY in names


def test_a_local_bundle_does_what_the_push_deploy_does(tmp_path, master):
    """Same files, same record, same commands as `scooby deploy --to` (test_apply's path)."""
    root, v1, dist = master
    pushed = tmp_path / "pushed"
    install(pushed, v1)
    (at(pushed, layout.AGENT_UPPERS) / "willow" / "kept").write_text("mine")
    v2 = Version(
        tmp_path, "v2-push", {"agents/willow.agent": WILLOW, "agents/xander.agent": XANDER}
    )
    assert push(pushed, v1, v2).returncode == 0

    done = update(root, str(dist / bundle.BUNDLE))
    assert done.returncode == 0, done.stderr
    assert "sha256 matches SHA256SUMS" in done.stdout
    assert "agents added: xander" in done.stdout
    assert commands(root) == commands(pushed)
    ignore = {"commands.log", "kept", "previous"}  # time-stamped or logged above

    def files(top: Path) -> dict:
        return {
            p.relative_to(top): data
            for p, data in tree(top).items()
            if not ignore & set(p.relative_to(top).parts)
        }

    assert files(root) == files(pushed)
    assert (at(root, layout.AGENT_UPPERS) / "willow" / "kept").read_text() == "mine"


def test_dry_run_prints_the_plan_and_changes_nothing(master):
    root, v1, dist = master
    before = tree(root)
    done = update(root, "--dry-run", str(dist / bundle.BUNDLE))
    assert done.returncode == 0, done.stderr
    want = describe(plan(v1.record, bundle_record(dist)), "x")[1:]
    assert [ln.removeprefix("scooby-update: ") for ln in done.stdout.splitlines()[2:]] == [
        ln.split("  (")[0] for ln in want
    ]
    assert tree(root) == before


def bundle_record(dist: Path) -> dict:
    import json

    with tarfile.open(dist / bundle.BUNDLE) as tar:
        return json.load(tar.extractfile("record.json"))


def test_the_same_bundle_again_is_up_to_date(master):
    root, _, dist = master
    assert update(root, str(dist / bundle.BUNDLE)).returncode == 0
    again = update(root, str(dist / bundle.BUNDLE))
    assert again.returncode == 0 and "up to date" in again.stdout


def refused(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scooby-update: refused, nothing changed: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_a_bundle_that_does_not_match_its_sums_is_refused(master):
    root, _, dist = master
    data = bytearray((dist / bundle.BUNDLE).read_bytes())
    data[-100] ^= 1
    (dist / bundle.BUNDLE).write_bytes(bytes(data))
    before = tree(root)
    refused(update(root, str(dist / bundle.BUNDLE)), "is not the one in SHA256SUMS")
    assert tree(root) == before and commands(root) == []


def test_a_bundle_without_its_sums_line_is_refused(master):
    root, _, dist = master
    (dist / bundle.SUMS).write_text(f"{'0' * 64}  other.img\n")
    refused(update(root, str(dist / bundle.BUNDLE)), "SHA256SUMS has no line for")
    (dist / bundle.SUMS).unlink()
    refused(update(root, str(dist / bundle.BUNDLE)), "SHA256SUMS: no such file")


def test_a_bundle_that_needs_a_reboot_without_a_root_is_refused_with_the_reasons(tmp_path, master):
    root, _, _ = master
    files = {"agents/willow.agent": WILLOW, "config": "LC_DEBIAN_SUITE=bookworm\n"}
    dist = make_bundle(tmp_path, "v9", files)  # a new base: only an A/B deploy can do that
    before = tree(root)
    done = update(root, str(dist / bundle.BUNDLE))
    refused(done, "needs a reboot, and the bundle holds no root slot: make the release with"
            " `scooby deploy --bundle DIR --root`")  # fmt: skip
    assert "scooby-update:   reboot  release suite: trixie -> bookworm" in done.stdout
    assert tree(root) == before and commands(root) == []


def test_plain_http_is_refused_before_any_download(master):
    root, _, _ = master
    refused(update(root, "http://127.0.0.1:1/scooby-deploy.tar.gz"), "only https:// URLs")


# -- over HTTPS: a real TLS server on loopback ----------------------------------------------


@pytest.fixture
def https(tmp_path, master):
    """(the bundle's https URL, the throwaway CA's certificate): dist/ served over TLS."""
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("needs openssl and curl (scripts/packages.txt)")
    _, _, dist = master
    ca, cert, key = make_ca(tmp_path / "tls", "127.0.0.1")
    with https_server(dist, cert, key) as port:
        yield f"https://127.0.0.1:{port}/{bundle.BUNDLE}", ca


def test_a_bundle_over_https(master, https):
    root, _, _ = master
    url, ca = https
    done = update(root, "--cacert", str(ca), url)
    assert done.returncode == 0, done.stderr
    assert "agents added: xander" in done.stdout
    assert at(root, f"{layout.TFTP_ROOT}/c6811a53/cmdline.txt").is_file()


def test_an_untrusted_certificate_is_refused(master, https):
    root, _, _ = master
    url, _ = https
    before = tree(root)
    refused(update(root, url), "download failed (curl exit 60): curl: (60) SSL certificate problem")
    assert tree(root) == before


def test_a_refused_pull_on_a_master_with_a_data_partition_leaves_the_deploy_folder_alone(
    master,
):
    """The downloads go to the data partition's top (layout.UPDATE_WORK), not into the deploy
    record's folder: a refused pull leaves that folder's entries and times as they were. What a
    killed run left there is removed by the next run."""
    root, _, dist = master
    work = at(root, layout.UPDATE_WORK)
    work.mkdir(parents=True)  # the data partition's mount point, as in the image
    (work / "scooby-update.killed").mkdir()
    (work / "scooby-update.killed" / "scooby-root.ext4.zst").write_bytes(b"half")
    deploy = at(root, os.path.dirname(layout.DEPLOY_RECORD))
    stamps = {p: p.stat().st_mtime_ns for p in (deploy, *deploy.rglob("*"))}
    (dist / bundle.BUNDLE).write_bytes((dist / bundle.BUNDLE).read_bytes() + b"\0")
    refused(update(root, str(dist / bundle.BUNDLE)), "is not the one in SHA256SUMS")
    assert {p: p.stat().st_mtime_ns for p in (deploy, *deploy.rglob("*"))} == stamps
    assert list(work.iterdir()) == [] and commands(root) == []


def test_a_second_run_while_one_runs_is_refused(master):
    import fcntl

    root, _, dist = master
    work = at(root, layout.UPDATE_WORK)
    work.mkdir(parents=True)
    held = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # the other run
        before = tree(root)
        done = update(root, str(dist / bundle.BUNDLE))
    finally:
        os.close(held)
    assert done.returncode == 1
    assert done.stderr == "scooby-update: error: another scooby-update is running\n"
    assert tree(root) == before and commands(root) == []


def test_a_tampered_download_is_refused(master, https):
    root, _, dist = master
    url, ca = https
    (dist / bundle.BUNDLE).write_bytes((dist / bundle.BUNDLE).read_bytes() + b"\0")
    before = tree(root)
    refused(update(root, "--cacert", str(ca), url), "is not the one in SHA256SUMS")
    assert tree(root) == before and commands(root) == []
