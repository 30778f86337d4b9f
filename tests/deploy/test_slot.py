"""The master's root slots (docs/day2.md, 4.3), run for real on the build machine.

- The initramfs's slot choice (templates/base/initramfs-tools/scripts/local-top/scooby-slot)
  runs under dash against a folder standing for the mounted data partition (its test hooks
  SCOOBY_SLOT_DATA, SCOOBY_SLOT_RUN, SCOOBY_SLOT_CONF): the state file, /conf/param.conf and
  /run/scooby as initramfs-tools and the booted system see them.
- scooby-slot, rendered for a cluster, runs with SCOOBY_SLOT_ROOT: its slots' "devices" are
  image files made here (mke2fs -d, no loop device), written through real zstd, read back
  with dd's O_DIRECT and sha256sum, read with debugfs. Mounting a slot and rebooting cannot
  run here: in that mode a slot's mounted file system is a folder, ROOT/test-double/mnt/SLOT,
  and a reboot a line in ROOT/test-double/commands.log (TEST DOUBLES, named so in the
  script). tests/testqemu/test_slots.py runs all of it on a booted master.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, WILLOW, write_repo

from scooby.core import layout
from scooby.load import load_or_raise
from scooby.render import render

INITRAMFS = ROOT / "templates/base/initramfs-tools/scripts/local-top/scooby-slot"
DISK = "0a1b2c3d"
MIB = 1 << 20


def sh_keys(text: str) -> dict[str, str]:
    """KEY=VALUE lines as a shell sources them."""
    done = subprocess.run(
        ["sh", "-c", f'{text}\nfor k in COMMITTED TRIAL TRIES VERIFIED LAST BOOTED; do eval "echo $k=\\${{$k-}}"; done'],  # noqa: E501
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


# -- the initramfs's choice ---------------------------------------------------------------


def choose(tmp: Path, root: str = f"PARTUUID={DISK}-02", data: Path | None = None):
    data = data or tmp / "data"
    data.mkdir(exist_ok=True)
    run, conf = tmp / "run", tmp / "param.conf"
    conf.unlink(missing_ok=True)
    shutil.rmtree(run, ignore_errors=True)
    env = {"PATH": os.environ["PATH"], "ROOT": root, "SCOOBY_SLOT_DATA": str(data),
           "SCOOBY_SLOT_RUN": str(run), "SCOOBY_SLOT_CONF": str(conf)}  # fmt: skip
    done = subprocess.run(["dash", str(INITRAMFS)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # it never stops a boot
    chosen = conf.read_text() if conf.exists() else ""
    booted = (run / "slot").read_text() if (run / "slot").exists() else ""
    return chosen, booted, (run / "trial").exists(), done.stdout


def test_initramfs_without_a_state_file_boots_slot_a_and_writes_nothing(tmp_path):
    chosen, booted, trial, _ = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-02\n"
    assert booted == "BOOTED=a\nTRIAL=0\n" and not trial
    assert list((tmp_path / "data").iterdir()) == []


def test_initramfs_leaves_a_root_that_is_not_a_scooby_slot_alone(tmp_path):
    for root in ("/dev/mmcblk0p2", f"PARTUUID={DISK}-03", "UUID=1234"):
        assert choose(tmp_path, root) == ("", "", False, "")


def test_initramfs_trial_spends_its_attempt_first_then_falls_back(tmp_path):
    state = tmp_path / "data" / "slots"
    state.parent.mkdir()
    state.write_text("COMMITTED=a\nTRIAL=b\nTRIES=1\nVERIFIED=b:abc\nLAST='trial b set'\n")
    chosen, booted, trial, out = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-03\n" and trial, out
    assert booted == "BOOTED=b\nTRIAL=1\n"
    assert sh_keys(state.read_text()) | {"BOOTED": ""} == {
        "COMMITTED": "a", "TRIAL": "b", "TRIES": "0", "VERIFIED": "b:abc",
        "LAST": "trial b set", "BOOTED": "",
    }  # fmt: skip
    # Not committed, booted again: the committed slot, and LAST says why.
    chosen, booted, trial, _ = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-02\n" and not trial
    assert booted == "BOOTED=a\nTRIAL=0\n"
    keys = sh_keys(state.read_text())
    assert (keys["COMMITTED"], keys["TRIAL"], keys["TRIES"]) == ("a", "", "0")
    assert keys["LAST"].startswith("trial b failed: not committed") and keys["VERIFIED"] == "b:abc"
    before = state.read_bytes()
    assert choose(tmp_path)[0] == f"ROOT=PARTUUID={DISK}-02\n"
    assert state.read_bytes() == before  # an ordinary boot writes nothing


def test_initramfs_keeps_the_health_checks_reason_and_boots_committed_b(tmp_path):
    state = tmp_path / "data" / "slots"
    state.parent.mkdir()
    state.write_text("COMMITTED=b\nTRIAL=a\nTRIES=0\nLAST='trial a failed: dnsmasq failed'\n")
    chosen, booted, _, _ = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-03\n" and booted == "BOOTED=b\nTRIAL=0\n"
    assert sh_keys(state.read_text())["LAST"] == "trial a failed: dnsmasq failed"


def test_initramfs_boots_the_trial_only_if_its_spent_attempt_is_on_disk(tmp_path):
    state = tmp_path / "data" / "slots"
    state.parent.mkdir()
    text = "COMMITTED=a\nTRIAL=b\nTRIES=1\n"
    state.write_text(text)
    (tmp_path / "data" / "slots.new").mkdir()  # the write beside it fails
    chosen, booted, trial, out = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-02\n" and not trial and "could not write" in out
    assert state.read_text() == text


@pytest.mark.parametrize("text", ["COMMITTED=c\n", "garbage\x00\n", "COMMITTED=\n"])
def test_initramfs_boots_the_command_lines_root_on_a_broken_state(tmp_path, text):
    state = tmp_path / "data" / "slots"
    state.parent.mkdir()
    state.write_text(text)
    chosen, booted, _, out = choose(tmp_path)
    assert chosen == f"ROOT=PARTUUID={DISK}-02\n" and booted == "BOOTED=a\nTRIAL=0\n", out
    assert state.read_text() == text


def test_initramfs_script_agrees_with_layout_and_is_in_the_base_digest():
    from scooby.build import rootfs

    text = INITRAMFS.read_text()
    assert f"DATA_LABEL={layout.DATA_LABEL}\n" in text
    assert f"STATE={Path(layout.SLOT_STATE).relative_to(layout.DATA_MOUNT)}\n" in text
    assert f"RUN=${{SCOOBY_SLOT_RUN:-{Path(layout.SLOT_RUN).parent}}}\n" in text
    assert Path(layout.SLOT_TRIAL_MARK).name == "trial" and '"$RUN/trial"' in text
    assert (layout.ROOT_PARTITION, layout.SLOT_B_PARTITION, layout.DATA_PARTITION) == (2, 3, 4)
    assert os.access(INITRAMFS, os.X_OK)
    # A change to it rebuilds the agent base, whose initramfs the master boots.
    assert "initramfs-tools/scripts/local-top/scooby-slot" in rootfs._base_digest()
    hook = (rootfs.HOOKS / "customize90-finish-later.sh").read_text()
    assert "initramfs-tools/scripts/." in hook
    assert "update-initramfs -c" in (rootfs.HOOKS / "finish-agent.sh").read_text()


# -- scooby-slot ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("render")
    repo = write_repo(tmp / "repo", {"config": "", "agents/willow.agent": WILLOW})
    cluster = load_or_raise(repo, environ={})
    out = render(cluster, tmp / "out").out
    return out / "master" / layout.SCOOBY_SLOT.lstrip("/"), cluster


def release_text(version: str, digest: str) -> str:
    return f"SCOOBY_VERSION={version}\nBASE=debian\nK3S_MODE=none\nCONFIG_DIGEST={digest}\n"


def record(version: str) -> dict:
    return {
        "format": 1,
        "agents": {"willow": {"ip": "192.168.64.65"}},
        "files": {
            "/etc/dnsmasq.d/scooby.conf": {"sha256": f"dnsmasq-{version}", "mode": 420},
            "/usr/local/sbin/scooby-slot": {"sha256": f"slot-{version}", "mode": 493},
            f"{layout.AGENT_LAYERS}/willow/etc/hostname": {"sha256": f"w-{version}", "mode": 420},
        },
        "release": {"base": "debian", "k3s": version},
    }


def slot_tree(tree: Path, version: str) -> Path:
    """A root slot's files: what scooby-slot reads from a slot (release, own record)."""
    etc = tree / "etc" / "scooby"
    etc.mkdir(parents=True)
    (etc / "release").write_text(release_text(version, f"digest-{version}"))
    (tree / layout.SLOT_RECORD.lstrip("/")).write_text(json.dumps(record(version)))
    return tree


