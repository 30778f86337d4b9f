"""scooby-update of a release that needs a reboot (docs/day2.md, 4.6): the bundle carries the
new root slot, the master writes it with scooby-slot, keeps the live part on the data
partition, tries the slot, and applies the live part once the slot is committed.

Everything runs for real on the build machine except what cannot:
- the release's image is a real image file made by the build's own pack (needs root, as in
  test_ab.py), its root taken out and fitted by scooby.deploy.image, zstd'd;
- the master is a tree in a temporary directory: scooby-apply's (test_apply.install, its
  commands logged in ROOT/commands.log, a TEST DOUBLE) and scooby-slot's (test_slot.Master:
  the slots' "devices" are image files written through real zstd, dd O_DIRECT, sha256sum;
  mounting a slot and the reboot are TEST DOUBLES: a folder and a line in
  ROOT/test-double/commands.log). The initramfs's choice of the next boot runs under dash
  (test_slot.choose). The trial boot's new root is played by copying the new slot's files
  into the tree, as the booted slot would show them;
- the HTTPS server is real (tests/nethelpers.py), as in test_update.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import WILLOW, write_repo
from nethelpers import https_server, make_ca
from test_apply import XANDER, Version, at, commands, install, tree
from test_slot import Master, release_text
from test_update import refused, update

from scooby.build import pack
from scooby.core import layout
from scooby.deploy import bundle
from scooby.load import load_or_raise

MIB = 1 << 20
SLOT = 64 * MIB  # the master's slots here (its slot B is a file this size)
V2 = {"agents/willow.agent": WILLOW, "agents/xander.agent": XANDER,
      "config": "LC_EXTRA_PACKAGES=tree\n"}  # fmt: skip

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pack stores root-owned files")


def new_image(tmp: Path, v: Version, name: str, extra_boot: dict[str, bytes] | None = None):
    """A built image for version `v`: its boot partition the render's boot files (plus
    `extra_boot`), its root slot the release file and the slot's own record."""
    boot, root, data = tmp / f"{name}-boot", tmp / f"{name}-root", tmp / f"{name}-data"
    shutil.copytree(v.out / "boot", boot)
    for rel, content in (extra_boot or {}).items():
        (boot / rel).write_bytes(content)
    (root / "etc/scooby").mkdir(parents=True)
    (root / "etc/scooby/release").write_text(release_text(name, f"digest-{name}"))
    (root / layout.SLOT_RECORD.lstrip("/")).write_text(json.dumps(v.record))
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/blob").write_bytes(os.urandom(2 * MIB))  # something to compress
    (data / "scooby").mkdir(parents=True)
    return pack.pack(boot, root, data, v.cluster.master.hostname, tmp / f"{name}.img").image


def release(tmp: Path, v: Version, img: Path, name: str, **kw) -> Path:
    """DIR with the bundle, its root slot and SHA256SUMS, as `scooby deploy --bundle DIR
    --root --slot-mib 64` makes them in CI."""
    repo = write_repo(tmp / f"{name}-repo", {"config": "", **V2})
    out = tmp / f"{name}-dist"
    cluster = load_or_raise(repo, environ={})
    bundle.write(cluster, tmp / f"{name}-work", out, image=lambda: img, root=True, room=SLOT, **kw)
    return out


