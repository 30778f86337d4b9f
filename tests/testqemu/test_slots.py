"""`nox -s test_slots`: the master's half of an A/B upgrade (docs/day2.md, 4.3), run for real
on a booted master in QEMU (TCG), the master alone (no agent VM).

The default test image is built once (test_qemu's `built` fixture: cached base stages; run
with test_qemu.py in one session, both boot the same build). Its slot
A file system (partition 2 of the image) is what gets streamed, zstd-compressed, over SSH
into `sudo scooby-slot write` on the running master, as `scooby deploy` would:

  a  slot B written and verified (VERIFIED); `scooby-slot trial --reboot`; the initramfs
     boots B once, scooby-health.service finds dnsmasq, lighttpd, the NFS server and the
     agent's export up and commits it: / is PARTUUID -03, COMMITTED=b, and the machine-id
     and SSH host key are the master's own.
  b  a root modified on the host with debugfs (a dnsmasq.d file dnsmasq refuses) written to
     slot A and tried: dnsmasq fails, the health check rejects the trial and reboots, and the
     initramfs boots the committed slot B again by itself, within the trial's deadline; LAST
     says why.
  c  QEMU killed (SIGKILL: a power cut) while `scooby-slot write` is writing slot A, after
     some MiB went in; booted again: slot B, the state file unchanged, and the half-written
     slot cannot be tried.

The master's disk honours its flushes here (cache=writeback), so what the guest synced is on
the host when QEMU dies. Every phase prints its time; the figures go to phases.json. Played
rather than real: the Pi firmware's loading of kernel and initrd (QEMU -kernel/-initrd from
the boot partition, as test-qemu does), the bcm2835 watchdog (QEMU's i6300esb). The
initramfs, systemd, sshd, zstd, scooby-slot and the health check run for real. QEMU's user
networking is restrict=on, its forwards on the test namespace's loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_qemu import Built, built  # noqa: F401 - the session's one build of the test image

from scooby.core import layout
from scooby.load import load_or_raise
from scooby.testqemu import master as master_phases
from scooby.testqemu.phases import Failed
from scooby.testqemu.session import Session
from scooby.testqemu.ssh import SSH_PORT, check, console_wait, ssh_argv, wait_ssh
from scooby.util import diskimage

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the test's network need root"),
    pytest.mark.skipif(
        os.environ.get("SCOOBY_TEST_SLOTS") != "1",
        reason="boots the master six times for many minutes: run by `nox -s test_slots`",
    ),
]

BROKEN_CONF = "/etc/dnsmasq.d/zz-test-slots-broken.conf"  # an option dnsmasq refuses


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def slot_status(s, deadline: float) -> dict[str, str]:
    out = check(s.master_cmd, "sudo scooby-slot status", deadline)
    return {
        k: " ".join(shlex.split(v)) for k, _, v in (ln.partition("=") for ln in out.splitlines())
    }


def root_partuuid(s, deadline: float) -> str:
    return check(s.master_cmd, "findmnt -n -o PARTUUID /", deadline).strip()


def identity(s, deadline: float) -> dict[str, str]:
    keys = f"{layout.DATA_SSH}/ssh_host_ed25519_key.pub"
    return {
        "machine-id": check(s.master_cmd, "cat /etc/machine-id", deadline).strip(),
        "host key": check(s.master_cmd, f"cat {keys}", deadline).split()[1],
        "host key served": check(s.master_cmd, "sudo sshd -T | grep -i '^hostkey '", deadline),
    }


def initramfs_says(s, text: str, deadline: float, since: int = 0) -> float:
    """Seconds from QEMU's start until the initramfs's line appears after console offset
    `since`. A substring, not a line start: initramfs-tools prints "Begin: Running
    /scripts/local-top ... " without a newline, and the script's own words follow on its line."""
    want = text.encode()
    while True:
        if want in s.master._read_from(since):
            return time.monotonic() - s.master.started
        if not s.master.running():
            raise Failed(f"QEMU exited before {text!r}: {s.master.tail(8)!r}")
        if time.monotonic() > deadline:
            raise Failed(f"no {text!r} on the console; it ends: {s.master.tail(8)!r}")
        time.sleep(0.5)