def ext4_image(path: Path, tree: Path, size: int = 8 * MIB) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(tree), str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


class Master:
    """A master as scooby-slot sees it, under SCOOBY_SLOT_ROOT."""

    def __init__(self, tmp: Path, script: Path, cluster):
        self.root, self.script, self.tmp = tmp / "master", script, tmp
        self.user = cluster.secrets.default_user
        host = cluster.master.hostname
        self.dev = {
            "a": self.at(f"/dev/disk/by-partuuid/{layout.partuuid(host, 2)}"),
            "b": self.at(f"/dev/disk/by-partuuid/{layout.partuuid(host, 3)}"),
        }
        self.dev["a"].parent.mkdir(parents=True)
        # Slot A: its own file system (what a built image holds), and the running root.
        ext4_image(self.dev["a"], slot_tree(tmp / "slot-a", "v1"))
        with self.dev["b"].open("wb") as f:
            f.truncate(16 * MIB)  # slot B: never written
        slot_tree(self.root, "v1")
        self.write(layout.SLOT_RUN, "BOOTED=a\nTRIAL=0\n")
        self.write(layout.DATA_MACHINE_ID, "0123456789abcdef0123456789abcdef\n")
        for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):
            self.write(f"{layout.DATA_SSH}/{name}", f"key {name}\n")
        self.write(layout.DEPLOY_RECORD, json.dumps(record("v1")))
        u = self.user
        self.write(
            "/etc/passwd",
            f"root:x:0:0:root:/root:/bin/bash\n{u}:x:1000:1000::/home/{u}:/bin/bash\n",
        )
        self.write("/etc/shadow", f"root:*:19000:0:99999:7:::\n{u}:!:19000:0:99999:7:::\n")
        self.write("/etc/group", f"root:x:0:\nadm:x:4:{u}\n{u}:x:1000:\n")
        self.write("/etc/gshadow", f"root:*::\nadm:*::{u}\n{u}:!::\n")
        self.write("/etc/sudoers.d/scooby", f"{u} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        self.write(f"/home/{u}/.profile", "# the user's\n")
        self.write("/var/lib/cloud/instances/i-1/sem/config_ssh", "done\n")
        self.at("/var/lib/cloud/instance").symlink_to("/var/lib/cloud/instances/i-1")
        # TEST DOUBLE of a slot mounted: the new image's own accounts, no user of ours.
        for slot in ("a", "b"):
            self.double(slot)
        self.mnt = self.at("/test-double/mnt/b")

    def double(self, slot: str) -> None:
        self.mnt = self.at(f"/test-double/mnt/{slot}")
        own = {
            "passwd": "root:x:0:0:root:/root:/bin/bash\n_new:x:100:65534::/:/bin/false\n",
            "shadow": "root:*:19000:0:99999:7:::\n_new:!:19000::::::\n",
            "group": "root:x:0:\nadm:x:4:\n",
            "gshadow": "root:*::\nadm:*::\n",
        }
        for name, text in own.items():
            (self.mnt / "etc").mkdir(parents=True, exist_ok=True)
            (self.mnt / "etc" / name).write_text(text)
        for name in ("ssh/ssh_host_rsa_key", "machine-id", "sudoers.d/README"):
            (self.mnt / "etc" / name).parent.mkdir(parents=True, exist_ok=True)
            (self.mnt / "etc" / name).write_text("the image's own\n")
        (self.mnt / "home").mkdir()

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, text: str) -> None:
        self.at(path).parent.mkdir(parents=True, exist_ok=True)
        self.at(path).write_text(text)

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(self.script), *args], input=stdin, capture_output=True,
            env={**os.environ, "SCOOBY_SLOT_ROOT": str(self.root)},
        )  # fmt: skip

    def ok(self, *args: str, stdin: bytes = b"") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def refused(self, message: str, *args: str, stdin: bytes = b"") -> str:
        state = self.state_bytes()
        done = self.run(*args, stdin=stdin)
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1, err
        assert err.startswith("scooby-slot: error: ") and message in err, err
        assert self.state_bytes() == state  # the state as it was
        return err

    def state_bytes(self) -> bytes | None:
        path = self.at(layout.SLOT_STATE)
        return path.read_bytes() if path.exists() else None

    def status(self) -> dict[str, str]:
        return sh_keys(self.ok("status")) | {
            k: v for k, v in (ln.split("=", 1) for ln in self.ok("status").splitlines())
            if k.startswith("RELEASE_")
        }  # fmt: skip

    def boot(self, tmp: Path) -> str:
        """The initramfs's choice on the next boot, against this master's data partition."""
        chosen, booted, trial, _ = choose(
            tmp, f"PARTUUID={self.dev['a'].name}", self.at(layout.DATA_MOUNT)
        )
        self.write(layout.SLOT_RUN, booted)
        mark = self.at(layout.SLOT_TRIAL_MARK)
        mark.unlink(missing_ok=True)
        if trial:
            mark.write_text("")
        return booted.split()[0].removeprefix("BOOTED=")


