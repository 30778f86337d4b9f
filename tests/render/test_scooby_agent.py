"""`scooby-agent` as rendered for the original's example cluster (agents ted and willow).

The script runs for real, as root, in a private mount namespace whose /var/lib is an empty
tmpfs (so its upper and work dirs, their base stamps, the kept generation and
/var/lib/nfs/etab are the test's own; the root slot's identity is a file of the test's,
named by SCOOBY_AGENT_SLOT_ID). The commands
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
    stamps: dict[str, str]  # each base stamp and kept generation's base file: its line


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
    if [ -n "$STAMP" ]; then
        mkdir -p "$STAMPS" && printf '%s\n' "$STAMP" >"$STAMPS/$name"
    fi
done
eval "$EXTRA"
mkdir -p /var/lib/nfs
printf '%s' "$ETAB" >/var/lib/nfs/etab
install -m 0755 "$SCRIPT" /var/lib/scooby-agent
set +e
PATH="$STUBS:$PATH" /var/lib/scooby-agent "$@"
code=$?
echo "--- left"
cd /var/lib/scooby && find . -mindepth 2 | sort
echo "--- stamps"
for f in ./agents.base/* ./agents.reset/*/base; do
    if [ -f "$f" ]; then echo "$f $(cat "$f")"; fi
done
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
    base: str = "b:0123abcd",
    stamp: str | None = "b:0123abcd",
    extra: str = "",
) -> Result:
    """`base`: the root slot's identity (SCOOBY_AGENT_SLOT_ID's file); `stamp`: the base each
    agent's upper dir was made on (None: no stamp); `extra`: shell run after the set-up."""
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
        "STAMPS": layout.AGENT_BASE_STAMPS,
        "STAMP": stamp or "",
        "EXTRA": extra,
        "SCOOBY_AGENT_SLOT_ID": str(tmp_path / "slot-id"),
    }
    (tmp_path / "slot-id").write_text(f"{base}\n" if base else "")
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
    stdout, _, rest = proc.stdout.partition("--- left\n")
    left, _, stamps = rest.partition("--- stamps\n")
    found = dict(line.split(" ", 1) for line in stamps.splitlines())
    return Result(proc.returncode, stdout, proc.stderr, log.read_text().splitlines(), left.split(),
                  found)  # fmt: skip


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


# --- a new base: the upper dir made on another root slot (docs/day2.md, 4.5) ---------------

RESET = f"{layout.AGENT_RESETS}/willow"
KEPT = "./" + layout.AGENT_RESETS.removeprefix("/var/lib/scooby/") + "/willow"
STAMP = "./" + layout.AGENT_BASE_STAMPS.removeprefix("/var/lib/scooby/")
WILLOWS = ("./etc/rancher/node/password", "./.hidden")  # what the set-up put in each upper


def _under(left: list[str], top: str) -> set[str]:
    return {"." + p.removeprefix(top) for p in left if p.startswith(top + "/")}


def test_prepare_on_the_same_base_changes_nothing(script, tmp_path):
    r = run(script, tmp_path, "prepare", mounted=False)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "ted: upper dir made on this base (b:0123abcd)",
        "willow: upper dir made on this base (b:0123abcd)",
    ]
    assert r.calls == []  # not even a look at the mounts
    assert set(WILLOWS) <= _under(r.left, "./agents/willow")
    assert not [p for p in r.left if p.startswith(KEPT)]


def test_prepare_on_a_new_base_sets_the_upper_aside_and_starts_a_fresh_one(script, tmp_path):
    r = run(script, tmp_path, "prepare", "willow", mounted=False, stamp="a:flashed")
    assert r.code == 0, r.stderr
    assert r.stdout == (
        "willow: new base (a:flashed -> b:0123abcd): its upper dir moved to "
        f"{RESET}/upper (kept until the next new base), a fresh one started\n"
    )
    assert r.calls == [f"mountpoint -q {WILLOW}"]  # it checked that the overlay is not mounted
    # The fresh upper and work dirs are empty; the old ones, with the work dir's index, kept.
    assert _under(r.left, "./agents/willow") == set() and "./agents/willow" in r.left
    assert _under(r.left, "./overlay/willow") == set() and "./overlay/willow" in r.left
    assert set(WILLOWS) <= _under(r.left, f"{KEPT}/upper")
    assert _under(r.left, f"{KEPT}/work") == {"./work", "./index"}
    assert r.stamps[f"{STAMP}/willow"] == "b:0123abcd"
    assert r.stamps[f"{KEPT}/base"] == "a:flashed"
    # ted's upper, made on the old base too, waits for its own turn: untouched.
    assert set(WILLOWS) <= _under(r.left, "./agents/ted")
    assert r.stamps[f"{STAMP}/ted"] == "a:flashed"


def test_prepare_keeps_one_generation(script, tmp_path):
    older = (f"mkdir -p {RESET}/upper {RESET}/work && echo 0 >{RESET}/upper/gen0 "
             f"&& echo c:1 >{RESET}/base")  # fmt: skip
    r = run(script, tmp_path, "prepare", "willow", mounted=False, stamp="a:2", extra=older)
    assert r.code == 0, r.stderr
    assert set(WILLOWS) <= _under(r.left, f"{KEPT}/upper")
    assert f"{KEPT}/upper/gen0" not in r.left  # the generation before is gone
    assert r.stamps[f"{KEPT}/base"] == "a:2" and r.stamps[f"{STAMP}/willow"] == "b:0123abcd"