def partuuid(s, slot: str) -> str:
    number = {"a": layout.ROOT_PARTITION, "b": layout.SLOT_B_PARTITION}[slot]
    return layout.partuuid(s.cluster.master.hostname, number)


# -- the new roots, made on the host ---------------------------------------------------------


def root_image(s, name: str) -> Path:
    """Partition 2 of the built image, as a file (sparse, like the image)."""
    part = diskimage.partition(s.image, layout.ROOT_PARTITION)
    out = s.work / f"{name}.img"
    subprocess.run(
        ["dd", f"if={s.image}", f"of={out}", "bs=4M", f"skip={part.offset}", f"count={part.size}",
         "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none"],
        check=True,
    )  # fmt: skip
    return out


def compressed(image: Path) -> tuple[Path, int, str]:
    """The zstd stream `scooby deploy` sends, its image's size and sha256."""
    digest = hashlib.sha256()
    with image.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    out = image.with_suffix(".img.zst")
    subprocess.run(["zstd", "-q", "-f", "-T2", "-3", str(image), "-o", str(out)], check=True)
    return out, image.stat().st_size, digest.hexdigest()


def write_command(size: int, digest: str) -> str:
    return f"sudo scooby-slot write --bytes {size} --sha256 {digest}"


def stream(s, stream_file: Path, size: int, digest: str, timeout: float):
    """`zstd stream | ssh master sudo scooby-slot write`: the one-line summary, in seconds."""
    link = s.master_link()
    argv = ssh_argv(s.net.ns, s.identity, SSH_PORT, link.control if link.up() else None)
    argv += [f"{s.user}@127.0.0.1", write_command(size, digest)]
    start = time.monotonic()
    with stream_file.open("rb") as f:
        done = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise Failed(
            f"scooby-slot write exited {done.returncode}: {(done.stdout + done.stderr)[-600:]}"
        )
    return done.stdout.strip().splitlines()[-1], seconds


def reboot_into_trial(s, deadline: float) -> int:
    """`sudo scooby-slot trial --reboot`: the console offset from which the new boot shows."""
    since = s.master.console.stat().st_size
    s.master_link().run("sudo scooby-slot trial --reboot", 60, retry=False)
    s.master_link().close()
    return since


# -- phases ----------------------------------------------------------------------------------


def slot_before(s, deadline: float) -> str:
    status = slot_status(s, deadline)
    want = {"BOOTED": "a", "COMMITTED": "a", "TRIAL": "", "TRIES": "0", "VERIFIED": ""}
    if {k: status.get(k) for k in want} != want or not status.get("RELEASE_A"):
        raise Failed(f"not a fresh master's slots: {status}")
    if root_partuuid(s, deadline) != partuuid(s, "a"):
        raise Failed(f"/ is not slot A's {partuuid(s, 'a')}")
    s.identity_before = identity(s, deadline)
    if s.master_cmd(f"test -e {layout.SLOT_TRIAL_MARK} || systemctl is-active -q "
                    "scooby-health.service", 60).returncode == 0:  # fmt: skip
        raise Failed("an ordinary boot ran the trial's health check")
    return (f"BOOTED=a COMMITTED=a RELEASE_A={status['RELEASE_A']}; / = PARTUUID "
            f"{partuuid(s, 'a')}; no health check on an ordinary boot")  # fmt: skip


