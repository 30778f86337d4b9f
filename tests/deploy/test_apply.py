"""scooby-apply, the master's half of a live deploy, run for real against a master tree.

The tree is what the build puts on the master (render's master/ tree, the agents' layers,
the shared TFTP boot files, the deploy record), under a temporary directory given as
SCOOBY_APPLY_ROOT. In that mode the script records the commands it would run (systemctl,
exportfs, mount, k3s) in ROOT/commands.log instead of running them: a TEST DOUBLE for the
master's services, which cannot run on a build machine. test_day2 runs it on a booted master.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WILLOW, write_repo

from scooby.core import layout
from scooby.deploy import request
from scooby.deploy.plan import plan
from scooby.deploy.remote import stream
from scooby.load import load_or_raise
from scooby.render import render
from scooby.render.record import record, sources

XANDER = (
    WILLOW.replace("81:1a:52", "81:1a:53").replace(".65", ".66").replace("c6811a52", "c6811a53")
)
APPLY = layout.SCOOBY_APPLY.lstrip("/")


class Version:
    def __init__(self, tmp: Path, name: str, files: dict[str, str]):
        repo = write_repo(tmp / name, {"config": "", **files})
        self.cluster = load_or_raise(repo, environ={})
        self.out = render(self.cluster, tmp / f"{name}-out").out
        self.record = record(self.cluster, self.out)
        self.sources = sources(self.cluster, self.out)


def at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def install(root: Path, v: Version) -> None:
    """The master as the build leaves it for version `v`."""
    for path, src in v.sources.items():
        dest = at(root, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    boot = at(root, layout.TFTP_BOOT)
    boot.mkdir(parents=True)
    (boot / "start4.elf").write_bytes(b"firmware")
    for agent in v.cluster.agents:
        for top in (layout.AGENT_UPPERS, layout.AGENT_WORKDIRS, layout.AGENT_MOUNTS):
            (at(root, top) / agent.name).mkdir(parents=True, exist_ok=True)
        folder = at(root, f"{layout.TFTP_ROOT}/{agent.pxe_id}")
        (folder / "start4.elf").symlink_to("../.boot/start4.elf")
    at(root, layout.DEPLOY_RECORD).parent.mkdir(parents=True, exist_ok=True)
    at(root, layout.DEPLOY_RECORD).write_text(json.dumps(v.record))


def apply(root: Path, old: Version, new: Version, payload: bytes | None = None):
    p = plan(old.record, new.record)
    if payload is None:
        payload = stream(request(old.record, new.record, p), new.sources)
    return subprocess.run(
        [sys.executable, str(at(root, layout.SCOOBY_APPLY))],
        input=payload,
        capture_output=True,
        env={**os.environ, "SCOOBY_APPLY_ROOT": str(root)},
    )


def tree(root: Path) -> dict[Path, bytes | None]:
    """Every file's bytes and every folder (None), outside /run (the lock file)."""
    return {
        p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
        if p.parts[len(root.parts)] != "run"
    }


def commands(root: Path) -> list[str]:
    log = root / "commands.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def versions(tmp_path):
    v1 = Version(tmp_path, "v1", {"agents/willow.agent": WILLOW})
    v2 = Version(tmp_path, "v2", {"agents/willow.agent": WILLOW, "agents/xander.agent": XANDER})
    root = tmp_path / "master"
    install(root, v1)
    # a file in willow's upper layer: the agent's own change, which must survive
    (at(root, layout.AGENT_UPPERS) / "willow" / "kept").write_text("mine")
    return root, v1, v2