@pytest.fixture
def master(tmp_path, script) -> Master:
    return Master(tmp_path, *script)


def new_image(tmp: Path, version: str) -> tuple[Path, bytes, str]:
    image = ext4_image(tmp / f"root-{version}.img", slot_tree(tmp / f"tree-{version}", version))
    data = image.read_bytes()
    stream = subprocess.run(["zstd", "-q", "-c", str(image)], capture_output=True, check=True)
    return image, stream.stdout, hashlib.sha256(data).hexdigest()


def test_status_of_a_card_that_never_had_an_ab_deploy(master):
    assert master.status() == {
        "BOOTED": "a", "COMMITTED": "a", "TRIAL": "", "TRIES": "0", "VERIFIED": "", "LAST": "",
        "RELEASE_A": "v1/digest-v1", "RELEASE_B": "",
    }  # fmt: skip
    assert master.state_bytes() is None  # status writes nothing


def test_write_verifies_from_the_device_and_makes_the_slot_this_masters(master, tmp_path):
    image, stream, digest = new_image(tmp_path, "v2")
    size = image.stat().st_size
    out = master.ok("write", "--bytes", str(size), "--sha256", digest, stdin=stream)
    assert f"slot b ({master.dev['b']}): wrote {size} bytes" in out and "matches" in out
    assert master.dev["b"].read_bytes()[:size] == image.read_bytes()
    status = master.status()
    assert status["VERIFIED"] == f"b:{digest}" and status["TRIAL"] == ""
    assert status["RELEASE_B"] == "v2/digest-v2"  # debugfs, from the written device
    mnt, u = master.mnt, master.user
    assert (mnt / "etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert sorted(p.name for p in (mnt / "etc/ssh").iterdir()) == [
        "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]  # fmt: skip
    assert os.readlink(mnt / "etc/ssh/ssh_host_ed25519_key") == (
        f"{layout.DATA_SSH}/ssh_host_ed25519_key"
    )
    passwd = (mnt / "etc/passwd").read_text().splitlines()
    assert passwd[:2] == ["root:x:0:0:root:/root:/bin/bash", "_new:x:100:65534::/:/bin/false"]
    assert passwd[2] == f"{u}:x:1000:1000::/home/{u}:/bin/bash"
    assert (mnt / "etc/shadow").read_text().endswith(f"{u}:!:19000:0:99999:7:::\n")
    assert (mnt / "etc/group").read_text() == f"root:x:0:\nadm:x:4:{u}\n{u}:x:1000:\n"
    assert (mnt / "etc/gshadow").read_text() == f"root:*::\nadm:*::{u}\n{u}:!::\n"
    assert (mnt / "etc/sudoers.d/scooby").read_text().startswith(f"{u} ALL=")
    assert (mnt / f"home/{u}/.profile").read_text() == "# the user's\n"
    assert (mnt / "var/lib/cloud/instances/i-1/sem/config_ssh").exists()
    assert os.readlink(mnt / "var/lib/cloud/instance") == "/var/lib/cloud/instances/i-1"
    # The slot's identity: the base its agents' upper dirs are made on (scooby-agent).
    assert (mnt / layout.SLOT_ID.lstrip("/")).read_text() == f"b:{digest}\n"
    assert layout.SLOT_ID in out
    # Written again (a new image over the same inactive slot): the user is not added twice.
    image, stream, digest = new_image(tmp_path, "v3")
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    lines = (mnt / "etc/passwd").read_text().splitlines()
    assert [ln for ln in lines if ln.startswith(f"{u}:")] == [passwd[2]]
    assert master.status()["RELEASE_B"] == "v3/digest-v3"
    assert (mnt / layout.SLOT_ID.lstrip("/")).read_text() == f"b:{digest}\n"


def test_write_refusals_leave_the_state_as_it_was(master, tmp_path):
    image, stream, digest = new_image(tmp_path, "v2")
    size = str(image.stat().st_size)
    master.refused("not 64 lowercase hex", "write", "--bytes", size, "--sha256", "abc")
    master.refused("multiple of 512", "write", "--bytes", "1000", "--sha256", digest)
    big = str(32 * MIB)
    master.refused("holds 16777216", "write", "--bytes", big, "--sha256", digest, stdin=stream)
    assert master.dev["b"].read_bytes() == bytes(16 * MIB)  # too big: nothing written
    master.refused("more than --bytes", "write", "--bytes", str(4 * MIB), "--sha256", digest,
                   stdin=stream)  # fmt: skip
    master.refused("the stream held", "write", "--bytes", str(12 * MIB), "--sha256", digest,
                   stdin=stream)  # fmt: skip
    master.refused("zstd -d failed", "write", "--bytes", size, "--sha256", digest,
                   stdin=b"not zstd at all")  # fmt: skip
    master.refused("the stream's sha256 is", "write", "--bytes", size, "--sha256", "0" * 64,
                   stdin=stream)  # fmt: skip
    master.refused("invalid choice", "wipe")  # argparse's errors are one line too
    assert master.status()["VERIFIED"] == ""
    master.refused("last write did not finish", "trial")


def test_a_write_cut_short_voids_verified_but_leaves_the_state_file(master, tmp_path):
    image, stream, digest = new_image(tmp_path, "v2")
    size = str(image.stat().st_size)
    master.ok("write", "--bytes", size, "--sha256", digest, stdin=stream)
    before = master.state_bytes()
    master.refused("zstd -d failed", "write", "--bytes", size, "--sha256", digest,
                   stdin=stream[: len(stream) // 2])  # fmt: skip
    assert master.state_bytes() == before and b"VERIFIED=b:" in before
    assert master.status()["VERIFIED"] == ""  # slot B is not what it verified any more
    master.refused("last write did not finish", "trial")
    assert master.boot(tmp_path) == "a"


def test_trial_commit_and_rollback_with_the_initramfs(master, tmp_path):
    master.refused("is not verified", "trial")
    image, stream, digest = new_image(tmp_path, "v2")
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    master.refused("is not on trial", "commit")
    master.ok("trial", "--reboot")
    assert master.at("/test-double/commands.log").read_text() == "systemctl reboot\n"
    assert master.status()["TRIAL"] == "b" and master.status()["TRIES"] == "1"
    # The trial boot: slot B's own files are the running root's now.
    assert master.boot(tmp_path) == "b"
    shutil.rmtree(master.at("/etc/scooby"))
    slot_tree(master.root, "v2")
    master.refused("on trial", "write", "--bytes", "4096", "--sha256", digest)
    out = master.ok("commit")
    assert "slot b committed (was a)" in out
    status = master.status()
    assert (status["COMMITTED"], status["TRIAL"], status["TRIES"]) == ("b", "", "0")
    assert not master.at(layout.SLOT_TRIAL_MARK).exists()
    got = json.loads(master.at(layout.DEPLOY_RECORD).read_text())
    files = got["files"]
    assert got["release"] == {"base": "debian", "k3s": "v2"}
    assert files["/usr/local/sbin/scooby-slot"]["sha256"] == "slot-v2"  # a root file: slot's
    assert files["/etc/dnsmasq.d/scooby.conf"]["sha256"] == "dnsmasq-v2"
    # ...a file on the data partition keeps the entry of what is deployed there.
    assert files[f"{layout.AGENT_LAYERS}/willow/etc/hostname"]["sha256"] == "w-v1"
    previous = master.at(f"{layout.DEPLOY_PREVIOUS}/record.json")
    assert json.loads(previous.read_text()) == record("v1")
    assert master.boot(tmp_path) == "b"  # committed: every boot from now on
    # Rollback: slot A holds v1 (read from its device), so it is committed again.
    out = master.ok("rollback", "--reboot")
    assert "slot a committed again (was b)" in out
    assert master.status()["COMMITTED"] == "a"
    assert json.loads(master.at(layout.DEPLOY_RECORD).read_text())["release"]["k3s"] == "v1"
    assert master.boot(tmp_path) == "a"


def test_a_rejected_trial_returns_to_the_committed_slot_and_says_why(master, tmp_path):
    image, stream, digest = new_image(tmp_path, "v2")
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    master.ok("trial")
    master.refused("not on trial", "reject", "dnsmasq failed")
    assert master.boot(tmp_path) == "b"
    master.refused("a reason is needed", "reject", " ")
    master.ok("reject", "health check: dnsmasq failed", "--reboot")
    assert master.boot(tmp_path) == "a"
    status = master.status()
    assert (status["COMMITTED"], status["TRIAL"], status["BOOTED"]) == ("a", "", "a")
    assert status["LAST"] == "trial b failed: health check: dnsmasq failed"
    # Slot A is committed and booted; slot B (v2) holds a release: rollback would go there.
    assert master.status()["RELEASE_B"] == "v2/digest-v2"


def test_commit_without_the_slots_own_record_says_so_and_still_switches(master, tmp_path):
    tree = tmp_path / "bare"
    (tree / "etc" / "scooby").mkdir(parents=True)
    (tree / "etc" / "scooby" / "release").write_text(release_text("v0", "d0"))
    image = ext4_image(tmp_path / "bare.img", tree)
    stream = subprocess.run(["zstd", "-q", "-c", str(image)], capture_output=True).stdout
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    master.ok("trial")
    master.boot(tmp_path)
    master.at(layout.SLOT_RECORD).unlink()
    before = master.at(layout.DEPLOY_RECORD).read_bytes()
    done = master.run("commit")
    assert done.returncode == 0
    assert f"has no {layout.SLOT_RECORD}" in done.stderr.decode()
    assert master.status()["COMMITTED"] == "b"
    assert master.at(layout.DEPLOY_RECORD).read_bytes() == before


def test_rollback_refuses_a_slot_without_a_release(master):
    master.refused("holds no release", "rollback")


def test_a_committed_trial_boot_is_an_ordinary_boot(master, tmp_path):
    """Still the boot the initramfs started as a trial (/run/scooby/slot says TRIAL=1), but
    committed: the other slot may be written and tried, the health check has nothing to do."""
    image, stream, digest = new_image(tmp_path, "v2")
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    master.ok("trial")
    assert master.boot(tmp_path) == "b"
    master.ok("commit")
    assert "TRIAL=1" in master.at(layout.SLOT_RUN).read_text()
    assert "nothing to check" in master.ok("health")
    image, stream, digest = new_image(tmp_path, "v3")
    master.ok("write", "--bytes", str(image.stat().st_size), "--sha256", digest, stdin=stream)
    assert master.status()["VERIFIED"] == f"a:{digest}"
    master.refused("not on trial", "commit")
    master.refused("not on trial", "reject", "late")
    master.ok("trial")
    assert master.boot(tmp_path) == "a"