def watchdog(s, deadline: float) -> str:
    """systemd feeds the i6300esb (RuntimeWatchdogSec=15s), panic=10 is on the command line."""
    cmdline = check(s.master_cmd, "cat /proc/cmdline", deadline)
    sysfs = "/sys/class/watchdog/watchdog0"
    command = f"systemctl show -p RuntimeWatchdogUSec --value; cat {sysfs}/identity {sysfs}/timeout"
    found = s.master_cmd(command, 60).stdout.split("\n")
    if "panic=10" not in cmdline.split() or found[0] != "15s" or found[2:3] != ["15"]:
        raise Failed(f"panic=10 / RuntimeWatchdogSec=15s / watchdog0: {cmdline!r} {found}")
    return f"panic=10; {found[1]} set to 15 s, fed by systemd (RuntimeWatchdogSec=15s)"


def a_write(s, deadline: float) -> str:
    image = root_image(s, "root-a")
    s.good, size, digest = compressed(image)
    s.good_size, s.good_digest = size, digest
    image.unlink()
    load = loadavg()
    line, seconds = stream(s, s.good, size, digest, deadline - time.monotonic())
    status = slot_status(s, deadline)
    if status["VERIFIED"] != f"b:{digest}":
        raise Failed(f"VERIFIED={status['VERIFIED']!r}, not b:{digest}")
    s.timings |= {"write_seconds": round(seconds, 1), "write_image_bytes": size,
                  "write_stream_bytes": s.good.stat().st_size, "write_load": load}  # fmt: skip
    return (
        f"{size} bytes ({s.good.stat().st_size} zstd) in {seconds:.1f} s, load {load}; "
        f"VERIFIED=b:{digest[:12]}...; RELEASE_B={status['RELEASE_B']}; {line}"
    )


def a_trial(s, deadline: float) -> str:
    load = loadavg()
    started = time.monotonic()
    since = reboot_into_trial(s, deadline)
    initramfs_says(s, f"scooby-slot: trial boot of slot b (PARTUUID={partuuid(s, 'b')})",
                   deadline, since)  # fmt: skip
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    console_wait(s.master, banner, deadline, since)
    to_banner = time.monotonic() - started
    wait_ssh(s.master_link(), deadline)
    while True:
        status = slot_status(s, deadline)
        if status["COMMITTED"] == "b" or time.monotonic() > deadline - 30:
            break
        time.sleep(5)
    committed = time.monotonic() - started
    want = {"BOOTED": "b", "COMMITTED": "b", "TRIAL": "", "TRIES": "0"}
    if {k: status.get(k) for k in want} != want:
        health = s.master_cmd("sudo journalctl -b -u scooby-health --no-pager | tail -5", 60)
        raise Failed(f"not committed: {status}; {health.stdout.strip()[-400:]}")
    if root_partuuid(s, deadline) != partuuid(s, "b"):
        raise Failed(f"/ is {root_partuuid(s, deadline)}, not slot B's {partuuid(s, 'b')}")
    now = identity(s, deadline)
    if now != s.identity_before:
        raise Failed(f"the master's identity changed: {s.identity_before} -> {now}")
    s.timings |= {"trial_reboot_to_banner": round(to_banner, 1),
                  "trial_reboot_to_committed": round(committed, 1), "trial_load": load}  # fmt: skip
    return (
        f"/ = PARTUUID {partuuid(s, 'b')}; banner {to_banner:.0f} s, COMMITTED=b "
        f"{committed:.0f} s after `scooby-slot trial --reboot` (load {load}); same "
        f"machine-id and SSH host key; LAST={status['LAST']!r}"
    )


