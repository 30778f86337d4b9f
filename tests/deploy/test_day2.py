"""`nox -s test_day2`: a running master follows its repository (issue 14's acceptance, as far
as it is built).

One master image is built for a repository with agent A (willow). The test boots it in QEMU
(TCG) as `scooby test-qemu` does, network-boots A, then changes the repository and runs the
real `scooby deploy --to` over SSH into the running master:

  v2 adds agent B (xander): applied live; B network-boots; A's upper layer and the master's
     state keep their files; the master does not reboot (its boot_id stays).
  v3 removes A: A's lease, export and TFTP folder are gone, and A's boot ROM gets no answer.
  pull: the master pulls a release itself. The repository gains a dnsmasq file of the user's
     (server/etc/dnsmasq.d/), `scooby deploy --bundle` makes the release, and an HTTPS server
     of the test's serves it with its SHA256SUMS on the internal network (the test's own
     address on the bridge; nothing outside this machine). On the master, `sudo scooby-update
     --cacert CA URL` refuses the server while the CA is not given and a bundle whose sha256
     is not SHA256SUMS's (nothing changes), then applies the real one: the file is there,
     dnsmasq restarted and answers the new name, the deploy record is the bundle's.

  v4 adds one package to the master (LC_EXTRA_PACKAGES): a new image, so `scooby deploy`
     makes an A/B deploy: the new root into the other slot (zstd over SSH into scooby-slot
     write), a trial boot, the health check passes, the slot is committed; the package is
     there, the master's state on the data partition and its identity are as before, and
     agent B network-boots again from the new slot.
  v5 is a new image whose dnsmasq cannot start (a server/ file naming a lease file in a
     folder that does not exist: `dnsmasq --test` passes it, the daemon does not start): the
     trial boot fails its health check, the master returns to v4's slot by itself, and
     `scooby deploy` exits 1 saying so.
  kill: QEMU is killed in the middle of a slot write (a power cut), and started again: the
     committed slot (v4) boots, and the half-written slot is neither verified nor on trial.

Agents on a new base (docs/day2.md, 4.5): before v3 powers B off, B writes a marker into its
NFS root (so into its upper dir on the master), a file on its local disk's /var/lib/rancher
and K3S's node password (/etc/rancher/node/password, bound from that disk). v4's slot is a new
base: once B has booted again from it, the marker is gone from its new upper dir and is in the
generation the master set aside, and the rancher file and the node password are as written.

SCOOBY_DAY2_SKIP (phase names, commas or spaces) leaves phases out of a run: each is reported
SKIPPED (never passed), a phase that needs one needs what it needed instead, and the test
ends skipped, not passed. Unset (the default), every phase runs.

Every phase shows its time; the figures (live and A/B deploy seconds and steps, bytes sent)
go to phases.json. What is played rather than real is the Pi boot ROM (scooby's bootrom, as
in test-qemu) and the firmware's loading of kernel and initrd (QEMU -kernel/-initrd from the
boot partition, which an A/B deploy does not change). dnsmasq, NFS, OverlayFS, SSH, sudo,
curl, scooby-update, scooby-apply, scooby-slot, the initramfs's slot choice and the health
check run for real. The master's state (/var/lib/scooby, STATE_PROBE's folder) is on the data
partition; test-qemu's master-data and master-reboot phases check that. See docs/day2.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT
from nethelpers import dns_lookup, https_server, make_ca

from scooby.core import layout
from scooby.deploy import bundle
from scooby.deploy.ab import SLOT as SCOOBY_SLOT
from scooby.deploy.ab import parse_status
from scooby.load import load_or_raise
from scooby.testqemu import agent as agent_phases
from scooby.testqemu import bootrom, qemuvm
from scooby.testqemu import k3s as k3s_phases
from scooby.testqemu import master as master_phases
from scooby.testqemu.agent import PROBE
from scooby.testqemu.phases import Failed, Skip
from scooby.testqemu.session import Session
from scooby.testqemu.ssh import SSH_PORT, check, console_wait, wait_ssh

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the test's network need root"),
    pytest.mark.skipif(
        os.environ.get("SCOOBY_TEST_DAY2") != "1",
        reason="boots three VMs for many minutes: run by `nox -s test_day2`",
    ),
]

WILLOW = (
    "AGENT_ETHERNET=b8:27:eb:81:1a:52\nAGENT_IP=192.168.64.65\n"
    "AGENT_RANCHER_PART_UUID=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1\n"
    "AGENT_PXE_ID=c6811a52\nAGENT_K3S_ARGS=\n"
)
XANDER = (
    "AGENT_ETHERNET=b8:27:eb:81:1a:53\nAGENT_IP=192.168.64.66\n"
    "AGENT_RANCHER_PART_UUID=0b1e2d3c-4a5b-4c6d-8e7f-901234567890\n"
    "AGENT_PXE_ID=c6811a53\nAGENT_K3S_ARGS=\n"
)
STATE_PROBE = "/var/lib/scooby/day2-probe"  # the master's own state, written before deploying
LEASES = "/var/lib/misc/dnsmasq.leases"


def xander():
    """Agent B as the v2 repository describes it (loaded from an agent file like it)."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "agents").mkdir()
        (repo / "config").write_text("")
        (repo / "agents" / "xander.agent").write_text(XANDER)
        return load_or_raise(repo, environ={}).agent("xander")


# Each phase is a function of the running Day2 session `s` and its deadline, as test-qemu's.


def prepare(s, deadline: float) -> str:
    detail = master_phases.prepare(s, deadline)
    b = xander()
    qemuvm.scratch_disk(s.work / f"{b.name}-disk.img", b.rancher_partuuid)
    return detail


def boot_id(s, deadline: float) -> str:
    return check(s.master_cmd, "cat /proc/sys/kernel/random/boot_id", deadline).strip()


