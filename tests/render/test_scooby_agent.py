"""`scooby-agent` as rendered for the original's example cluster (agents ted and willow).

The script runs for real, as root, in a private mount namespace whose /var/lib is an empty
tmpfs (so its upper and work dirs and /var/lib/nfs/etab are the test's own). The commands
that would touch the host's mounts, NFS exports or a K3S cluster (exportfs, mount, umount,
mountpoint, k3s) are a TEST DOUBLE: a fake PATH directory of stubs that log their arguments
and exit with a status the test chooses. Nothing else is faked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

from scooby.core import layout
from scooby.load.reader import load_or_raise
from scooby.render.renderer import render

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount namespaces")

ORIGINAL = ROOT / "examples" / "original"
STUBBED = ("exportfs", "mount", "umount", "mountpoint", "k3s")
WILLOW = f"{layout.AGENT_MOUNTS}/willow"


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    out = render(load_or_raise(ORIGINAL, environ={}), tmp / "out").out
    return out / "master" / layout.SCOOBY_AGENT.lstrip("/")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    calls: list[str]  # what the stubs were called with, in order
    left: list[str]  # files left in the upper and work dirs, relative to /var/lib/scooby


def _stubs(where: Path, with_k3s: bool) -> Path:
    """The test double: one logging stub per command scooby-agent uses on mounts and K3S."""
    stubs = where / "stubs"
    stubs.mkdir()
    for name in STUBBED:
        if name == "k3s" and not with_k3s:
            continue
        stub = stubs / name
        stub.write_text(
            f'#!/bin/sh\necho "{name} $*" >>"$STUB_LOG"\nexit "${{STUB_{name.upper()}_RC:-0}}"\n'
        )
        stub.chmod(0o755)
    return stubs


SETUP = """\
set -e
mount -t tmpfs scooby-test /var/lib
for name in ted willow; do
    mkdir -p "$UPPERS/$name/etc/rancher/node" "$WORKDIRS/$name/work" "$WORKDIRS/$name/index"
    echo secret >"$UPPERS/$name/etc/rancher/node/password"
    echo x >"$UPPERS/$name/.hidden"
    chmod 000 "$WORKDIRS/$name/work"