def test_adding_an_agent(versions):
    root, v1, v2 = versions
    done = apply(root, v1, v2)
    assert done.returncode == 0, done.stderr
    assert "agents added: xander" in done.stdout.decode()
    folder = at(root, f"{layout.TFTP_ROOT}/c6811a53")
    assert (folder / "cmdline.txt").read_bytes() == (
        v2.out / "master" / layout.TFTP_ROOT.lstrip("/") / "c6811a53" / "cmdline.txt"
    ).read_bytes()
    assert os.readlink(folder / "start4.elf") == "../.boot/start4.elf"
    assert "xander" in at(root, "/etc/exports.d/scooby.exports").read_text()
    assert (at(root, layout.AGENT_UPPERS) / "xander").is_dir()
    assert (at(root, layout.AGENT_UPPERS) / "willow" / "kept").read_text() == "mine"
    assert json.loads(at(root, layout.DEPLOY_RECORD).read_text()) == v2.record
    # The running slot's own record follows: its root files are v2's now (scooby-slot
    # commit/rollback to this slot takes them from there).
    assert json.loads(at(root, layout.SLOT_RECORD).read_text()) == v2.record
    assert at(root, layout.SLOT_RECORD).stat().st_mode & 0o777 == 0o600
    assert commands(root) == [
        layout.SCOOBY_K3S_TOKEN,
        "systemctl daemon-reload",
        # its upper dir stamped with the base it is made on (docs/day2.md, 4.5), then mounted
        f"{layout.SCOOBY_AGENT} prepare xander",
        f"mount {layout.AGENT_MOUNTS}/xander",
        "systemctl restart dnsmasq.service",
        "exportfs -ra",
        "systemctl reload-or-restart lighttpd.service",
    ]
    assert not list(root.rglob("*.scooby-new"))


def test_removing_an_agent_keeps_its_changes_aside(versions):
    root, v1, _ = versions
    leases = at(root, "/var/lib/misc/dnsmasq.leases")
    leases.parent.mkdir(parents=True)
    other = "0 b8:27:eb:00:00:01 192.168.64.70 other *\n"
    leases.write_text("0 b8:27:eb:81:1a:52 192.168.64.65 willow *\n" + other)
    v0 = Version(root.parent, "v0", {})
    done = apply(root, v1, v0)
    assert done.returncode == 0, done.stderr
    assert not at(root, f"{layout.TFTP_ROOT}/c6811a52").exists()
    assert not at(root, f"{layout.HTTP_ROOT}/willow").exists()
    assert not (at(root, layout.AGENT_LAYERS) / "willow").exists()
    assert "willow" not in at(root, "/etc/exports.d/scooby.exports").read_text()
    assert (at(root, f"{layout.AGENT_UPPERS}.removed") / "willow" / "kept").read_text() == "mine"
    assert leases.read_text() == other  # its `infinite` lease too
    assert commands(root)[:2] == [
        f"exportfs -u 192.168.64.65:{layout.AGENT_MOUNTS}/willow",
        "systemctl stop dnsmasq.service",
    ]
    assert "systemctl restart dnsmasq.service" in commands(root)
    assert "K3S SKIPPED for willow" in done.stdout.decode()


def test_a_file_changed_on_the_master_is_kept_aside(versions):
    root, v1, v2 = versions
    hosts = at(root, "/etc/hosts")
    hosts.write_text(hosts.read_text() + "10.0.0.9 mine\n")
    done = apply(root, v1, v2)
    assert done.returncode == 0, done.stderr
    assert hosts.read_bytes() == (v2.out / "master/etc/hosts").read_bytes()
    kept = list(at(root, layout.DEPLOY_RECORD).parent.glob("kept/*/etc/hosts"))
    assert len(kept) == 1 and kept[0].read_text().endswith("10.0.0.9 mine\n")
    assert "/etc/hosts was changed on the master" in done.stdout.decode()
    # files as the last deploy left them are not copied
    assert [p.name for p in kept[0].parent.parent.rglob("*") if p.is_file()] == ["hosts"]


def rollback(root: Path):
    """`scooby deploy --rollback`, as the laptop builds it, from the fake master's records."""
    current = json.loads(at(root, layout.DEPLOY_RECORD).read_text())
    previous = json.loads(at(root, f"{layout.DEPLOY_PREVIOUS}/record.json").read_text())
    p = plan(current, previous)
    payload = stream({**request(current, previous, p), "rollback": True}, {})
    return subprocess.run(
        [sys.executable, str(at(root, layout.SCOOBY_APPLY))],
        input=payload,
        capture_output=True,
        env={**os.environ, "SCOOBY_APPLY_ROOT": str(root)},
    )


def scooby_files(root: Path, record: dict) -> dict[str, bytes]:
    return {path: at(root, path).read_bytes() for path in record["files"]}