def state_write(s, deadline: float) -> str:
    check(s.master_cmd, f"echo {s.token} | sudo tee {STATE_PROBE} >/dev/null", deadline)
    s.boot_id = boot_id(s, deadline)
    # A is done: power it off, so B has the CPU (TCG on two cores) and the tap.
    return f"{STATE_PROBE} written; boot_id {s.boot_id}; agent A {power_off(s, deadline)}"


def power_off(s, deadline: float) -> str:
    """Power the running agent off and wait for QEMU to exit (it does when the guest powers
    off). `--no-block` returns once the job is queued, so ssh has its exit status before the
    guest's network goes; a plain `systemctl poweroff` could leave ssh waiting on a peer that
    is gone until the command's timeout (v3's first run). If ssh still gets no answer, QEMU's
    exit below is what counts."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        s.agent_link().run("sudo systemctl poweroff --no-block", 30, retry=False)
    halted = s.agent_vm.exited(min(120, deadline - time.monotonic()))
    s.agent_vm.stop()
    s.agent_link().close()
    return "powered off" if halted else "stopped (poweroff hung)"


def deploy_argv(s, *extra: str) -> list[str]:
    """The real `scooby deploy` to the master, run in the test's namespace (where the
    master's SSH is), with a throwaway known_hosts."""
    return [
        "ip", "netns", "exec", s.net.ns, sys.executable, "-m", "scooby", "deploy",
        "--repo", str(s.repo), "--to", f"{s.user}@127.0.0.1", "--port", str(SSH_PORT),
        "--identity", str(s.identity), "--ssh-option", "StrictHostKeyChecking=no",
        "--ssh-option", "UserKnownHostsFile=/dev/null", "--ssh-option", "LogLevel=ERROR",
        *extra,
    ]  # fmt: skip


