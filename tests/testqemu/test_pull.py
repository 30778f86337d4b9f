"""The pull of a release that needs a reboot (docs/day2.md, 4.6), on a booted master in QEMU
(TCG), the master alone: `SCOOBY_TEST_PULL=1 pytest -m qemu tests/testqemu/test_pull.py`.

The release is made on the host by `scooby.deploy.bundle` with a root, from the test's
repository plus two files: /etc/scooby/pull-test (on the root slot: a reboot) and a K3S
manifest (on the data partition: the live part after the commit). Its image is the built
test image with those changes written into its root file system by debugfs (the new file and
the slot's own record of the new repository), so no second image build is needed; the bundle
takes partition 2 out, fits it and zstd's it as for any release. The release's folder is
copied onto the master's data partition and there `sudo scooby-update FILE` runs for real:
SHA256SUMS and root.json checks, scooby-slot write, trial --reboot, the initramfs's trial
boot, the health check's commit, scooby-update-pending.service's live part. Played, as in
test_slots.py: the Pi firmware (QEMU -kernel/-initrd), the watchdog (i6300esb).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_qemu import Built, built  # noqa: F401 - the session's one build of the test image
from test_slots import (
    identity,
    initramfs_says,
    loadavg,
    partuuid,
    root_image,
    root_partuuid,
    slot_status,
)

from scooby.core import layout
from scooby.deploy import bundle
from scooby.load import load_or_raise
from scooby.render import render
from scooby.render.record import record
from scooby.testqemu import master as master_phases
from scooby.testqemu.phases import Failed
from scooby.testqemu.session import Session
from scooby.testqemu.ssh import SSH_PORT, check, console_wait, ssh_argv, wait_ssh
from scooby.util import diskimage

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the test's network need root"),
    pytest.mark.skipif(
        os.environ.get("SCOOBY_TEST_PULL") != "1",
        reason="boots the master twice and writes a slot: SCOOBY_TEST_PULL=1",
    ),
]

ROOT_FILE = "/etc/scooby/pull-test"
MANIFEST = "/var/lib/rancher/k3s/server/manifests/pull-test.yaml"
ON_MASTER = "/var/lib/scooby/pull-release"  # the data partition (the root slot has no room)
EXTRA = {
    f"server{ROOT_FILE}": "pulled with its slot\n",
    f"server{MANIFEST}": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pull-test\n"
    "data:\n  pulled: after-the-commit\n",
}


def make_release(s, deadline: float) -> str:
    """The repository + EXTRA, its image (the built one, its root changed by debugfs), its
    bundle with the root slot (bundle.write, --root --slot-mib of this master's slot)."""
    repo = s.work / "release-repo"
    shutil.copytree(s.repo, repo, symlinks=True, ignore=shutil.ignore_patterns("build"))
    for rel, text in EXTRA.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    cluster = load_or_raise(repo)
    new = record(cluster, render(cluster, s.work / "release-render").out)
    fs = root_image(s, "release-root")
    own = s.work / "slot-record.json"
    own.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    text = s.work / "pull-test"
    text.write_text(EXTRA[f"server{ROOT_FILE}"])
    for command in (f"rm {layout.SLOT_RECORD}", f"write {own} {layout.SLOT_RECORD}",
                    f"write {text} {ROOT_FILE}"):  # fmt: skip
        subprocess.run(["debugfs", "-w", "-R", command, str(fs)], check=True, capture_output=True)
    for path, want in ((layout.SLOT_RECORD, own.read_text()), (ROOT_FILE, text.read_text())):
        got = subprocess.run(["debugfs", "-R", f"cat {path}", str(fs)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        if got != want:
            raise Failed(f"debugfs did not write {path} into the release's root")
    image = s.work / "release.img"
    subprocess.run(["cp", "--sparse=always", str(s.image), str(image)], check=True)
    part = diskimage.partition(image, layout.ROOT_PARTITION)
    subprocess.run(
        ["dd", f"if={fs}", f"of={image}", "bs=4M", f"seek={part.offset}", "oflag=seek_bytes",
         "conv=notrunc,sparse", "status=none"],
        check=True,
    )  # fmt: skip
    fs.unlink()
    slot = int(check(s.master_cmd, "sudo blockdev --getsize64 /dev/disk/by-partuuid/"
                     f"{partuuid(s, 'b')}", deadline).strip())  # fmt: skip
    start = time.monotonic()
    s.dist = s.work / "dist"
    bundle.write(cluster, s.work / "release-work", s.dist, image=lambda: image, root=True,
                 room=slot)  # fmt: skip
    seconds = time.monotonic() - start
    image.unlink()
    root = json.loads(
        subprocess.run(
            ["tar", "-xzOf", str(s.dist / bundle.BUNDLE), "root.json"],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
    )["root"]
    s.release_record = new
    s.timings |= {"bundle_seconds": round(seconds, 1), "root_bytes": root["bytes"],
                  "root_zstd_bytes": (s.dist / bundle.ROOT).stat().st_size,
                  "bundle_bytes": (s.dist / bundle.BUNDLE).stat().st_size}  # fmt: skip
    return (
        f"bundle.write with the root in {seconds:.1f} s: {root['bytes']} bytes of root as "
        f"{(s.dist / bundle.ROOT).stat().st_size} of zstd, bundle "
        f"{(s.dist / bundle.BUNDLE).stat().st_size} bytes (load {loadavg()})"
    )


def copy_release(s, deadline: float) -> str:
    check(s.master_cmd, f"sudo install -d -o {s.user} {ON_MASTER}", deadline)
    link = s.master_link()
    start, sent = time.monotonic(), 0
    for path in sorted(s.dist.iterdir()):
        argv = ssh_argv(s.net.ns, s.identity, SSH_PORT, link.control if link.up() else None)
        argv += [f"{s.user}@127.0.0.1", f"cat > {ON_MASTER}/{path.name}"]
        with path.open("rb") as f:
            done = subprocess.run(argv, stdin=f, capture_output=True, timeout=1800)
        if done.returncode != 0:
            raise Failed(f"copying {path.name}: {done.stderr.decode()[-300:]}")
        sent += path.stat().st_size
    return f"{sent} bytes to {ON_MASTER} in {time.monotonic() - start:.0f} s"


def pull(s, deadline: float) -> str:
    s.record_before = check(s.master_cmd, f"sudo cat {layout.DEPLOY_RECORD}", deadline)
    s.identity_before = identity(s, deadline)
    dry = s.master_cmd(f"sudo scooby-update --dry-run {ON_MASTER}/{bundle.BUNDLE}", 600)
    if dry.returncode != 0 or f"reboot  {ROOT_FILE}" not in dry.stdout:
        raise Failed(f"--dry-run: {(dry.stdout + dry.stderr)[-600:]}")
    load = loadavg()
    s.since = s.master.console.stat().st_size
    s.started = time.monotonic()
    done = s.master_link().run(f"sudo scooby-update {ON_MASTER}/{bundle.BUNDLE}", 3600,
                               retry=False)  # fmt: skip
    seconds = time.monotonic() - s.started
    s.master_link().close()
    out = (done.stdout or "") + (done.stderr or "")
    if "sha256 matches SHA256SUMS and root.json" not in out or "trial boot of slot b" not in out:
        raise Failed(f"scooby-update exited {done.returncode}: {out[-800:]}")
    written = [ln for ln in out.splitlines() if "scooby-slot: slot b" in ln]
    s.timings |= {"pull_to_trial_seconds": round(seconds, 1), "pull_load": load}
    return f"{seconds:.0f} s to the trial's reboot (load {load}); {(written or ['?'])[-1]}"


def committed_and_applied(s, deadline: float) -> str:
    initramfs_says(s, f"scooby-slot: trial boot of slot b (PARTUUID={partuuid(s, 'b')})",
                   deadline, s.since)  # fmt: skip
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    console_wait(s.master, banner, deadline, s.since)
    wait_ssh(s.master_link(), deadline)
    while True:
        status = slot_status(s, deadline)
        gone = s.master_cmd(f"sudo test -e {layout.DEPLOY_PENDING}", 60).returncode != 0
        if (status["COMMITTED"] == "b" and gone) or time.monotonic() > deadline - 60:
            break
        time.sleep(5)
    seconds = time.monotonic() - s.started
    want = {"BOOTED": "b", "COMMITTED": "b", "TRIAL": "", "TRIES": "0"}
    if {k: status.get(k) for k in want} != want or root_partuuid(s, deadline) != partuuid(s, "b"):
        raise Failed(f"not committed on slot B: {status}")
    journal = check(s.master_cmd, "sudo journalctl -b -u scooby-update-pending -o cat --no-pager",
                    deadline)  # fmt: skip
    if not gone or "the live part" not in journal:
        raise Failed(f"the live part was not applied: {journal[-600:]}")
    now = json.loads(check(s.master_cmd, f"sudo cat {layout.DEPLOY_RECORD}", deadline))
    if now != s.release_record:
        raise Failed("the deploy record is not the release's")
    got = check(s.master_cmd, f"sudo cat {ROOT_FILE} {MANIFEST}", deadline)
    if got != EXTRA[f"server{ROOT_FILE}"] + EXTRA[f"server{MANIFEST}"]:
        raise Failed(f"the release's files: {got!r}")
    if identity(s, deadline) != s.identity_before:
        raise Failed("the master's identity changed")
    again = check(s.master_cmd, f"sudo scooby-update {ON_MASTER}/{bundle.BUNDLE}", deadline)
    if "up to date" not in again:
        raise Failed(f"the same release again: {again!r}")
    s.timings |= {"pull_to_committed_and_applied": round(seconds, 1)}
    return (
        f"COMMITTED=b, / = PARTUUID {partuuid(s, 'b')}, the live part applied and removed "
        f"{seconds:.0f} s after scooby-update started; record = the release's; same identity; "
        f"again: up to date. Pending unit: {' / '.join(journal.strip().splitlines()[-2:])}"
    )


class Pull(Session):
    """test-qemu's lifecycle (signals, cleanup, evidence, table) with the pull's phases."""

    plan = (
        ("prepare", 300, master_phases.prepare, ()),
        ("master-banner", 1200, master_phases.master_banner, ("prepare",)),
        ("master-ssh", 300, master_phases.master_ssh, ("master-banner",)),
        ("release-made", 1200, make_release, ("master-ssh",)),
        ("release-copied", 1800, copy_release, ("release-made",)),
        ("pull-to-trial", 2400, pull, ("release-copied",)),
        ("pull-committed-applied", 1800, committed_and_applied, ("pull-to-trial",)),
    )

    def __init__(self, repo: Path, key: Path, image: Path, out: Path):
        from rich.console import Console

        cluster = load_or_raise(repo)
        super().__init__(cluster, cluster.agents[0], image, out, key, Console(stderr=True))
        self.repo = repo
        self.dist = Path()
        self.release_record: dict = {}
        self.record_before = ""
        self.identity_before: dict[str, str] = {}
        self.since, self.started = 0, 0.0


def test_pull_of_a_release_that_needs_a_reboot(built: Built):  # noqa: F811
    out = built.repo / "build" / "test-pull"
    Pull(built.repo, built.key, built.image, out).run()
    report = json.loads((out / "phases.json").read_text())
    failed = [(p["name"], p["status"], p["detail"]) for p in report["phases"]
              if p["status"] != "passed"]  # fmt: skip
    assert not failed, failed