def test_rollback_returns_to_the_state_before_the_last_deploy(versions):
    root, v1, v2 = versions
    before = scooby_files(root, v1.record)
    assert apply(root, v1, v2).returncode == 0
    done = rollback(root)
    assert done.returncode == 0, done.stderr
    assert json.loads(at(root, layout.DEPLOY_RECORD).read_text()) == v1.record
    assert scooby_files(root, v1.record) == before
    assert not at(root, f"{layout.TFTP_ROOT}/c6811a53").exists()
    assert not (at(root, layout.AGENT_LAYERS) / "xander").exists()
    assert "removed: xander" in done.stdout.decode()
    # and the rollback itself can be rolled back: forward to v2 again
    assert rollback(root).returncode == 0
    assert json.loads(at(root, layout.DEPLOY_RECORD).read_text()) == v2.record
    assert scooby_files(root, v2.record) == {
        path: src.read_bytes() for path, src in v2.sources.items()
    }


def test_rollback_refuses_a_file_the_last_deploy_did_not_keep(versions):
    root, v1, v2 = versions
    assert apply(root, v1, v2).returncode == 0
    kept = at(root, f"{layout.DEPLOY_PREVIOUS}/files/etc/hosts")
    kept.write_text("tampered\n")
    before = tree(root)
    done = rollback(root)
    assert done.returncode == 1
    assert "/etc/hosts: sha256 mismatch" in done.stderr.decode()
    assert tree(root) == before


def test_an_agent_with_a_new_address_and_pxe_id_keeps_its_changes(versions):
    root, v1, _ = versions
    moved = WILLOW.replace(".65", ".77").replace("c6811a52", "c6811a99")
    v2 = Version(root.parent, "moved", {"agents/willow.agent": moved})
    assert plan(v1.record, v2.record).agents_changed == ["willow"]
    done = apply(root, v1, v2)
    assert done.returncode == 0, done.stderr
    assert not at(root, f"{layout.TFTP_ROOT}/c6811a52").exists()
    new = at(root, f"{layout.TFTP_ROOT}/c6811a99")
    assert (new / "cmdline.txt").is_file() and (new / "start4.elf").is_symlink()
    assert (at(root, layout.AGENT_UPPERS) / "willow" / "kept").read_text() == "mine"
    log = commands(root)
    assert log[0] == f"exportfs -u 192.168.64.65:{layout.AGENT_MOUNTS}/willow"
    assert f"mount {layout.AGENT_MOUNTS}/willow" in log and "exportfs -ra" in log


def test_a_removed_manifest_takes_its_resources_along(tmp_path):
    manifest = "server/var/lib/rancher/k3s/server/manifests/hello.yaml"
    text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hello\n"
    v1 = Version(tmp_path, "v1", {"agents/willow.agent": WILLOW, manifest: text})
    v2 = Version(tmp_path, "v2", {"agents/willow.agent": WILLOW})
    root = tmp_path / "master"
    install(root, v1)
    done = apply(root, v1, v2)
    assert done.returncode == 0, done.stderr
    assert not at(root, "/var/lib/rancher/k3s/server/manifests/hello.yaml").exists()
    # no K3S runs here: said so, never pretended
    assert "K3S SKIPPED for /var/lib/rancher/k3s/server/manifests/hello.yaml" in (
        done.stdout.decode()
    )


def test_a_damaged_stream_changes_nothing(versions):
    root, v1, v2 = versions
    p = plan(v1.record, v2.record)
    good = stream(request(v1.record, v2.record, p), v2.sources)
    before = tree(root)
    # flip one byte of the last file's contents (well before the tar's end-of-archive blocks)
    bad = bytearray(good)
    index = good.rindex(b"\n", 0, len(good) - 1024 - 100)
    bad[index - 1] ^= 0x01
    done = apply(root, v1, v2, bytes(bad))
    assert done.returncode == 1
    assert "refused, nothing changed" in done.stderr.decode()
    assert tree(root) == before
    assert commands(root) == []


def test_a_stream_without_a_plan_is_refused(versions):
    root, v1, v2 = versions
    done = apply(root, v1, v2, b"not a tar at all" * 64)
    assert done.returncode == 1 and commands(root) == []