def test_prepare_back_on_the_base_of_the_kept_upper_swaps_them(script, tmp_path):
    # The trial of slot a failed (or a rollback): the upper made on b before it comes back.
    kept = (f"mkdir -p {RESET}/upper {RESET}/work/index && echo 0 >{RESET}/upper/gen0 "
            f"&& echo b:0123abcd >{RESET}/base")  # fmt: skip
    r = run(script, tmp_path, "prepare", "willow", mounted=False, stamp="a:9", extra=kept)
    assert r.code == 0, r.stderr
    assert "willow: back on base b:0123abcd: its upper dir made on it is back" in r.stdout
    assert _under(r.left, "./agents/willow") == {"./gen0"}
    assert _under(r.left, "./overlay/willow") == {"./index"}
    assert set(WILLOWS) <= _under(r.left, f"{KEPT}/upper")
    assert _under(r.left, f"{KEPT}/work") == {"./work", "./index"}
    assert r.stamps[f"{STAMP}/willow"] == "b:0123abcd" and r.stamps[f"{KEPT}/base"] == "a:9"
    assert not [p for p in r.left if p.startswith(KEPT + ".")]  # no half-made folder left


def test_prepare_refuses_a_mounted_overlay_on_another_base(script, tmp_path):
    r = run(script, tmp_path, "prepare", "willow", mounted=True, stamp="a:flashed")
    assert r.code == 1
    assert "willow: its upper dir was made on base a:flashed, this slot is b:0123abcd, " in r.stderr
    assert "its overlay is mounted: power willow off" in r.stderr
    assert set(WILLOWS) <= _under(r.left, "./agents/willow")  # nothing moved under a mount
    assert r.stamps[f"{STAMP}/willow"] == "a:flashed"


def test_prepare_an_unstamped_upper(script, tmp_path):
    # A master from before stamps: an upper with files was made on some other base, unknown;
    # an empty one (a fresh image, a new agent) is simply stamped.
    empty = f"find {layout.AGENT_UPPERS}/ted -mindepth 1 -delete"
    r = run(script, tmp_path, "prepare", mounted=False, stamp=None, base="", extra=empty)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "ted: upper dir empty: made on this base (flashed)",
        "willow: new base (unknown -> flashed): its upper dir moved to "
        f"{RESET}/upper (kept until the next new base), a fresh one started",
    ]
    assert _under(r.left, "./overlay/ted") == {"./work", "./index"}  # an empty upper's: kept
    assert r.stamps[f"{STAMP}/ted"] == "flashed" and r.stamps[f"{KEPT}/base"] == "unknown"


def test_prepare_that_cannot_move_the_upper_fails_and_stamps_nothing(script, tmp_path):
    # A file where the kept generations' folder goes: mkdir fails, set -e ends the script
    # before any stamp; scooby-agent-uppers.service fails, and no overlay mounts.
    r = run(script, tmp_path, "prepare", mounted=False, stamp="a:1",
            extra=f": >{layout.AGENT_RESETS}")  # fmt: skip
    assert r.code == 1 and "File exists" in r.stderr and "new base" not in r.stdout
    assert set(WILLOWS) <= _under(r.left, "./agents/ted")
    assert r.stamps[f"{STAMP}/ted"] == "a:1" and r.stamps[f"{STAMP}/willow"] == "a:1"


def test_prepare_only_known_agents(script, tmp_path):
    r = run(script, tmp_path, "prepare", "faith", mounted=False, stamp="a:1")
    assert r.code == 2 and "unknown agent 'faith'" in r.stderr
    assert set(WILLOWS) <= _under(r.left, "./agents/willow")


def test_prepare_needs_root(script, tmp_path):
    r = run(script, tmp_path, "prepare", user=65534, stamp="a:1")
    assert r.code == 1 and "prepare needs root" in r.stderr


def test_remount_on_a_new_base_sets_the_upper_aside_first(script, tmp_path):
    r = run(script, tmp_path, "remount", "willow", mounted=False, exported=False, stamp="a:1")
    assert r.code == 0, r.stderr
    assert r.calls[-2:] == [f"mount {WILLOW}", "exportfs -r"]
    assert set(WILLOWS) <= _under(r.left, f"{KEPT}/upper")
    assert _under(r.left, "./agents/willow") == set()


def test_reset_stamps_the_base(script, tmp_path):
    r = run(script, tmp_path, "reset", "willow", stamp="a:1")
    assert r.code == 0, r.stderr
    assert r.stamps[f"{STAMP}/willow"] == "b:0123abcd" and r.stamps[f"{STAMP}/ted"] == "a:1"


def test_status_says_the_base(script, tmp_path):
    r = run(script, tmp_path, "status", "willow", stamp="a:1")
    assert "base:      upper made on a:1, this slot is b:0123abcd" in r.stdout


def test_the_script_is_plain_posix_sh(script):
    assert script.read_text().startswith("#!/bin/sh\n")
    assert os.access(script, os.X_OK)
    assert subprocess.run(["dash", "-n", str(script)]).returncode == 0
    assert shutil.which("setpriv")  # used above to drop root