def deploy(s, *extra: str, timeout: float = 600, expect: int = 0) -> subprocess.CompletedProcess:
    """The real `scooby deploy`, run in the test's namespace (where the master's SSH is);
    a failure unless it exits `expect`."""
    argv = deploy_argv(s, *extra)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    s.deploys += 1
    with (s.out / "deploy.log").open("w" if s.deploys == 1 else "a") as log:
        log.write(f"$ scooby deploy {' '.join(extra)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != expect:
        raise Failed(
            f"scooby deploy {' '.join(extra)} exited {done.returncode}: "
            f"{(done.stdout + done.stderr)[-600:]}"
        )
    return done


def figures(s, key: str, out: str) -> str:
    last = out.strip().splitlines()[-1]  # "deployed to HOST in S s, N bytes sent"
    words = last.split()
    s.timings[f"{key}_seconds"] = float(words[words.index("in") + 1])
    s.timings[f"{key}_bytes_sent"] = int(words[words.index("bytes") - 1])
    return last


def v2_dry_run(s, deadline: float) -> str:
    (s.repo / "agents" / "xander.agent").write_text(XANDER)
    out = deploy(s, "--dry-run").stdout
    if "live, no reboot" not in out or "agent + xander" not in out:
        raise Failed(f"dry run: {out[-600:]!r}")
    if s.master_cmd(f"test -e {layout.TFTP_ROOT}/c6811a53", 60).returncode == 0:
        raise Failed("the dry run changed the master")
    return out.splitlines()[0]


def v2_deploy(s, deadline: float) -> str:
    return figures(s, "v2_live_deploy", deploy(s).stdout)


def v2_kept(s, deadline: float) -> str:
    now = boot_id(s, deadline)
    if now != s.boot_id:
        raise Failed(f"the master rebooted: boot_id {s.boot_id} -> {now}")
    upper = f"{layout.AGENT_UPPERS}/willow{PROBE}"
    for path in (upper, STATE_PROBE):
        got = check(s.master_cmd, f"sudo cat {path}", deadline).strip()
        if got != s.token:
            raise Failed(f"{path} holds {got!r}, not the token")
    exports = check(s.master_cmd, "sudo exportfs -v", deadline)
    if f"{layout.AGENT_MOUNTS}/xander" not in exports:
        raise Failed(f"xander not exported: {' '.join(exports.split())}")
    return f"same boot_id; {upper} and {STATE_PROBE} kept; xander exported"


def agent_b_bootrom(s, deadline: float) -> str:
    s.agent = xander()
    return agent_phases.agent_bootrom(s, deadline)


def agent_b_banner(s, deadline: float) -> str:
    agent_phases.boot_agent(s, f"{s.agent.name}.console.log")
    return agent_phases.agent_online(s, deadline, "qemu_start_to_agent_b_banner")


def v3_deploy(s, deadline: float) -> str:
    halted = power_off(s, deadline)  # B is not needed any more: the deploy gets the CPU
    (s.repo / "agents" / "willow.agent").unlink()
    done = deploy(s)
    s.v3_said = done.stdout
    return f"agent B {halted}; " + figures(s, "v3_live_deploy", done.stdout)


def v3_gone(s, deadline: float) -> str:
    a = s.a
    checks = {
        "dhcp-host": f"! grep -q {a.mac} /etc/dnsmasq.d/scooby.conf",
        "lease": f"! sudo grep -q {a.mac} {LEASES}",
        "export": f"! sudo exportfs -v | grep -q {layout.AGENT_MOUNTS}/willow",
        "TFTP folder": f"test ! -e {layout.TFTP_ROOT}/{a.pxe_id}",
        "mount": f"! mountpoint -q {layout.AGENT_MOUNTS}/willow",
    }
    left = [what for what, cmd in checks.items() if s.master_cmd(cmd, 60).returncode != 0]
    if left:
        raise Failed(f"still there: {', '.join(left)}")
    device = s.net.add_rom(a.mac)
    try:
        bootrom.lease(s.net.rom, device, a.mac, attempts=3)
    except TimeoutError as e:
        answer = str(e)
    else:
        raise Failed(f"{a.mac} still gets a DHCP lease")
    finally:
        s.net.drop_rom()
    return f"{', '.join(checks)} gone; boot ROM: {answer}"


# K3S in the day-two test: the image is built --k3s=none (no registry here carries K3S), so these
# phases end SKIPPED with that reason, never passed; on an image with K3S they check it.
K3S_NONE = "no K3S here: the image is built --k3s=none (K3S can't be had on this machine)"


def v3_k3s_node_gone(s, deadline: float) -> str | Skip:
    """The removed agent's K3S node and node-password secret are gone (docs.k3s.io, "How
    Agent Node Registration Works": a name is refused while its secret remains)."""
    if s.k3s_mode in ("", layout.NO_K3S):
        said = f"K3S SKIPPED for {s.a.name}: no running K3S on this master"
        if said not in s.v3_said:
            raise Failed(f"the deploy did not say {said!r}: {s.v3_said[-400:]!r}")
        return Skip(f"{K3S_NONE}; the deploy said {said!r}")
    kubectl = "sudo k3s kubectl"
    node = s.master_cmd(f"{kubectl} get node {s.a.name} --no-headers", 120)
    secret = s.master_cmd(
        f"{kubectl} -n kube-system get secret {s.a.name}.node-password.k3s --no-headers", 120
    )
    left = [what for what, done in (("node", node), ("node password", secret))
            if done.returncode == 0]  # fmt: skip
    if left:
        raise Failed(f"{s.a.name}'s K3S {' and '.join(left)} still there")
    return f"{s.a.name}'s K3S node and node-password secret gone"


def v4_k3s_nodes(s, deadline: float) -> str | Skip:
    """After the A/B deploy: the master (its datastore on the data partition) and agent B
    Ready again."""
    done = k3s_phases.k3s_nodes(s, deadline)
    return Skip(f"{K3S_NONE}; {done.reason}") if isinstance(done, Skip) else done


# -- pull: the master fetches a release over HTTPS and applies it (scooby-update) ---------

PULL_CONF = "/etc/dnsmasq.d/day2-pull.conf"  # the release's one change: a server/ file
PULL_NAME, PULL_ADDRESS = "release.day2.test", "192.0.2.77"
# The release server's CA, copied into the user's home on the master as `scp` would; the
# user passes it with --cacert (docs/day2.md, "Pulling a release").
CA_ON_MASTER = "scooby-release-ca.pem"
# What a refused pull must leave as it was (each file's path, size, mode and mtime).
WATCHED = ("/etc/dnsmasq.d", "/etc/exports.d", "/etc/lighttpd", "/etc/scooby", "/srv",
           "/usr/local/sbin", layout.DEPLOY_RECORD.rsplit("/", 1)[0])  # fmt: skip


def master_state(s, deadline: float) -> dict[str, str]:
    tree = check(
        s.master_cmd,
        f"sudo find {' '.join(WATCHED)} -xdev -printf '%p %s %m %T@\\n' | sort | sha256sum",
        deadline,
    )
    record = check(s.master_cmd, f"sudo sha256sum {layout.DEPLOY_RECORD}", deadline)
    dnsmasq = check(
        s.master_cmd,
        "systemctl show -p ActiveState -p MainPID -p ExecMainStartTimestampMonotonic dnsmasq",
        deadline,
    )
    return {"files": tree.split()[0], "record": record.split()[0], "dnsmasq": dnsmasq.strip()}


def lookup(s) -> str:
    """What the master's dnsmasq answers for PULL_NAME, asked from the test's address."""
    try:
        found = dns_lookup(s.net.ns, str(s.cluster.master.internal.ip), PULL_NAME)
    except OSError as e:  # a time-out: no answer
        return f"no answer ({e or type(e).__name__})"
    return " ".join(map(str, found)) or "no address"


def wire_bytes(s) -> int:
    """Bytes in and out of the test's address on the bridge (the HTTPS server's side; SSH
    to the master goes through QEMU's user-net forward, not the bridge)."""
    done = subprocess.run(
        ["ip", "-n", s.net.ns, "-j", "-s", "link", "show", "br0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stats = json.loads(done.stdout)[0]["stats64"]
    return stats["rx"]["bytes"] + stats["tx"]["bytes"]


def scooby_update(s, args: str, deadline: float) -> subprocess.CompletedProcess:
    """`sudo scooby-update ARGS` on the master, logged to update.log."""
    done = s.master_cmd(f"sudo scooby-update {args}", max(deadline - time.monotonic(), 1))
    s.updates += 1
    with (s.out / "update.log").open("w" if s.updates == 1 else "a") as log:
        log.write(
            f"$ sudo scooby-update {args}\n{done.stdout}{done.stderr}[exit {done.returncode}]\n"
        )
    return done


def refused(done: subprocess.CompletedProcess, message: str) -> str:
    last = (done.stderr.strip().splitlines() or [""])[-1]
    prefix = "scooby-update: refused, nothing changed: "
    if done.returncode != 1 or not last.startswith(prefix) or message not in last:
        raise Failed(f"not refused with {message!r}: exit {done.returncode}, {last!r}")
    return last.removeprefix(prefix)


def pull_bundle(s, deadline: float) -> str:
    conf = s.repo / "server" / PULL_CONF.lstrip("/")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"# pulled by scooby-update (test-day2)\nhost-record={PULL_NAME},{PULL_ADDRESS}\n"
    )
    dist = s.work / "release"
    argv = [sys.executable, "-m", "scooby", "deploy", "--repo", str(s.repo), "--bundle", str(dist)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    with (s.out / "deploy.log").open("a") as log:
        log.write(f"$ scooby deploy --bundle DIR\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise Failed(f"scooby deploy --bundle exited {done.returncode}: {done.stderr[-600:]}")
    s.served = s.work / "served"  # what the server serves; the refusals swap its bundle
    shutil.copytree(dist, s.served)
    host = str(s.test_address.ip)
    ca, cert, key = make_ca(s.work / "tls", host)
    log = s.out / "https-server.log"
    port = s.cleanup.enter_context(https_server(s.served, cert, key, host, s.net.ns, log))
    s.url = f"https://{host}:{port}/{bundle.BUNDLE}"
    check(s.master_cmd, f"printf %s {shlex.quote(ca.read_text())} > {CA_ON_MASTER}", deadline)
    before = time.time()
    clock = float(check(s.master_cmd, "date +%s.%N", deadline))
    skew = clock - (before + time.time()) / 2
    s.record = check(s.master_cmd, f"sudo cat {layout.DEPLOY_RECORD}", deadline)
    s.before = master_state(s, deadline)
    size = (dist / bundle.BUNDLE).stat().st_size
    return (
        f"{s.url} ({size} bytes) and {bundle.SUMS}; CA in ~/{CA_ON_MASTER}; "
        f"master clock {skew:+.1f} s from the host's"
    )


def pull_refused(s, deadline: float) -> str:
    untrusted = refused(
        scooby_update(s, s.url, deadline), "(curl exit 60): curl: (60) SSL certificate problem"
    )
    good = (s.served / bundle.BUNDLE).read_bytes()
    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 1
    (s.served / bundle.BUNDLE).write_bytes(bytes(tampered))
    try:
        done = scooby_update(s, f"--cacert {CA_ON_MASTER} {s.url}", deadline)
    finally:
        (s.served / bundle.BUNDLE).write_bytes(good)
    wrong = refused(done, "is not the one in SHA256SUMS")
    after = master_state(s, deadline)
    changed = [what for what in after if after[what] != s.before[what]]
    if changed:
        raise Failed(f"a refused pull changed the master's {', '.join(changed)}: {after}")
    answer = lookup(s)
    if PULL_ADDRESS in answer:
        raise Failed(f"{PULL_NAME} resolves before the pull: {answer}")
    return (
        f"without the CA: {untrusted.split(' download failed ')[-1]}; tampered bundle: "
        f"sha256 {wrong.split()[2][:16]}... is not SHA256SUMS's; "
        f"nothing changed ({', '.join(after)}); {PULL_NAME}: {answer}"
    )


def pull_update(s, deadline: float) -> str:
    wire, start = wire_bytes(s), time.monotonic()
    done = scooby_update(s, f"--cacert {CA_ON_MASTER} {s.url}", deadline)
    seconds, wire = time.monotonic() - start, wire_bytes(s) - wire
    if done.returncode != 0:
        raise Failed(
            f"scooby-update exited {done.returncode}: {(done.stdout + done.stderr)[-600:]}"
        )
    lines = [ln.removeprefix("scooby-update: ").strip() for ln in done.stdout.splitlines()]
    writes = [ln.split()[-1] for ln in lines if ln.startswith("write ")]
    want = ("sha256 matches SHA256SUMS" in done.stdout, "live, no reboot:" in lines,
            writes == [PULL_CONF], "reload  dnsmasq" in lines)  # fmt: skip
    if not all(want):
        raise Failed(f"not the plan of the one new file: {done.stdout[-800:]!r}")
    payload = sum((s.served / name).stat().st_size for name in (bundle.BUNDLE, bundle.SUMS))
    s.timings["pull_update_seconds"] = round(seconds, 1)
    s.timings["pull_wire_bytes"] = wire
    s.timings["pull_payload_bytes"] = payload
    return (
        f"sudo scooby-update --cacert ~/{CA_ON_MASTER} URL: {seconds:.1f} s, wrote {PULL_CONF}, "
        f"restarted dnsmasq; {wire} bytes on the bridge ({payload} of bundle and {bundle.SUMS})"
    )


def pull_applied(s, deadline: float) -> str:
    now = boot_id(s, deadline)
    if now != s.boot_id:
        raise Failed(f"the master rebooted: boot_id {s.boot_id} -> {now}")
    want = (s.repo / "server" / PULL_CONF.lstrip("/")).read_text()
    if check(s.master_cmd, f"cat {PULL_CONF}", deadline) != want:
        raise Failed(f"{PULL_CONF} is not the release's")
    with tarfile.open(s.served / bundle.BUNDLE) as tar:
        release = json.load(tar.extractfile("record.json"))
    record = json.loads(check(s.master_cmd, f"sudo cat {layout.DEPLOY_RECORD}", deadline))
    if record != release:
        raise Failed(f"{layout.DEPLOY_RECORD} is not the release's record.json")
    previous = f"{layout.DEPLOY_PREVIOUS}/record.json"
    if json.loads(check(s.master_cmd, f"sudo cat {previous}", deadline)) != json.loads(s.record):
        raise Failed(f"{previous} is not the record before the pull")
    state = master_state(s, deadline)
    if "ActiveState=active" not in state["dnsmasq"] or state["dnsmasq"] == s.before["dnsmasq"]:
        raise Failed(f"dnsmasq not restarted: {s.before['dnsmasq']!r} -> {state['dnsmasq']!r}")
    answer = ""
    while time.monotonic() < deadline:
        answer = lookup(s)
        if answer == PULL_ADDRESS:
            break
        time.sleep(2)
    else:
        raise Failed(f"{PULL_NAME}: {answer}, not {PULL_ADDRESS}")
    again = scooby_update(s, f"--cacert {CA_ON_MASTER} {s.url}", deadline)
    if again.returncode != 0 or "up to date: nothing to apply" not in again.stdout:
        raise Failed(f"the same release again: exit {again.returncode}, {again.stdout[-300:]!r}")
    return (
        f"{PULL_CONF} as released; the record is the release's, the one before it in "
        f"{previous}; dnsmasq restarted, {PULL_NAME} -> {answer}; same boot_id; "
        "the same release again: up to date"
    )


# -- A/B: v4 commits a new slot, v5 fails its trial, a write cut by a power loss ----------

EXTRA_PACKAGE = "tree"  # v4's one extra master package: small, in Debian's main archive
V5_MARKER = "/etc/scooby-day2-v5"  # v5's change that needs a new image (no live prefix)
# v5's dnsmasq breaker: `dnsmasq --test` (the build's check) passes it; the daemon, started,
# cannot open its lease file and exits, so the trial boot's health check fails.
V5_DNSMASQ = "/etc/dnsmasq.d/day2-v5-broken.conf"
V5_LEASEFILE = "/nonexistent-scooby-day2/dnsmasq.leases"
AB_WAIT = 2400  # s: `scooby deploy --wait`: two boots under TCG and the health check


def slot_status(s, deadline: float) -> dict[str, str]:
    return parse_status(check(s.master_cmd, f"sudo {SCOOBY_SLOT} status", deadline))


def master_facts(s, deadline: float) -> dict[str, str]:
    """What an A/B deploy must not change (the data partition's state, the identity)."""
    return {
        "state probe": check(s.master_cmd, f"sudo cat {STATE_PROBE}", deadline).strip(),
        "removed agent's upper": check(
            s.master_cmd, f"sudo cat /var/lib/scooby/agents.removed/willow{PROBE}", deadline
        ).strip(),
        "machine-id": check(s.master_cmd, "cat /etc/machine-id", deadline).strip(),
        "host key": check(
            s.master_cmd, f"cat {layout.DATA_SSH}/ssh_host_ed25519_key.pub", deadline
        ).split()[1],
    }


def ab_figures(s, key: str, out: str) -> str:
    """The last line: "deployed to HOST in S s, N bytes sent (A/B, slot X committed: look
    S s, build S s, ...)"; each step's seconds go to the timings too."""
    last = figures(s, key, out)
    steps = last.partition("committed: ")[2].rstrip(")")
    for item in filter(None, steps.split(", ")):
        name, seconds, _ = item.split()
        s.timings[f"{key}_{name}_seconds"] = float(seconds)
    return last


def build_v(s, name: str) -> str:
    """The new image built once outside the test's network namespace, where the archive is
    reachable (v4's master base is a new stage); `scooby deploy`, which runs inside it,
    then takes every stage from the cache as a user's second build would."""
    start = time.monotonic()
    out = s.work / f"{name}.img"
    argv = [sys.executable, "-m", "scooby", "build", "--repo", str(s.repo), "--k3s=none",
            "--out", str(out)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3000)
    with (s.out / "deploy.log").open("a") as log:
        log.write(f"$ scooby build ({name})\n{done.stdout[-3000:]}{done.stderr[-3000:]}\n")
    if done.returncode != 0:
        raise Failed(f"scooby build ({name}) exited {done.returncode}: {done.stderr[-600:]}")
    out.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    s.timings[f"{name}_build_seconds"] = round(seconds, 1)
    return f"{name} built in {seconds:.0f} s"


def v4_dry_run(s, deadline: float) -> str:
    config = s.repo / "config"
    config.write_text(config.read_text() + f"LC_EXTRA_PACKAGES={EXTRA_PACKAGE}\n")
    built = build_v(s, "v4")
    out = deploy(s, "--dry-run").stdout
    if "REBOOT (A/B)" not in out or f"release packages: - -> {EXTRA_PACKAGE}" not in out:
        raise Failed(f"dry run: {out[-800:]!r}")
    s.ab_before = slot_status(s, deadline)
    if s.ab_before.get("VERIFIED") or s.ab_before.get("TRIAL"):
        raise Failed(f"the dry run touched the slots: {s.ab_before}")
    s.facts = master_facts(s, deadline)
    s.boot_id = boot_id(s, deadline)
    why = next(ln for ln in out.splitlines() if "release packages" in ln).strip()
    return f"{built}; {out.splitlines()[0]}; {why}"


def v4_deploy(s, deadline: float) -> str:
    done = deploy(s, "--wait", str(AB_WAIT), timeout=max(deadline - time.monotonic(), 60))
    return ab_figures(s, "v4_ab_deploy", done.stdout)


def v4_committed(s, deadline: float) -> str:
    status = slot_status(s, deadline)
    was = s.ab_before.get("BOOTED")
    if status.get("BOOTED") == was or status.get("COMMITTED") != status.get("BOOTED"):
        raise Failed(f"not committed on the other slot (before: {was}): {status}")
    if status.get("TRIAL"):
        raise Failed(f"a trial is still set: {status}")
    now = boot_id(s, deadline)
    if now == s.boot_id:
        raise Failed("the master did not reboot")
    check(s.master_cmd, f"dpkg-query -W {EXTRA_PACKAGE}", deadline)
    record = json.loads(check(s.master_cmd, f"sudo cat {layout.DEPLOY_RECORD}", deadline))
    if record["release"].get("packages") != EXTRA_PACKAGE:
        raise Failed(f"the deploy record's release: {record['release']}")
    facts = master_facts(s, deadline)
    changed = {k: (v, facts[k]) for k, v in s.facts.items() if facts[k] != v}
    if changed:
        raise Failed(f"changed by the A/B deploy: {changed}")
    s.v4 = status
    s.boot_id = now
    return (
        f"slot {status['BOOTED']} committed (LAST: {status.get('LAST')}); "
        f"{EXTRA_PACKAGE} installed; record release packages={EXTRA_PACKAGE}; "
        f"same {', '.join(facts)}"
    )


def v4_agent_b_banner(s, deadline: float) -> str:
    agent_phases.boot_agent(s, f"{s.agent.name}-v4.console.log")
    return agent_phases.agent_online(s, deadline, "v4_qemu_start_to_agent_b_banner")


def v5_deploy(s, deadline: float) -> str:
    halted = power_off(s, deadline)  # B is not needed any more: the deploy gets the CPU
    broken = s.repo / "server" / V5_DNSMASQ.lstrip("/")
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text(f"# test-day2 v5: dnsmasq cannot start\ndhcp-leasefile={V5_LEASEFILE}\n")
    (s.repo / "server" / V5_MARKER.lstrip("/")).write_text("v5\n")
    built = build_v(s, "v5")
    start = time.monotonic()
    done = deploy(s, "--wait", str(AB_WAIT), timeout=max(deadline - time.monotonic(), 60),
                  expect=1)  # fmt: skip
    seconds = time.monotonic() - start
    # stderr: the local build's step lines ("✓ render 0.8 s 82 files"), then the failure in
    # one line (HOST: error: MESSAGE), the last; nothing else, no traceback
    *steps, said = done.stderr.strip().splitlines() or [""]
    if any(not line.startswith("✓ ") for line in steps) or not (
        ": error: " in said and "did not pass: the master is back on slot" in said
    ):
        raise Failed(f"not the trial's failure in one line: {done.stderr[-600:]!r}")
    s.timings["v5_ab_deploy_failed_seconds"] = round(seconds, 1)
    return f"agent B {halted}; {built}; exit 1 after {seconds:.0f} s: {said[-300:]}"


def v5_back_on_v4(s, deadline: float) -> str:
    status = slot_status(s, deadline)
    if status.get("BOOTED") != s.v4["BOOTED"] or status.get("COMMITTED") != s.v4["BOOTED"]:
        raise Failed(f"not back on v4's slot {s.v4['BOOTED']}: {status}")
    if status.get("TRIAL"):
        raise Failed(f"a trial is still set: {status}")
    release = f"RELEASE_{s.v4['BOOTED'].upper()}"
    if status.get(release) != s.v4.get(release):
        raise Failed(f"{release} {status.get(release)!r}, v4's was {s.v4.get(release)!r}")
    if s.master_cmd(f"test -e {V5_DNSMASQ} || test -e {V5_MARKER}", 60).returncode == 0:
        raise Failed("v5's files are on the running root")
    active = s.master_cmd("systemctl is-active dnsmasq", 60).stdout.strip()
    if active != "active":
        raise Failed(f"dnsmasq is {active}")
    facts = master_facts(s, deadline)
    changed = {k: (v, facts[k]) for k, v in s.facts.items() if facts[k] != v}
    if changed:
        raise Failed(f"changed: {changed}")
    # What the trial boot's health check said, if the journal kept that boot (evidence only).
    said = s.master_cmd(
        "sudo journalctl -b -1 -u scooby-health.service -o cat --no-pager | tail -3", 60
    ).stdout.split("\n")
    health = " / ".join(ln.strip() for ln in said if ln.strip())[-300:] or "not kept"
    return (
        f"slot {status['BOOTED']} (v4) booted and committed; LAST: {status.get('LAST')}; "
        f"dnsmasq active; v5's files absent; same {', '.join(facts)}; "
        f"the trial boot's health check: {health}"
    )


def kill_during_write(s, deadline: float) -> str:
    """`scooby deploy` of v5 again; once the master's `scooby-slot write` has written
    SLOT_KILL_AFTER bytes to the slot (master_phases.slot_written), QEMU is killed (SIGKILL:
    the power cut), in the middle of the write. The amount, not the deploy's 30 s progress
    lines: an idle machine writes the whole slot in about 30 s."""
    import signal

    argv = deploy_argv(s)
    log = s.out / "deploy-killed.log"
    written = 0
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            while written < master_phases.SLOT_KILL_AFTER:
                text = log.read_text()
                if proc.poll() is not None or "scooby-slot: slot" in text:
                    raise Failed(f"the write ended before the kill: {text[-600:]}")
                if time.monotonic() > deadline:
                    raise Failed(f"no write under way: {text[-600:]}")
                got = master_phases.slot_written(s)
                written = written if got is None else got
                time.sleep(1)
            os.killpg(s.master.proc.pid, signal.SIGKILL)
            s.master.proc.wait(30)
            code = proc.wait(300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = log.read_text().strip().splitlines()
    if code != 1 or not said[-1].startswith(f"{s.user}@127.0.0.1: error: "):
        raise Failed(f"scooby deploy exited {code}: {said[-1] if said else ''!r}")
    s.timings["kill_written_bytes"] = written
    return (
        f"QEMU killed after scooby-slot had written {written >> 20} MiB to the slot; "
        f"scooby deploy exit 1: {said[-1][-200:]}"
    )


def kill_boots_previous(s, deadline: float) -> str:
    """QEMU started again on the same disk: the committed slot (v4) boots, the slot the
    write was cut in is neither verified nor on trial."""
    q = s.qemuvm
    old = s.master
    console = s.out / "master-after-kill.console.log"
    argv = [a.replace(str(old.console), str(console)) for a in old.argv]
    s.master = q.VM("master", s.net.ns, console, argv)
    s.start_vm(s.master)
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    seconds = console_wait(s.master, banner, deadline)
    s.timings["kill_qemu_start_to_master_banner"] = seconds
    wait_ssh(s.master_link(), deadline)
    status = slot_status(s, deadline)
    slot = s.v4["BOOTED"]
    release = f"RELEASE_{slot.upper()}"
    if status.get("BOOTED") != slot or status.get("COMMITTED") != slot or status.get("TRIAL"):
        raise Failed(f"not v4's committed slot {slot}: {status}")
    if status.get(release) != s.v4.get(release):
        raise Failed(f"{release} {status.get(release)!r}, v4's was {s.v4.get(release)!r}")
    cut = "a" if slot == "b" else "b"
    if status.get("VERIFIED", "").startswith(f"{cut}:"):
        raise Failed(f"the cut write's slot counts as verified: {status}")
    trial = s.master_cmd(f"sudo {SCOOBY_SLOT} trial", 60)
    if trial.returncode == 0:
        raise Failed(f"scooby-slot trial accepted the cut slot {cut}: {trial.stdout}")
    check(s.master_cmd, f"dpkg-query -W {EXTRA_PACKAGE}", deadline)
    facts = master_facts(s, deadline)
    changed = {k: (v, facts[k]) for k, v in s.facts.items() if facts[k] != v}
    if changed:
        raise Failed(f"changed: {changed}")
    refused = (trial.stderr.strip().splitlines() or [""])[-1]
    return (
        f"banner {seconds:.0f} s after QEMU started; slot {slot} (v4) booted and committed, "
        f"VERIFIED={status.get('VERIFIED') or '-'}; trial refused: {refused}; "
        f"same {', '.join(facts)}"
    )


# -- agents on a new base: B's upper dir reset by v4, its local disk kept ---------------

RESET_MARK = "/var/tmp/day2-reset-marker"  # on B's NFS root: its upper dir on the master
RANCHER_MARK = "/var/lib/rancher/day2-reset-probe"  # on B's local disk
NODE_PASSWORD = "/etc/rancher/node/password"  # K3S's, bound from B's local disk


def agent_b_marks(s, deadline: float) -> str:
    """B (added live in v2) writes the three; only the marker may land in its upper dir."""
    wait_ssh(s.agent_link(), deadline)
    s.marks = {path: f"{s.token}-{i}" for i, path in enumerate((RESET_MARK, RANCHER_MARK,
                                                                NODE_PASSWORD))}  # fmt: skip
    for path, value in s.marks.items():
        check(s.agent_cmd, f"echo {value} | sudo tee {path} >/dev/null", deadline)
    check(s.agent_cmd, "sync", deadline)
    # findmnt names a bind's source DEVICE[/PATH]: the table prints details as rich markup,
    # where "[/...]" is a closing tag, so the brackets go.
    node = check(s.agent_cmd, "findmnt -n -o SOURCE /etc/rancher/node", deadline).strip()
    node = node.replace("[", " ").replace("]", "")
    upper = f"{layout.AGENT_UPPERS}/{s.agent.name}"
    got = check(s.master_cmd, f"sudo cat {upper}{RESET_MARK}", deadline).strip()
    if got != s.marks[RESET_MARK]:
        raise Failed(f"{upper}{RESET_MARK} holds {got!r}")
    for path in (RANCHER_MARK, NODE_PASSWORD):
        if s.master_cmd(f"sudo test -e {upper}{path}", 60).returncode == 0:
            raise Failed(f"{path} is in {upper}: not on B's local disk")
    stamp = f"{layout.AGENT_BASE_STAMPS}/{s.agent.name}"
    s.b_base = check(s.master_cmd, f"sudo cat {stamp}", deadline).strip()
    return (
        f"{RESET_MARK} in {upper}; {RANCHER_MARK} and {NODE_PASSWORD} (bound from {node}) "
        f"not in it; {stamp}: {s.b_base}"
    )


def v4_agent_b_reset(s, deadline: float) -> str:
    """After v4 (a new root slot: the agents' new base) and B's boot from it."""
    wait_ssh(s.agent_link(), deadline)
    name = s.agent.name
    upper, kept = f"{layout.AGENT_UPPERS}/{name}", f"{layout.AGENT_RESETS}/{name}"
    slot_id = check(s.master_cmd, f"cat {layout.SLOT_ID}", deadline).strip()
    stamp = check(s.master_cmd, f"sudo cat {layout.AGENT_BASE_STAMPS}/{name}", deadline).strip()
    if stamp != slot_id or slot_id != f"{s.v4['BOOTED']}:{slot_id.partition(':')[2]}":
        raise Failed(f"{name}'s upper stamped {stamp!r}; {layout.SLOT_ID}: {slot_id!r}")
    was = check(s.master_cmd, f"sudo cat {kept}/base", deadline).strip()
    if was != s.b_base:
        raise Failed(f"{kept}/base: {was!r}, not {s.b_base!r}")
    if s.master_cmd(f"sudo test ! -e {upper}{RESET_MARK}", 60).returncode != 0:
        raise Failed(f"{RESET_MARK} is still in {upper}")
    if s.agent_cmd(f"test ! -e {RESET_MARK}", 60).returncode != 0:
        raise Failed(f"{RESET_MARK} still on {name}")
    aside = check(s.master_cmd, f"sudo cat {kept}/upper{RESET_MARK}", deadline).strip()
    if aside != s.marks[RESET_MARK]:
        raise Failed(f"{kept}/upper{RESET_MARK} holds {aside!r}")
    for path in (RANCHER_MARK, NODE_PASSWORD):
        got = check(s.agent_cmd, f"sudo cat {path}", deadline).strip()
        if got != s.marks[path]:
            raise Failed(f"{path} on {name} holds {got!r}, not what was written before v4")
    journal = "sudo journalctl -b -u scooby-agent-uppers.service -o cat --no-pager"
    said = check(s.master_cmd, journal, deadline)
    line = next((ln.strip() for ln in said.splitlines() if ln.startswith(f"{name}: new base")), "")
    if not line:
        raise Failed(f"the journal has no reset of {name}: {said[-400:]!r}")
    return (
        f"journal: {line!r}; {RESET_MARK} gone from {name} and {upper}, kept in {kept}/upper; "
        f"{RANCHER_MARK} and {NODE_PASSWORD} unchanged; upper stamped {stamp[:18]}..."
    )


SKIP_ENV = "SCOOBY_DAY2_SKIP"


def without(plan: tuple, names: str) -> tuple:
    """`plan` with the phases named in `names` (SKIP_ENV's value) left out: each is reported
    SKIPPED, never run, and a phase that needs one needs what that one needed instead."""
    skip = set(names.replace(",", " ").split())
    unknown = skip - {row[0] for row in plan}
    if unknown:
        raise ValueError(f"{SKIP_ENV}: no such phase: {', '.join(sorted(unknown))}")
    needs_of: dict[str, tuple[str, ...]] = {}
    rows = []
    for name, timeout, phase, needs, *rest in plan:
        needs = tuple(dict.fromkeys(n for need in needs for n in needs_of.get(need, (need,))))
        if name in skip:
            needs_of[name] = needs
            phase, needs = (lambda s, deadline: Skip(f"left out by {SKIP_ENV}")), ()
        rows.append((name, timeout, phase, needs, *rest))
    return tuple(rows)


class Day2(Session):
    """test-qemu's lifecycle (signals, cleanup, evidence, table) with the day-two phases."""

    plan = (
        ("prepare", 300, prepare, ()),
        ("master-banner", 1200, master_phases.master_banner, ("prepare",)),
        ("master-ssh", 300, master_phases.master_ssh, ("master-banner",)),
        ("agent-bootrom", 180, agent_phases.agent_bootrom, ("master-ssh",)),
        ("agent-banner", 1200, agent_phases.agent_banner, ("agent-bootrom",)),
        ("agent-write", 180, agent_phases.agent_write, ("agent-banner",)),
        ("master-state-write", 180, state_write, ("agent-write",)),
        ("v2-dry-run", 300, v2_dry_run, ("master-state-write",)),
        ("v2-deploy-live", 600, v2_deploy, ("v2-dry-run",)),
        ("v2-nothing-lost", 120, v2_kept, ("v2-deploy-live",)),
        ("v2-agent-b-bootrom", 180, agent_b_bootrom, ("v2-deploy-live",)),
        ("v2-agent-b-banner", 1200, agent_b_banner, ("v2-agent-b-bootrom",)),
        ("v2-agent-b-marks", 300, agent_b_marks, ("v2-agent-b-banner",)),
        ("v3-deploy-live", 600, v3_deploy, ("v2-agent-b-banner",)),
        ("v3-agent-a-gone", 300, v3_gone, ("v3-deploy-live",)),
        ("v3-k3s-node-gone", 300, v3_k3s_node_gone, ("v3-deploy-live",)),
        ("pull-bundle", 300, pull_bundle, ("v3-agent-a-gone",)),
        ("pull-refused", 300, pull_refused, ("pull-bundle",)),
        ("pull-update", 600, pull_update, ("pull-refused",)),
        ("pull-applied", 300, pull_applied, ("pull-update",)),
        ("v4-dry-run", 3000, v4_dry_run, ("pull-applied",)),
        ("v4-deploy-ab", 3000, v4_deploy, ("v4-dry-run",)),
        ("v4-committed", 300, v4_committed, ("v4-deploy-ab",)),
        ("v4-agent-b-bootrom", 180, agent_phases.agent_bootrom, ("v4-committed",)),
        ("v4-agent-b-banner", 1200, v4_agent_b_banner, ("v4-agent-b-bootrom",)),
        ("v4-agent-b-reset", 300, v4_agent_b_reset, ("v4-agent-b-banner",)),
        ("v4-k3s-nodes", 900, v4_k3s_nodes, ("v4-agent-b-banner",)),
        # v5 powers B off and reboots the master: after what reads them
        (
            "v5-deploy-ab-fails",
            3000,
            v5_deploy,
            ("v4-agent-b-banner",),
            ("v4-agent-b-reset", "v4-k3s-nodes"),
        ),
        ("v5-back-on-v4", 300, v5_back_on_v4, ("v5-deploy-ab-fails",)),
        ("kill-during-write", 1800, kill_during_write, ("v5-back-on-v4",)),
        ("kill-boots-previous", 1500, kill_boots_previous, ("kill-during-write",)),
    )

    def __init__(self, repo: Path, key: Path, image: Path, out: Path):
        from rich.console import Console

        self.repo = repo
        cluster = load_or_raise(repo)
        super().__init__(cluster, cluster.agent("willow"), image, out, key, Console(stderr=True))
        self.a = self.agent
        self.v3_said = ""  # the v3 deploy's output
        self.boot_id = ""
        self.deploys = 0
        self.updates = 0
        self.cleanup = contextlib.ExitStack()  # the HTTPS server
        self.served = Path()
        self.url = self.record = ""
        self.before: dict[str, str] = {}
        self.ab_before: dict[str, str] = {}  # scooby-slot status before v4
        self.v4: dict[str, str] = {}  # and once v4 is committed
        self.facts: dict[str, str] = {}  # what no A/B deploy may change (master_facts)
        self.marks: dict[str, str] = {}  # B's files before v4 (agent_b_marks): path -> value
        self.b_base = ""  # the base B's upper dir was made on before v4
        self.plan = without(Day2.plan, os.environ.get(SKIP_ENV, ""))

    def close(self) -> None:
        try:
            self.cleanup.close()
        finally:
            super().close()


def make_repo(top: Path) -> tuple[Path, Path]:
    key = top / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-day2", "-f", str(key)],
            check=True,
        )
    repo = top / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "agents").mkdir(parents=True)
    (repo / "config").write_text("")
    (repo / "agents" / "willow.agent").write_text(WILLOW)
    public = key.with_suffix(".pub").read_text().strip()
    (repo / ".env").write_text(f'LC_DEFAULT_USER=spike\nLC_SSH_AUTH_KEY="{public}"\n')
    (ROOT / ".cache").mkdir(exist_ok=True)
    (repo / ".cache").symlink_to(ROOT / ".cache")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo, key


def test_day2_live_deploys():
    top = ROOT / "build" / "test-day2"
    repo, key = make_repo(top)
    done = subprocess.run(
        [sys.executable, "-m", "scooby", "build", "--repo", str(repo), "--k3s=none"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = top / "evidence"
    Day2(repo, key, repo / "images" / "scooby.img", out).run()
    report = json.loads((out / "phases.json").read_text())
    left_out = [
        p["name"] for p in report["phases"]
        if p["status"] == "SKIPPED" and p["detail"] == f"left out by {SKIP_ENV}"
    ]  # fmt: skip
    # SKIPPED is a pass only for a K3S phase that says K3S can't be had here
    no_k3s = [
        p["name"] for p in report["phases"]
        if p["status"] == "SKIPPED" and p["detail"].startswith(K3S_NONE)
    ]  # fmt: skip
    failed = [
        (p["name"], p["status"], p["detail"]) for p in report["phases"]
        if p["status"] != "passed" and p["name"] not in left_out + no_k3s
    ]  # fmt: skip
    assert not failed, failed
    if left_out:  # a trimmed run is not a pass
        pytest.skip(f"{len(left_out)} phases left out by {SKIP_ENV}: {', '.join(left_out)}")