def b_write(s, deadline: float) -> str:
    image = root_image(s, "root-broken")
    conf = s.work / "broken.conf"
    conf.write_text("# test_slots: an option dnsmasq does not know, so it refuses to start\n"
                    "no-such-dnsmasq-option=1\n")  # fmt: skip
    subprocess.run(["debugfs", "-w", "-R", f"write {conf} {BROKEN_CONF}", str(image)],
                   check=True, capture_output=True)  # fmt: skip
    found = subprocess.run(["debugfs", "-R", f"cat {BROKEN_CONF}", str(image)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    if "no-such-dnsmasq-option" not in found.stdout:
        raise Failed(f"debugfs did not write {BROKEN_CONF}")
    s.broken, size, digest = compressed(image)
    image.unlink()
    line, seconds = stream(s, s.broken, size, digest, deadline - time.monotonic())
    status = slot_status(s, deadline)
    if status["VERIFIED"] != f"a:{digest}":
        raise Failed(f"VERIFIED={status['VERIFIED']!r}, not a:{digest}")
    return f"slot A: the root with {BROKEN_CONF} (debugfs), {seconds:.1f} s; {line}"


def b_trial_fails(s, deadline: float) -> str:
    load = loadavg()
    started = time.monotonic()
    since = reboot_into_trial(s, deadline)
    initramfs_says(s, f"scooby-slot: trial boot of slot a (PARTUUID={partuuid(s, 'a')})",
                   deadline, since)  # fmt: skip
    trial_at = time.monotonic() - started
    initramfs_says(s, "scooby-slot: trial of slot a failed: booting committed slot b",
                   deadline, since)  # fmt: skip
    back_at = time.monotonic() - started
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    after = s.master.console.read_bytes().rfind(b"scooby-slot: trial of slot a failed")
    console_wait(s.master, banner, deadline, after)
    wait_ssh(s.master_link(), deadline)
    ssh_at = time.monotonic() - started
    status = slot_status(s, deadline)
    want = {"BOOTED": "b", "COMMITTED": "b", "TRIAL": "", "TRIES": "0"}
    if {k: status.get(k) for k in want} != want:
        raise Failed(f"not back on slot B: {status}")
    if not status["LAST"].startswith("trial a failed: health check: dnsmasq failed"):
        raise Failed(f"LAST={status['LAST']!r} does not say the health check failed on dnsmasq")
    if root_partuuid(s, deadline) != partuuid(s, "b"):
        raise Failed(f"/ is not slot B's {partuuid(s, 'b')}")
    if back_at - trial_at > layout.SLOT_DEADLINE_MIN * 60:
        raise Failed(
            f"back on B {back_at - trial_at:.0f} s after the trial boot: past the deadline"
        )
    if identity(s, deadline) != s.identity_before:
        raise Failed("the master's identity changed")
    s.timings |= {
        "failed_trial_boot_to_rollback_boot": round(back_at - trial_at, 1),
        "failed_trial_reboot_to_ssh": round(ssh_at, 1),
        "rollback_load": load,
    }
    return (
        f"trial boot of A {trial_at:.0f} s after `trial --reboot`, back on B by itself "
        f"{back_at - trial_at:.0f} s later (deadline {layout.SLOT_DEADLINE_MIN} min), SSH "
        f"at {ssh_at:.0f} s (load {load}); LAST={status['LAST']!r}"
    )


def c_write_killed(s, deadline: float) -> str:
    s.state_before = check(s.master_cmd, f"sudo sha256sum {layout.SLOT_STATE}", deadline).split()[0]
    state_text = check(s.master_cmd, f"sudo cat {layout.SLOT_STATE}", deadline)
    link = s.master_link()
    argv = ssh_argv(s.net.ns, s.identity, SSH_PORT, link.control if link.up() else None)
    argv += [f"{s.user}@127.0.0.1", write_command(s.good_size, s.good_digest)]
    f = s.good.open("rb")
    writer = subprocess.Popen(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    written = 0
    try:
        while written < master_phases.SLOT_KILL_AFTER:
            if writer.poll() is not None or time.monotonic() > deadline:
                raise Failed(f"the write ended before {master_phases.SLOT_KILL_AFTER >> 20} MiB"
                             f" went in: {writer.communicate()[1][-300:]!r}")  # fmt: skip
            got = master_phases.slot_written(s)
            written = written if got is None else got
            time.sleep(2)
        os.killpg(s.master.proc.pid, signal.SIGKILL)  # a power cut, mid-write
        s.master.proc.wait(timeout=60)
    finally:
        writer.kill()
        writer.wait()
        f.close()
    s.master_link().close()
    return (
        f"QEMU killed (SIGKILL) after scooby-slot had written {written >> 20} MiB of "
        f"{s.good_size >> 20} MiB to slot A; state before: {' '.join(state_text.split())}"
    )


def c_boot_after_kill(s, deadline: float) -> str:
    q = s.qemuvm
    console = s.out / "master.console-2.log"
    argv = [a.replace(str(s.master.console), str(console)) for a in s.master.argv]
    s.master = q.VM("master", s.net.ns, console, argv)
    s.start_vm(s.master)
    initramfs_says(s, f"scooby-slot: slot b (PARTUUID={partuuid(s, 'b')})", deadline)
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    seconds = console_wait(s.master, banner, deadline)
    wait_ssh(s.master_link(), deadline)
    state = check(s.master_cmd, f"sudo sha256sum {layout.SLOT_STATE}", deadline).split()[0]
    if state != s.state_before:
        now = check(s.master_cmd, f"sudo cat {layout.SLOT_STATE}", deadline)
        raise Failed(f"{layout.SLOT_STATE} changed: {now!r}")
    status = slot_status(s, deadline)
    if (status["BOOTED"], status["COMMITTED"], status["VERIFIED"]) != ("b", "b", ""):
        raise Failed(f"not slot B with slot A unverified: {status}")
    if root_partuuid(s, deadline) != partuuid(s, "b"):
        raise Failed(f"/ is not slot B's {partuuid(s, 'b')}")
    tried = s.master_cmd("sudo scooby-slot trial", 60)
    if tried.returncode != 1 or "did not finish" not in tried.stderr:
        raise Failed(f"trial of the half-written slot: exit {tried.returncode} {tried.stderr!r}")
    if identity(s, deadline) != s.identity_before:
        raise Failed("the master's identity changed")
    return (
        f"slot B booted (banner {seconds:.0f} s after QEMU started); {layout.SLOT_STATE} "
        f"unchanged; VERIFIED hidden while slot A's write is unfinished; trial refused: "
        f"{tried.stderr.strip()!r}"
    )


class Slots(Session):
    """test-qemu's lifecycle (signals, cleanup, evidence, table) with the slots' phases."""

    disk_cache = "writeback"  # QEMU is killed in phase c: the guest's syncs must be on the host
    plan = (
        ("prepare", 300, master_phases.prepare, ()),
        ("master-banner", 1200, master_phases.master_banner, ("prepare",)),
        ("master-ssh", 300, master_phases.master_ssh, ("master-banner",)),
        ("slot-before", 300, slot_before, ("master-ssh",)),
        ("watchdog", 120, watchdog, ("master-ssh",), ("slot-before",)),
        ("a-write-slot-b", 2400, a_write, ("slot-before",), ("watchdog",)),
        ("a-trial-committed", 1800, a_trial, ("a-write-slot-b",)),
        ("b-write-broken-slot-a", 2400, b_write, ("a-trial-committed",)),
        ("b-trial-rolled-back", 2400, b_trial_fails, ("b-write-broken-slot-a",)),
        ("c-write-killed", 1200, c_write_killed, ("b-trial-rolled-back",)),
        ("c-boot-after-kill", 1500, c_boot_after_kill, ("c-write-killed",)),
    )

    def __init__(self, repo: Path, key: Path, image: Path, out: Path):
        from rich.console import Console

        cluster = load_or_raise(repo)
        super().__init__(cluster, cluster.agents[0], image, out, key, Console(stderr=True))
        self.identity_before: dict[str, str] = {}
        self.good = self.broken = Path()
        self.good_size, self.good_digest, self.state_before = 0, "", ""


def test_slots_trial_commit_rollback_and_power_cut(built: Built):  # noqa: F811
    out = built.repo / "build" / "test-slots"
    Slots(built.repo, built.key, built.image, out).run()
    report = json.loads((out / "phases.json").read_text())
    failed = [(p["name"], p["status"], p["detail"]) for p in report["phases"]
              if p["status"] != "passed"]  # fmt: skip
    assert not failed, failed