class Pulled:
    """A master at v1 with agent A, slots A (v1) and B (empty), and a v2 release: a new
    package (a new image) and agent B (the live part)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.v1 = Version(tmp, "v1", {"agents/willow.agent": WILLOW})
        self.v2 = Version(tmp, "v2", V2)
        script = self.v1.out / "master" / layout.SCOOBY_SLOT.lstrip("/")
        self.m = Master(tmp, script, self.v1.cluster)
        self.root = self.m.root
        install(self.root, self.v1)
        with self.m.dev["b"].open("wb") as f:
            f.truncate(SLOT)

    def boot_into_new_slot(self) -> None:
        """The trial boot: the initramfs picks slot B; the running root shows B's files."""
        assert self.m.boot(self.tmp / "initramfs") == "b"
        for path, src in self.v2.sources.items():
            if not path.startswith(("/var/lib/scooby/", "/var/lib/rancher/")):
                dest = at(self.root, path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        (self.root / "etc/scooby/release").write_text(release_text("v2", "digest-v2"))
        at(self.root, layout.SLOT_RECORD).write_text(json.dumps(self.v2.record))

    def pending(self) -> Path:
        return at(self.root, layout.DEPLOY_PENDING)


@pytest.fixture
def pulled(tmp_path) -> Pulled:
    (tmp_path / "initramfs").mkdir()
    return Pulled(tmp_path)


@pytest.fixture
def dist(tmp_path, pulled) -> Path:
    return release(tmp_path, pulled.v2, new_image(tmp_path, pulled.v2, "v2"), "v2")


def manifest(dist: Path) -> dict:
    with tarfile.open(dist / bundle.BUNDLE) as tar:
        names = tar.getnames()
        assert names[:2] == ["record.json", layout.BUNDLE_ROOT_MANIFEST]
        return json.load(tar.extractfile(layout.BUNDLE_ROOT_MANIFEST))


def test_the_bundle_carries_the_root_slot_summed(dist, tmp_path, pulled):
    root = manifest(dist)
    data = subprocess.run(["zstd", "-d", "-c", str(dist / bundle.ROOT)], capture_output=True,
                          check=True).stdout  # fmt: skip
    assert len(data) == root["root"]["bytes"] <= SLOT  # fitted to the slots (resize2fs)
    assert hashlib.sha256(data).hexdigest() == root["root"]["sha256"]
    file_sha = hashlib.sha256((dist / bundle.ROOT).read_bytes()).hexdigest()
    assert root["root"]["file_sha256"] == file_sha
    assert sorted(root["boot"]) == sorted(p.name for p in (pulled.v2.out / "boot").iterdir())
    assert not root["allow_kernel_change"] and not (dist / bundle.BOOT).exists()
    sums = (dist / bundle.SUMS).read_text().splitlines()
    assert sums == [
        f"{hashlib.sha256((dist / bundle.BUNDLE).read_bytes()).hexdigest()}  {bundle.BUNDLE}",
        f"{file_sha}  {bundle.ROOT}",
    ]


def test_the_root_comes_by_itself_when_the_previous_bundle_plans_a_reboot(tmp_path, pulled):
    out = tmp_path / "ci-dist"
    v1_repo = write_repo(tmp_path / "ci-v1", {"config": "", "agents/willow.agent": WILLOW})
    bundle.write(load_or_raise(v1_repo, environ={}), tmp_path / "ci-w1", out)
    assert not (out / bundle.ROOT).exists()
    img = new_image(tmp_path, pulled.v2, "ci")
    said: list[str] = []
    v2_repo = write_repo(tmp_path / "ci-v2", {"config": "", **V2})
    bundle.write(load_or_raise(v2_repo, environ={}), tmp_path / "ci-w2", out,
                 image=lambda: img, room=SLOT, say=said.append)  # fmt: skip
    assert (out / bundle.ROOT).exists() and "release packages: - -> tree" in said[0]
    # The next release without a reboot after it: no root, and none left from before.
    bundle.write(load_or_raise(v2_repo, environ={}), tmp_path / "ci-w3", out)
    assert not (out / bundle.ROOT).exists()
    assert [ln.split()[1] for ln in (out / bundle.SUMS).read_text().splitlines()] == [bundle.BUNDLE]


def test_a_pulled_ab_release_trial_commit_then_the_live_part(pulled, dist):
    p, m = pulled, pulled.m
    record_before = at(p.root, layout.DEPLOY_RECORD).read_bytes()
    dry = update(p.root, "--dry-run", str(dist / bundle.BUNDLE))
    assert dry.returncode == 0, dry.stderr
    assert "REBOOT (A/B):" in dry.stdout and "reboot  release packages: - -> tree" in dry.stdout
    assert "send    the release's root slot" in dry.stdout
    assert m.state_bytes() is None and not p.pending().exists()

    done = update(p.root, str(dist / bundle.BUNDLE))
    assert done.returncode == 0, done.stderr
    assert f"{bundle.ROOT}: sha256 matches SHA256SUMS and root.json" in done.stdout
    assert "scooby-slot: slot b" in done.stdout and "matches" in done.stdout
    root = manifest(dist)["root"]
    assert hashlib.sha256(m.dev["b"].read_bytes()[: root["bytes"]]).hexdigest() == root["sha256"]
    status = m.status()
    assert (status["COMMITTED"], status["TRIAL"], status["TRIES"]) == ("a", "b", "1")
    assert status["RELEASE_B"] == "v2/digest-v2"
    assert m.at("/test-double/commands.log").read_text() == "systemctl reboot\n"
    # Nothing live yet: the record and the agents are v1's, the bundle waits on the data
    # partition.
    assert at(p.root, layout.DEPLOY_RECORD).read_bytes() == record_before
    assert commands(p.root) == []
    assert json.loads((p.pending() / "pending.json").read_text())["slot"] == "b"

    p.boot_into_new_slot()
    waits = update(p.root, "--pending")  # before the health check's commit: it waits
    assert waits.returncode == 0 and "not committed yet" in waits.stdout
    assert p.pending().exists()
    m.ok("commit")  # what scooby-health.service runs when the trial boot is healthy
    applied = update(p.root, "--pending")
    assert applied.returncode == 0, applied.stderr
    assert "slot b committed: the live part" in applied.stdout
    assert "agents added: xander" in applied.stdout
    assert json.loads(at(p.root, layout.DEPLOY_RECORD).read_text()) == p.v2.record
    assert (at(p.root, layout.AGENT_UPPERS) / "xander").is_dir()
    assert f"mount {layout.AGENT_MOUNTS}/xander" in commands(p.root)
    assert not p.pending().exists()
    again = update(p.root, "--pending")  # applied once
    assert again.returncode == 0 and "nothing pending" in again.stdout
    assert "up to date" in update(p.root, str(dist / bundle.BUNDLE)).stdout


def test_a_failed_trial_drops_the_live_part(pulled, dist):
    p, m = pulled, pulled.m
    assert update(p.root, str(dist / bundle.BUNDLE)).returncode == 0
    record = at(p.root, layout.DEPLOY_RECORD).read_bytes()
    assert m.boot(p.tmp / "initramfs") == "b"
    m.ok("reject", "health check: dnsmasq failed", "--reboot")
    assert m.boot(p.tmp / "initramfs") == "a"
    done = update(p.root, "--pending")
    assert done.returncode == 0, done.stderr
    assert "the trial of slot b did not pass" in done.stdout and "dropped" in done.stdout
    assert not p.pending().exists()
    assert at(p.root, layout.DEPLOY_RECORD).read_bytes() == record and commands(p.root) == []
    assert m.status()["COMMITTED"] == "a"


@pytest.mark.parametrize("damage", ["flipped", "truncated", "both-sums-rewritten"])
def test_a_tampered_or_truncated_root_changes_nothing(pulled, dist, damage):
    p = pulled
    data = bytearray((dist / bundle.ROOT).read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 1
    (dist / bundle.ROOT).write_bytes(bytes(data))
    message = "is not the one in SHA256SUMS"
    if damage == "both-sums-rewritten":  # SHA256SUMS agrees with it; root.json does not
        sums = (dist / bundle.SUMS).read_text().splitlines()
        sums[1] = f"{hashlib.sha256(data).hexdigest()}  {bundle.ROOT}"
        (dist / bundle.SUMS).write_text("\n".join(sums) + "\n")
        message = "is not the one in root.json"
    before = tree(p.root)
    refused(update(p.root, str(dist / bundle.BUNDLE)), message)
    assert tree(p.root) == before  # the slot device, the slot state, the record, everything
    assert p.m.dev["b"].read_bytes() == bytes(SLOT) and p.m.state_bytes() is None


def test_a_root_larger_than_the_slot_is_refused_before_anything_is_written(pulled, tmp_path):
    with pulled.m.dev["b"].open("wb") as f:
        f.truncate(32 * MIB)  # this master's slot is smaller than the release's
    dist = release(tmp_path, pulled.v2, new_image(tmp_path, pulled.v2, "big"), "big")
    done = update(pulled.root, str(dist / bundle.BUNDLE))
    assert done.returncode == 1 and "the slot write failed" in done.stderr
    assert "holds 33554432" in done.stderr
    assert pulled.m.dev["b"].read_bytes() == bytes(32 * MIB) and pulled.m.state_bytes() is None
    assert not pulled.pending().exists()


def test_a_boot_partition_change_needs_allow_kernel_change(pulled, tmp_path):
    p = pulled
    kernel = {"vmlinuz": b"a new kernel"}
    img = new_image(tmp_path, p.v2, "k", kernel)
    dist = release(tmp_path, p.v2, img, "k")
    before = tree(p.root)
    done = update(p.root, str(dist / bundle.BUNDLE))
    refused(done, "the boot partition changes (vmlinuz): A/B does not protect it")
    assert tree(p.root) == before
    allowed = release(tmp_path, p.v2, img, "k-allowed", allow_kernel_change=True)
    assert manifest(allowed)["boot_file"] == bundle.BOOT
    done = update(p.root, str(allowed / bundle.BUNDLE))
    assert done.returncode == 0, done.stderr
    assert "boot partition: 1 files written (vmlinuz)" in done.stdout
    assert at(p.root, "/boot/firmware/vmlinuz").read_bytes() == b"a new kernel"
    assert p.m.status()["TRIAL"] == "b"


def test_a_pulled_ab_release_over_https(pulled, dist, tmp_path):
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("needs openssl and curl (scripts/packages.txt)")
    ca, cert, key = make_ca(tmp_path / "tls", "127.0.0.1")
    with https_server(dist, cert, key) as port:
        url = f"https://127.0.0.1:{port}/{bundle.BUNDLE}"
        done = update(pulled.root, "--cacert", str(ca), url)
    assert done.returncode == 0, done.stderr
    assert pulled.m.status()["TRIAL"] == "b" and pulled.pending().is_dir()
    # The download went to the data partition (the deploy record's folder on a tree without
    # UPDATE_WORK's mount point) and is gone.
    for folder in (layout.UPDATE_WORK, os.path.dirname(layout.DEPLOY_RECORD)):
        assert not list(at(pulled.root, folder).glob("scooby-update.*"))


def test_a_root_json_naming_a_boot_file_outside_the_boot_partition_is_refused(pulled, dist):
    """A bundle whose SHA256SUMS line matches but whose root.json names `../etc/x`."""
    import io

    with tarfile.open(dist / bundle.BUNDLE) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    forged = io.BytesIO()
    with tarfile.open(fileobj=forged, mode="w:gz") as tar:
        for member, data in members:
            if member.name == layout.BUNDLE_ROOT_MANIFEST:
                root = json.loads(data)
                root["boot"]["../etc/x"] = "0" * 64
                root["allow_kernel_change"] = True
                data = json.dumps(root).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    (dist / bundle.BUNDLE).write_bytes(forged.getvalue())
    sums = (dist / bundle.SUMS).read_text().splitlines()
    sums[0] = f"{hashlib.sha256(forged.getvalue()).hexdigest()}  {bundle.BUNDLE}"
    (dist / bundle.SUMS).write_text("\n".join(sums) + "\n")
    before = tree(pulled.root)
    refused(update(pulled.root, str(dist / bundle.BUNDLE)), "root.json: not one this master reads")
    assert tree(pulled.root) == before