done
mkdir -p /var/lib/nfs
printf '%s' "$ETAB" >/var/lib/nfs/etab
install -m 0755 "$SCRIPT" /var/lib/scooby-agent
set +e
PATH="$STUBS:$PATH" /var/lib/scooby-agent "$@"
code=$?
echo "--- left"
cd /var/lib/scooby && find . -mindepth 2 | sort
exit $code
"""


def run(
    script: Path,
    tmp_path: Path,
    *args: str,
    mounted: bool = True,
    exported: bool = True,
    with_k3s: bool = True,
    rc: dict[str, int] | None = None,
    user: int | None = None,
) -> Result:
    log = tmp_path / "calls.log"
    log.write_text("")
    log.chmod(0o666)
    etab = f"{WILLOW}\t192.168.64.65(rw,sync,no_subtree_check,fsid=1)\n" if exported else ""
    env = {
        **os.environ,
        "SCRIPT": str(script),
        "STUBS": str(_stubs(tmp_path, with_k3s)),
        "STUB_LOG": str(log),
        "STUB_MOUNTPOINT_RC": "0" if mounted else "1",
        "UPPERS": layout.AGENT_UPPERS,
        "WORKDIRS": layout.AGENT_WORKDIRS,
        "ETAB": etab,
    }
    env.update({f"STUB_{k.upper()}_RC": str(v) for k, v in (rc or {}).items()})
    setup = SETUP
    if user is not None:  # drop root only for the script itself
        drop = f"setpriv --reuid={user} --regid={user} --clear-groups"
        setup = setup.replace('$PATH" /var/lib/', f'$PATH" {drop} /var/lib/')
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    stdout, _, left = proc.stdout.partition("--- left\n")
    return Result(proc.returncode, stdout, proc.stderr, log.read_text().splitlines(), left.split())


# --- argument handling ---------------------------------------------------------------------


def test_no_command_prints_usage_and_fails(script, tmp_path):
    r = run(script, tmp_path)
    assert r.code == 2 and "usage: scooby-agent COMMAND" in r.stderr and r.calls == []


def test_help(script, tmp_path):
    r = run(script, tmp_path, "--help")
    assert r.code == 0
    assert "reset NAME" in r.stdout and "agents: ted willow" in r.stdout


def test_unknown_command(script, tmp_path):
    r = run(script, tmp_path, "destroy", "willow")
    assert r.code == 2 and "unknown command 'destroy'" in r.stderr and r.calls == []


@pytest.mark.parametrize("name", ["faith", "willow;reboot", "../ted", "*", "", "Willow"])
def test_only_known_agents(script, tmp_path, name):
    r = run(script, tmp_path, "reset", name)
    assert r.code == 2
    assert f"unknown agent '{name}' (agents: ted willow)" in r.stderr
    assert r.calls == []
    assert "./agents/willow/etc" in r.left  # nothing wiped


@pytest.mark.parametrize("args", [["reset"], ["reset", "ted", "willow"], ["status"]])
def test_commands_take_exactly_one_name(script, tmp_path, args):
    r = run(script, tmp_path, *args)
    assert r.code == 2 and "needs exactly one agent NAME" in r.stderr and r.calls == []


def test_list_takes_no_name(script, tmp_path):
    r = run(script, tmp_path, "list", "ted")
    assert r.code == 1 and "list takes no NAME" in r.stderr


def test_reset_needs_root(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", user=65534)
    assert r.code == 1 and "reset needs root" in r.stderr
    assert r.calls == [] and "./agents/willow/etc" in r.left


# --- list and status -----------------------------------------------------------------------


def test_list(script, tmp_path):
    r = run(script, tmp_path, "list", mounted=True, exported=True)
    assert r.code == 0, r.stderr
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["NAME", "IP", "MAC", "PXE-ID", "MOUNTED", "EXPORTED"]
    assert lines[1] == ["ted", "192.168.64.254", "b8:27:eb:86:53:3c", "9686533c", "yes", "no"]
    assert lines[2] == ["willow", "192.168.64.65", "b8:27:eb:81:1a:52", "c6811a52", "yes", "yes"]


def test_status_asks_k3s_for_the_node(script, tmp_path):
    r = run(script, tmp_path, "status", "willow")
    assert r.code == 0, r.stderr
    assert "address:   192.168.64.65 (b8:27:eb:81:1a:52), PXE ID c6811a52" in r.stdout
    assert "mounted: yes, exported: yes" in r.stdout
    assert "k3s kubectl get node willow -o wide" in r.calls


def test_status_without_k3s(script, tmp_path):
    r = run(script, tmp_path, "status", "ted", with_k3s=False, exported=False)
    assert r.code == 0, r.stderr
    assert "(no K3S on this master)" in r.stdout and "exported: no" in r.stdout


# --- reset ---------------------------------------------------------------------------------


def test_reset_does_the_originals_recipe_right(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow")
    assert r.code == 0, r.stderr
    assert r.calls == [
        f"exportfs -u 192.168.64.65:{WILLOW}",
        f"mountpoint -q {WILLOW}",
        f"umount {WILLOW}",
        "k3s kubectl delete node willow --ignore-not-found",
        f"mount {WILLOW}",
        "exportfs -r",
    ]
    # willow's upper and work dirs are empty (hidden files and the 000 work dir too); the
    # dirs themselves stay for the overlay; ted is untouched.
    willow = [p for p in r.left if p.startswith(("./agents/willow/", "./overlay/willow/"))]
    assert willow == [] and {"./agents/willow", "./overlay/willow"} <= set(r.left)
    assert {"./agents/ted/etc/rancher/node/password", "./agents/ted/.hidden"} <= set(r.left)
    assert {"./overlay/ted/work", "./overlay/ted/index"} <= set(r.left)
    assert "agent willow is reset" in r.stdout


def test_reset_of_an_unmounted_unexported_agent(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", mounted=False, exported=False)
    assert r.code == 0, r.stderr
    assert "umount" not in " ".join(r.calls) and "exportfs -u" not in " ".join(r.calls)
    assert r.calls[-2:] == [f"mount {WILLOW}", "exportfs -r"]


def test_reset_without_k3s(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", with_k3s=False)
    assert r.code == 0, r.stderr
    assert "no K3S on this master: no node to delete" in r.stdout
    assert r.calls[-2:] == [f"mount {WILLOW}", "exportfs -r"]


def test_reset_when_k3s_cannot_delete_the_node(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", rc={"k3s": 1})
    # The root is still remounted and exported; the failure is reported and in the status.
    assert r.code == 1
    assert "run 'k3s kubectl delete node willow' before it boots again" in r.stderr
    assert r.calls[-2:] == [f"mount {WILLOW}", "exportfs -r"]


def test_reset_stops_when_the_root_is_busy(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", rc={"umount": 32})
    assert r.code == 32
    assert r.calls[-1] == f"umount {WILLOW}"
    assert "./agents/willow/etc/rancher/node/password" in r.left  # nothing wiped under a live mount


def test_remount_keeps_the_files(script, tmp_path):
    r = run(script, tmp_path, "remount", "willow")
    assert r.code == 0, r.stderr
    assert r.calls[-3:] == [f"umount {WILLOW}", f"mount {WILLOW}", "exportfs -r"]
    assert "./agents/willow/etc/rancher/node/password" in r.left


def test_the_script_is_plain_posix_sh(script):
    assert script.read_text().startswith("#!/bin/sh\n")
    assert os.access(script, os.X_OK)
    assert subprocess.run(["dash", "-n", str(script)]).returncode == 0
    assert shutil.which("setpriv")  # used above to drop root
