"""Careless and hostile input through the real CLI (`python -m scooby`), one table row each.

Every row names its class (the family of inputs it stands for), builds a repository, runs
one command and checks the expected one-line error; every run, whatever the row, also
passes `assert_well_behaved` (exit 0 or 1, one-line errors, no traceback, bounded time and
memory, no planted secret in the output) and leaves every file outside --out as it was.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hostile import (
    AWS_KEY_ID,
    GITHUB_TOKEN,
    PRIVATE_KEY,
    ROOT,
    WILLOW,
    assert_well_behaved,
    scooby,
    snapshot,
    write,
)

MANIFESTS = "server/var/lib/rancher/k3s/server/manifests"


class Link(str):
    """A symbolic link to this target."""


class Fifo(str):
    """A named pipe."""


def agent(**changes: str) -> str:
    text = WILLOW
    for key, value in changes.items():
        text = re.sub(rf"^{key}=.*$", lambda _m, k=key, v=value: f"{k}={v}", text, flags=re.M)
    return text


@dataclass(frozen=True)
class Case:
    klass: str  # the family this row stands for
    files: dict = field(default_factory=dict)  # repo-relative path -> text | bytes | Link | Fifo
    expect: str | None = None  # a regular expression the output must match; None: exit 0
    command: tuple[str, ...] = ("validate",)
    absent: tuple[str, ...] = ()  # patterns the output must not hold


def _quoted(value: str) -> str:
    return '"' + value + '"'


CASES: dict[str, Case] = {
    # --- a value that carries a second line: every pattern matches whole values ------------
    "device with trailing newline": Case(
        "newline in a value",
        {"config": "LC_EXTERNAL_DEVICE=" + _quoted("eth0\n") + "\n"},
        r"config:1: error: LC_EXTERNAL_DEVICE: contains a line break",
    ),
    "suite with trailing newline (a JSON-schema pattern)": Case(
        "newline in a value",
        {"config": "LC_DEBIAN_SUITE=" + _quoted("bookworm\n") + "\n"},
        r"LC_DEBIAN_SUITE: contains a line break",
    ),
    "mirror with an extra apt line": Case(
        "newline in a value",
        {
            "config": "LC_DEBIAN_MIRROR="
            + _quoted("http://deb.debian.org/debian\ndeb http://evil.invalid/ x main")
            + "\n"
        },
        r"LC_DEBIAN_MIRROR: contains a line break",
    ),
    "mirror with a space": Case(
        "newline in a value",
        {"config": "LC_DEBIAN_MIRROR=" + _quoted("http://a.invalid/debian x") + "\n"},
        r"LC_DEBIAN_MIRROR: .* is not an http",
    ),
    "pxe id with trailing newline": Case(
        "newline in a value",
        {"agents/willow.agent": agent(AGENT_PXE_ID=_quoted("c6811a52\n"))},
        r"agents/willow.agent:4: error: AGENT_PXE_ID: contains a line break",
    ),
    "partuuid with trailing newline": Case(
        "newline in a value",
        {"agents/willow.agent": agent(AGENT_RANCHER_PART_UUID=_quoted("4f1c2d3e-02\n"))},
        r"AGENT_RANCHER_PART_UUID: contains a line break",
    ),
    "hostname with a carriage return": Case(
        "newline in a value",
        {"config": "LC_HOSTNAME=" + _quoted("buffy\r") + "\n"},
        r"LC_HOSTNAME: contains a line break",
    ),
    "k3s args with an escape character": Case(
        "control character in a value",
        {"agents/willow.agent": agent(AGENT_K3S_ARGS=_quoted("--node-label a=\x1b[2J"))},
        r"AGENT_K3S_ARGS: contains a line break or another control character",
    ),
    "agent file name with a newline": Case(
        "newline in a file name",
        {"agents/xander\n.agent": WILLOW.replace("c6811a52", "c6811a53")},
        r"not a valid agent hostname",
    ),
    "username with trailing newline": Case(
        "newline in a value",
        {".env": "LC_DEFAULT_USER=" + _quoted("spike\n") + "\n"},
        r"LC_DEFAULT_USER: contains a line break",
    ),
    # --- device names ----------------------------------------------------------------------
    "device lo": Case("device name", {"config": "LC_EXTERNAL_DEVICE=lo\n"}, r"not a kernel"),
    "device ..": Case("device name", {"config": "LC_INTERNAL_DEVICE=..\n"}, r"not a kernel"),
    "device .": Case("device name", {"config": "LC_INTERNAL_DEVICE=.\n"}, r"not a kernel"),
    "device of 16 characters": Case(
        "device name", {"config": "LC_INTERNAL_DEVICE=eth1234567890123\n"}, r"not a kernel"
    ),
    "device with a slash": Case(
        "device name", {"config": "LC_INTERNAL_DEVICE=eth/1\n"}, r"not a kernel"
    ),
    "device with a colon (an alias, not a device)": Case(
        "device name", {"config": "LC_INTERNAL_DEVICE=eth0:1\n"}, r"not a kernel"
    ),
    # --- DNS servers nobody can ask ----------------------------------------------------------
    **{
        f"dns {ip}": Case("DNS server", {"config": f"LC_PRIMARY_DNS={ip}\n"}, why)
        for ip, why in (
            ("0.0.0.0", r"LC_PRIMARY_DNS: 0.0.0.0 is 'no address'"),
            ("127.0.0.1", r"loopback"),
            ("127.53.0.1", r"loopback"),
            ("224.0.0.251", r"multicast"),
            ("255.255.255.255", r"broadcast or reserved"),
            ("240.0.0.1", r"broadcast or reserved"),
            ("192.168.1.64", r"the master's own LC_EXTERNAL_IP"),
            ("192.168.64.1", r"the master's own LC_INTERNAL_IP"),
        )
    },
    "secondary dns loopback": Case(
        "DNS server", {"config": "LC_SECONDARY_DNS=127.0.0.1\n"}, r"LC_SECONDARY_DNS: .*loopback"
    ),
    # --- networks no master can serve --------------------------------------------------------
    "internal net 127/8": Case(
        "special network",
        {"config": "LC_INTERNAL_NET=127.0.0.0/8\nLC_INTERNAL_IP=127.0.0.1\n"},
        r"LC_INTERNAL_NET: 127.0.0.0/8 overlaps loopback",
    ),
    "internal net inside 127/8": Case(
        "special network",
        {"config": "LC_INTERNAL_NET=127.1.0.0/16\nLC_INTERNAL_IP=127.1.0.1\n"},
        r"overlaps loopback",
    ),
    "internal net multicast": Case(
        "special network",
        {"config": "LC_INTERNAL_NET=224.1.1.0/24\nLC_INTERNAL_IP=224.1.1.1\n"},
        r"overlaps multicast",
    ),
    "external net 0/8": Case(
        "special network",
        {"config": "LC_EXTERNAL_NET=0.0.0.0/8\nLC_EXTERNAL_IP=0.1.1.1\nLC_EXTERNAL_GW=0.1.1.2\n"},
        r"LC_EXTERNAL_NET: 0.0.0.0/8 overlaps 'this network'",
    ),
    # --- K3S flags Scooby manages, however they are spelt -----------------------------------
    **{
        f"k3s flag {words}": Case(
            "managed K3S flag",
            {"agents/willow.agent": agent(AGENT_K3S_ARGS=_quoted(words))},
            r"AGENT_K3S_ARGS: sets .*which Scooby manages",
        )
        for words in (
            "-token=abc",
            "--token=abc",
            "-token abc",
            "-server=https://10.0.0.1:6443",
            "---node-ip=1.2.3.4",
            "-t abc",
            "--node-label a=b -data-dir=/x",
            "-with-node-id",
        )
    },
    # --- secrets never printed ---------------------------------------------------------------
    "private key pasted as the SSH key": Case(
        "secret in a message",
        {".env": "LC_SSH_AUTH_KEY=" + _quoted(PRIVATE_KEY) + "\n"},
        r"\.env:1: error: LC_SSH_AUTH_KEY: ",
    ),
    "token in a line that does not parse": Case(
        "secret in a message",
        {".env": f"LC_PACKER_GITHUB_API_TOKEN {GITHUB_TOKEN} x\n"},
        r"\.env:1: error: ",
    ),
    "token alone on a line": Case(
        "secret in a message", {".env": f"{GITHUB_TOKEN}\n"}, r"\.env:1: error: has no '='"
    ),
    "token as the user name": Case(
        "secret in a message",
        {".env": f"LC_DEFAULT_USER={GITHUB_TOKEN}\n"},
        r"LC_DEFAULT_USER: .*is not a lower-case Unix user name",
    ),
    "aws key id in an unknown key": Case(
        "secret in a message",
        {".env": f"AWS_KEY={AWS_KEY_ID}\n"},
        r"AWS_KEY: unknown key",
    ),
    "token in config": Case(
        "secret in a committed file",
        {"config": f"LC_HOSTNAME={GITHUB_TOKEN}\n"},
        r"config:1: error: LC_HOSTNAME: ",
    ),
    "token in a server file": Case(
        "secret in a committed file",
        {"server/etc/app.conf": f"token = {GITHUB_TOKEN}\n"},
        r"server/etc/app.conf:1: error: .*looks like a GitHub token",
    ),
    # --- sizes and counts ---------------------------------------------------------------------
    "a 20 MB config": Case(
        "huge input",
        {"config": "LC_HOSTNAME=" + "a" * (20 << 20) + "\n"},
        r"config: error: is [\d,]+ bytes; the limit is 65,536",
    ),
    "a 60 KB value is cut in the message": Case(
        "huge value echoed",
        {"config": "LC_HOSTNAME=" + "A" * 60000 + "\n"},
        r"LC_HOSTNAME: 'AAAA.*\.\.\. \(60,000 characters\) is not",
    ),
    "3,000 unknown keys": Case(
        "error flood",
        {"config": "".join(f"LC_X{i}=1\n" for i in range(3000))},
        r"config: error: 2980 more problem\(s\) not shown",
    ),
    "10,000 unknown manifest fields": Case(
        "error flood",
        {
            f"{MANIFESTS}/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
            + "".join(f"f{i}: 1\n" for i in range(10000))
        },
        r"more problems in this document not shown",
    ),
    "a 2 MB manifest": Case(
        "huge input",
        {f"{MANIFESTS}/big.yaml": "# " + "x" * (2 << 20) + "\n"},
        r"big.yaml: error: is [\d,]+ bytes; the limit is 1,048,576",
    ),
    "YAML alias bomb (billion laughs)": Case(
        "denial of service",
        {
            f"{MANIFESTS}/bomb.yaml": "apiVersion: helm.cattle.io/v1\nkind: HelmChart\n"
            "metadata:\n  name: x\nspec:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)
            )
            + "  valuesContent: *a9\n"
        },
        r"bomb.yaml:1: error: expands to more than 100,000 values through YAML aliases",
    ),
    "YAML nested 100,000 deep": Case(
        "denial of service",
        {f"{MANIFESTS}/deep.yaml": "[" * 100_000 + "]" * 100_000 + "\n"},
        r"deep.yaml(:\d+)?: error: ",
    ),
    # --- one error hides no other ----------------------------------------------------------
    "bad pxe id and an ip outside the network": Case(
        "every problem in one run",
        {"agents/willow.agent": agent(AGENT_PXE_ID="zz", AGENT_IP="10.9.9.9")},
        r"(?s)AGENT_IP: 10.9.9.9 is not inside the internal network.*AGENT_PXE_ID: 'zz'",
    ),
    "bad config key and a gateway outside the network": Case(
        "every problem in one run",
        {"config": "LC_HOSTNAME=Not_Valid\nLC_EXTERNAL_GW=10.0.0.1\n"},
        r"(?s)LC_HOSTNAME: 'Not_Valid'.*LC_EXTERNAL_GW: the gateway 10.0.0.1 is not inside",
    ),
    "two agents, one broken, share an address": Case(
        "every problem in one run",
        {
            "agents/xander.agent": agent(
                AGENT_ETHERNET="b8:27:eb:81:1a:53", AGENT_PXE_ID="bad", AGENT_IP="192.168.64.65"
            )
        },
        r"(?s)AGENT_IP: 192.168.64.65 is already used.*AGENT_PXE_ID",
    ),
    # --- files that are not regular files ------------------------------------------------
    "server link to .env": Case(
        "link in server/",
        {
            ".env": f"LC_PACKER_GITHUB_API_TOKEN={GITHUB_TOKEN}\n",
            "server/etc/x": Link("../../.env"),
        },
        r"server/etc/x: error: is a symbolic link to '../../.env'",
    ),
    "server link to /proc/self/environ": Case(
        "link in server/", {"server/etc/env": Link("/proc/self/environ")}, r"is a symbolic link"
    ),
    "server link to /dev/zero": Case(
        "link in server/", {"server/etc/zero": Link("/dev/zero")}, r"is a symbolic link"
    ),
    "server dangling link": Case(
        "link in server/", {"server/etc/gone": Link("nowhere")}, r"\(dangling\)"
    ),
    "server link to a folder outside": Case(
        "link in server/", {"server/etc/outside": Link("/etc")}, r"is a symbolic link to '/etc'"
    ),
    "server FIFO": Case("special file in server/", {"server/etc/pipe": Fifo()}, r"is a FIFO"),
    "server itself a link": Case(
        "link in server/", {"server": Link("/etc")}, r"server: error: must be a folder"
    ),
    "server name with a newline": Case(
        "newline in a file name",
        {"server/etc/a\nb": "x\n"},
        r"has a line break or control character in its name",
    ),
    "config is a FIFO": Case(
        "special file as input", {"config": Fifo()}, r"config: error: is a FIFO"
    ),
    "config links to /dev/zero": Case(
        "link as input", {"config": Link("/dev/zero")}, r"config: error: is a symbolic link"
    ),
    "agent file is a FIFO": Case(
        "special file as input", {"agents/xander.agent": Fifo()}, r"xander.agent: error: is a FIFO"
    ),
    "agent file links to .env": Case(
        "link as input",
        {".env": f"LC_PACKER_GITHUB_API_TOKEN={GITHUB_TOKEN}\n", "agents/x.agent": Link("../.env")},
        r"agents/x.agent: error: is a symbolic link",
    ),
    ".env is a FIFO": Case("special file as input", {".env": Fifo()}, r"\.env: error: is a FIFO"),
    "manifest is a FIFO": Case(
        "special file as input", {f"{MANIFESTS}/p.yaml": Fifo()}, r"p.yaml: error: is a FIFO"
    ),
    # --- directives that run programs when a checker parses them ----------------------------
    "dnsmasq conf-script": Case(
        "code execution in a config",
        {"server/etc/dnsmasq.d/x.conf": "conf-script=/bin/touch /tmp/scooby-pwned\n"},
        r"x.conf:1: error: conf-script runs a program when dnsmasq reads",
    ),
    "dnsmasq dhcp-script": Case(
        "code execution in a config",
        {"server/etc/dnsmasq.d/x.conf": "  dhcp-script=/bin/true\n"},
        r"dhcp-script runs a program",
    ),
    "dnsmasq dhcp-luascript": Case(
        "code execution in a config",
        {"server/etc/dnsmasq.d/x.conf": "dhcp-luascript=/x.lua\n"},
        r"dhcp-luascript runs a program",
    ),
    "lighttpd include_shell": Case(
        "code execution in a config",
        {"server/etc/lighttpd/conf-enabled/x.conf": 'include_shell "touch /tmp/scooby-pwned"\n'},
        r"include_shell runs a program when lighttpd reads",
    ),
    "include_shell in a file a config could include": Case(
        "code execution in a config",
        {"server/opt/extra.conf": '\tinclude_shell "id"\n'},
        r"server/opt/extra.conf:1: error: include_shell",
    ),
    # --- scale -----------------------------------------------------------------------------
    "1,001 agents": Case(
        "scale",
        {
            "config": "LC_INTERNAL_NET=10.64.0.0/16\nLC_INTERNAL_IP=10.64.0.1\n",
            **{
                f"agents/n{i}.agent": (
                    f"AGENT_ETHERNET=b8:27:eb:00:{i >> 8:02x}:{i & 255:02x}\n"
                    f"AGENT_IP=10.64.{4 + (i >> 8)}.{i & 255}\n"
                    f"AGENT_RANCHER_PART_UUID=0000{i:04x}-02\nAGENT_PXE_ID=0000{i:04x}\n"
                )
                for i in range(1001)
            },
        },
        r"agents: error: 1,001 agents; Scooby serves at most 1,000",
    ),
    # --- render: the output folder is Scooby's, and nothing else is -------------------------
    "render --out the repository": Case(
        "output folder", {}, r"--out .* is the repository or holds it", ("render", "--out", ".")
    ),
    "render --out a parent of the repository": Case(
        "output folder", {}, r"is the repository or holds it", ("render", "--out", "..")
    ),
    "render --out inside server/": Case(
        "output folder", {}, r"inside the repository's server/", ("render", "--out", "server/out")
    ),
    "render --out a user's folder": Case(
        "output folder",
        {"../mine/notes.txt": "mine\n"},
        r"mine is not empty and was not written by scooby render",
        ("render", "--no-check", "--out", "../mine"),
    ),
    "render --out a user's file": Case(
        "output folder",
        {"../mine": "mine\n"},
        r"exists and is not a folder",
        ("render", "--no-check", "--out", "../mine"),
    ),
    "render --out beside a user's .next folder": Case(
        "output folder",
        {"../.out.next/keep.txt": "mine\n"},
        r"\.out\.next is not empty and was not written by scooby render",
        ("render", "--no-check", "--out", "../out"),
    ),
    "server file where the firewall folder is generated": Case(
        "user file shadows generated files",
        {"server/etc/iptables": "# mine\n"},
        r"server/etc/iptables: error: is a file where Scooby generates the folder /etc/iptables",
        ("render", "--no-check", "--out", "../out"),
    ),
    "server folder where a generated file is": Case(
        "user file shadows generated files",
        {"server/etc/hostname/x": "mine\n"},
        r"needs a folder where Scooby generates the file /etc/hostname",
        ("render", "--no-check", "--out", "../out"),
    ),
    # --- values that change meaning in YAML: rendered, and read back as the same string ----
    **{
        f"agent named {name}": Case(
            "YAML value",
            {f"agents/{name}.agent": WILLOW},
            None,
            ("render", "--no-check", "--out", "../out"),
        )
        for name in ("null", "yes", "0x10", "1e3", "on", "true")
    },
    "user named null": Case(
        "YAML value",
        {".env": "LC_DEFAULT_USER=null\n", "agents/willow.agent": WILLOW},
        None,
        ("render", "--no-check", "--out", "../out"),
    ),
}


def build(tmp: Path, case: Case) -> Path:
    repo = tmp / "repo"
    files = {"config": "", "agents/willow.agent": WILLOW, **case.files}
    if case.klass in ("YAML value", "scale") and "agents/willow.agent" not in case.files:
        files.pop("agents/willow.agent")  # these rows bring their own agents
    repo.mkdir()
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(content)
        elif isinstance(content, Fifo):
            os.mkfifo(path)
        else:
            write(repo, {rel: content})
    return repo


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_input(tmp_path: Path, case: Case) -> None:
    repo = build(tmp_path, case)
    # render's own places beside --out, unless the row put a user's file there
    skip = tuple(n for n in ("out", ".out.next", ".out.swap") if f"../{n}/" not in str(case.files))
    outside = snapshot(tmp_path, skip=skip)
    run = scooby(*case.command, "--repo", str(repo), cwd=repo)
    assert_well_behaved(run)
    assert snapshot(tmp_path, skip=skip) == outside, "a file outside --out changed"
    assert not Path("/tmp/scooby-pwned").exists(), "a config directive ran a program"
    if case.expect is None:
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode == 1, run.stdout
        assert re.search(case.expect, run.stderr), run.stderr[-3000:]
    if case.klass == "YAML value":
        _yaml_reads_back(tmp_path / "out", case)


def _yaml_reads_back(out: Path, case: Case) -> None:
    """Every rendered YAML file names each agent and user as the same string it was given."""
    names = {p.name for p in (out / "agents").iterdir()}
    for name in names:
        seed = out / "master/srv/scooby/seed" / name
        assert yaml.safe_load((seed / "meta-data").read_text())["local-hostname"] == name
        data = yaml.safe_load((seed / "user-data").read_text())
        assert data["hostname"] == name
        assert all(isinstance(u["name"], str) for u in data["users"] if isinstance(u, dict))
        config = yaml.safe_load((out / "agents" / name / "etc/rancher/k3s/config.yaml").read_text())
        assert config["node-name"] == name


# --- runs that need more than a table row ----------------------------------------------------


def _repo(tmp_path: Path) -> Path:
    return build(tmp_path, Case("plain"))


def test_render_twice_keeps_what_is_beside_out(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    write(tmp_path, {"keep/mine.txt": "mine\n"})
    for _ in range(2):
        run = scooby("render", "--no-check", "--repo", str(repo), "--out", "../out", cwd=repo)
        assert_well_behaved(run)
        assert run.returncode == 0, run.stderr
    assert (tmp_path / "keep/mine.txt").read_text() == "mine\n"
    assert (tmp_path / "out/.scooby-render").is_file()


def test_a_second_render_into_the_same_place_is_refused_while_one_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running render holds
        run = scooby("render", "--no-check", "--repo", str(repo), "--out", "../out", cwd=repo)
    finally:
        os.close(fd)
    assert_well_behaved(run)
    assert run.returncode == 1
    assert "another scooby render is writing" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_tree_the_checkers_reject_is_never_swapped_in(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    first = scooby("render", "--no-check", "--repo", str(repo), "--out", "../out", cwd=repo)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "out")
    write(repo, {"server/etc/dnsmasq.d/bad.conf": "no-such-dnsmasq-option=1\n"})
    run = scooby("render", "--repo", str(repo), "--out", "../out", cwd=repo)
    assert_well_behaved(run)
    assert run.returncode == 1
    assert "bad.conf" in run.stderr
    assert snapshot(tmp_path / "out") == before


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a real full disk (needs root and mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_leaves_no_workspace(tmp_path: Path, tiny_disk: Path) -> None:
    repo = _repo(tmp_path)
    write(repo, {"server/opt/big.bin": b"\0" * (512 << 10)})  # more than the disk holds
    run = scooby(
        "render", "--no-check", "--repo", str(repo), "--out", str(tiny_disk / "out"), cwd=repo
    )
    assert_well_behaved(run)
    assert run.returncode == 1
    assert "No space left on device" in run.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == []


def test_a_read_only_output_is_one_line(tmp_path: Path, tiny_disk: Path) -> None:
    repo = _repo(tmp_path)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    run = scooby(
        "render", "--no-check", "--repo", str(repo), "--out", str(tiny_disk / "out"), cwd=repo
    )
    assert_well_behaved(run)
    assert run.returncode == 1
    assert "Read-only file system" in run.stderr


def test_a_tracked_env_is_reported(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    write(repo, {".env": "LC_DEFAULT_USER=spike\n"})
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", ".env", "config"], check=True)
    subprocess.run([*git, "commit", "-qm", "oops"], check=True)
    run = scooby("validate", "--repo", str(repo), cwd=repo)
    assert_well_behaved(run)
    assert run.returncode == 1
    assert ".env: error: is tracked by git" in run.stderr


@pytest.mark.parametrize(
    "after", ["scooby.core.errors", "scooby.cli", "scooby.core.patterns", "scooby.load.reader"]
)
def test_ctrl_c_while_starting_is_one_line(tmp_path: Path, after: str) -> None:
    """Ctrl-C while Scooby's own modules load (each import is seen on -X importtime's
    report, so the signal lands at a known point; Python's own start-up, before any of
    Scooby's code runs, is Python's to report)."""
    repo = _repo(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "scooby", "validate", "--repo", str(repo)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.rstrip().endswith(f"| {after}") or line.rstrip().endswith(f" {after}"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    err = "".join(
        line for line in seen + err.splitlines(True) if not line.startswith("import time:")
    )
    assert "Traceback" not in err, err
    assert proc.returncode in (130, 0, 1), (proc.returncode, err)
    if proc.returncode == 130:
        assert err.strip() == "scooby: interrupted", err


# --- release: what --upload-only trusts, and where the token goes -----------------------------


def _dist(tmp_path: Path, sums: str) -> Path:
    dist = tmp_path / "repo/dist"
    write(dist, {"release.json": '{"version": "v1.0.0"}', "SHA256SUMS": sums, "a.img.zst": "x"})
    return dist


@pytest.mark.parametrize(
    "name", ["../.env", "/etc/passwd", "sub/a.img.zst", ".hidden", "a\\b", ""], ids=repr
)
def test_upload_only_trusts_only_plain_names_in_dist(tmp_path: Path, name: str) -> None:
    _repo(tmp_path)
    write(tmp_path, {"repo/.env": f"LC_PACKER_GITHUB_API_TOKEN={GITHUB_TOKEN}\n"})
    _dist(tmp_path, f"{'0' * 64}  {name}\n")
    run = scooby("release", "--upload-only", "--repo", str(tmp_path / "repo"), cwd=tmp_path)
    assert_well_behaved(run)
    assert run.returncode == 1
    assert "not 'SHA256  NAME' with NAME a plain file name in DIST" in run.stderr


def test_upload_only_with_a_malformed_sums_file_is_one_line(tmp_path: Path) -> None:
    _repo(tmp_path)
    _dist(tmp_path, "garbage without two spaces\n")
    run = scooby("release", "--upload-only", "--repo", str(tmp_path / "repo"), cwd=tmp_path)
    assert_well_behaved(run)
    assert run.returncode == 1
