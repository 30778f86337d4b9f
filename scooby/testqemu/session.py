"""`scooby test-qemu`: boot the image in QEMU, network-boot an agent from it, check both.

The master boots the image (through a copy-on-write overlay) with the kernel and initrd in
its own boot partition; its external NIC is QEMU user networking with restrict=on, its
internal NIC a tap on a bridge in a network namespace of the test's own. The test then plays
the agent's Raspberry Pi boot ROM on that bridge (DHCP with the Pi's PXE vendor class, TFTP
from the agent's PXE folder) and boots an agent VM with what the master served. Every check
is a named phase with its own timeout and measured time; the table ends the run and, with
the consoles and the master's journal, stays under build/test-qemu/. VMs and namespaces are
removed on success, failure, timeout and Ctrl-C alike.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.core.paths import IMAGE
from scooby.testqemu.phases import (
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    Failed,
    Phase,
    Phases,
    Skip,
    one_line,
    table,
)
from scooby.testqemu.probes import EXTERNAL_PROBES, PROBE_NAMES, probe, probe_port
from scooby.util.tools import missing, not_installed

DEFAULT_IMAGE = IMAGE
EVIDENCE = "build/test-qemu"
SSH_PORT, API_PORT = 2222, 6443  # the master's forwards, on the test namespace's loopback
DHCP_WAIT = 60  # seconds the boot ROM asks for a lease before the phase fails
PROBE = "/var/tmp/scooby-test-qemu-probe"  # written on the agent, looked for in its upper dir


# -- the run ----------------------------------------------------------------------------


def pick_agent(cluster, name: str | None):
    if not cluster.agents:
        raise ScoobyError(error("agents", None, "no agent to network-boot: add agents/NAME.agent"))
    if name is None:
        return cluster.agents[0]
    for agent in cluster.agents:
        if agent.name == name:
            return agent
    names = ", ".join(a.name for a in cluster.agents)
    raise ScoobyError(error("", None, f"--agent {name}: no such agent (agents: {names})"))


def check_host(cluster, image: Path, identity: Path | None) -> None:
    """Everything the run needs, checked before a VM starts."""
    from scooby.testqemu import qemuvm

    problems = [error("", None, not_installed(t)) for t in missing(qemuvm.TOOLS)]
    if os.geteuid() != 0:
        problems.append(error("", None, "test-qemu must run as root (network namespaces, taps)"))
    if not image.is_file():
        problems.append(error(str(image), None, "no image here: run `scooby build` first"))
    if not cluster.secrets.ssh_auth_key:
        problems.append(
            error(
                ".env",
                cluster.secrets.source.line("LC_SSH_AUTH_KEY"),
                "the image has no SSH without a key, and test-qemu checks the master over SSH",
                "LC_SSH_AUTH_KEY",
            )
        )
    if identity is not None and not identity.is_file():
        problems.append(error(str(identity), None, "--identity: no such key file"))
    if problems:
        raise ScoobyError(problems)


EVIDENCE_FILES = ("*.console.log", "*.console-*.log", "*.qemu.log", "*-journal.txt",
                  "phases.txt", "phases.json", "work")  # fmt: skip


def clear_evidence(out: Path) -> None:
    """An earlier run's evidence goes; anything else in `out` (a user's --out) stays."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in EVIDENCE_FILES:
        for path in out.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, through every `finally` that cleans up."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


class Session:
    def __init__(self, cluster, agent, image: Path, out: Path, identity, console) -> None:
        from scooby.testqemu import qemuvm

        self.qemuvm = qemuvm
        self.cluster, self.agent, self.image = cluster, agent, image
        self.out, self.identity, self.console = out, identity, console
        self.user = cluster.secrets.default_user
        self.phases = Phases(echo=self._echo)
        self.net = qemuvm.Network(f"scbq{os.getpid() % 100000}")
        self.vms: list = []
        self.master = None
        self.agent_vm = None
        self.work = Path()
        self.k3s_mode = ""
        self.token = secrets.token_hex(8)
        self.interrupted = False
        self.timings: dict[str, float] = {}
        internal = cluster.master.internal
        taken = {internal.ip, *(a.ip for a in cluster.agents)}
        self.test_address = qemuvm.free_host(internal.network, taken)

    def _echo(self, phase: Phase) -> None:
        if phase.status == NOT_RUN:
            return  # the table lists them
        mark = {PASSED: "[green]✓[/]", FAILED: "[bold red]✗[/]", SKIPPED: "[yellow]-[/]"}
        detail = f": {phase.detail}" if phase.detail else ""
        self.console.print(
            f"{mark.get(phase.status, ' ')} {phase.name} {phase.status} "
            f"{phase.seconds:.1f} s{detail}",
            markup=True,
            highlight=False,
        )

    # The order is the data flow's; `needs` skips what cannot run after a failure.
    def run(self, keep: bool = False) -> Phases:
        clear_evidence(self.out)
        self.work = Path(tempfile.mkdtemp(prefix="scooby-test-qemu."))
        old = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
        old |= {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
        p = self.phases.run
        try:
            p("prepare", 300, self.prepare)
            p("master-banner", 1200, self.master_banner, ("prepare",))
            p("master-ssh", 300, self.master_ssh, ("master-banner",))
            p("master-services", 120, self.master_services, ("master-ssh",))
            p("master-exports", 120, self.master_exports, ("master-ssh",))
            p("master-nat", 120, self.master_nat, ("master-ssh",))
            p("external-isolation", 180, self.external_isolation, ("master-ssh",))
            p("agent-bootrom", 180, self.agent_bootrom, ("master-services",))
            p("agent-banner", 1200, self.agent_banner, ("agent-bootrom",))
            p("agent-root", 300, self.agent_root, ("agent-banner",))
            p("agent-write", 120, self.agent_write, ("agent-root",))
            p("agent-reset", 300, self.agent_reset, ("agent-write",))
            p("agent-reboot", 1200, self.agent_reboot, ("agent-reset",))
            p("k3s-nodes", 900, self.k3s_nodes, ("agent-banner", "master-services"))
            p("k3s-manifest", 600, self.k3s_manifest, ("k3s-nodes",))
        except (KeyboardInterrupt, Interrupted) as exc:
            name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc)
            self.interrupted = True
            running = self.phases.phases[-1] if self.phases.phases else None
            if running is not None and running.status == NOT_RUN and not running.detail:
                running.status, running.detail = FAILED, f"interrupted ({name})"
            raise KeyboardInterrupt from None
        finally:
            try:
                self.evidence()
            finally:
                # Nothing interrupts the cleanup itself: no VM or namespace is left behind.
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_IGN)
                for vm in self.vms:
                    vm.stop()
                self.net.delete()
                if keep:
                    shutil.move(str(self.work), self.out / "work")
                else:
                    shutil.rmtree(self.work, ignore_errors=True)
                for s, handler in old.items():
                    signal.signal(s, handler)
                self.report()
        return self.phases

    # -- evidence ---------------------------------------------------------------------

    def evidence(self) -> None:
        """The master's (and agent's) journal while they still run; consoles are already
        files under `out`."""
        if self.phases.status("master-ssh") == PASSED and self.master and self.master.running():
            self._save_journal("master-journal.txt", self.master_cmd)
        agent_up = self.agent_vm is not None and self.agent_vm.running()
        if agent_up and self.phases.status("agent-banner") == PASSED:
            self._save_journal("agent-journal.txt", self.agent_cmd)

    def _save_journal(self, name: str, command) -> None:
        try:
            timeout = 30 if self.interrupted else 180
            done = command("sudo journalctl -b --no-pager -o short-monotonic", timeout=timeout)
            (self.out / name).write_text(done.stdout + done.stderr)
        except Exception as exc:  # noqa: BLE001 - evidence is best effort; the phases say why
            (self.out / name).write_text(f"could not read the journal: {one_line(exc)}\n")

    def report(self) -> None:
        from rich.console import Console

        t = table(self.phases.phases)
        self.console.print(t)
        with (self.out / "phases.txt").open("w") as f:
            Console(file=f, width=160, no_color=True).print(t)
        data = {
            "image": str(self.image),
            "agent": self.agent.name,
            "k3s_mode": self.k3s_mode,
            "timings": self.timings,
            "phases": [asdict(p) for p in self.phases.phases],
        }
        (self.out / "phases.json").write_text(json.dumps(data, indent=2) + "\n")
        if not self.phases.ok:
            self.console.print(
                f"evidence: {self.out}/ (consoles, journal, phase table)", soft_wrap=True
            )

    # -- SSH --------------------------------------------------------------------------

    def _ssh(self, host: str, port: int, command: str, timeout: float):
        argv = ["ip", "netns", "exec", self.net.ns, "ssh", "-p", str(port)]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for option in (
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "ConnectTimeout=15",
            "LogLevel=ERROR",
            "ServerAliveInterval=15",
        ):
            argv += ["-o", option]
        argv += [f"{self.user}@{host}", command]
        # ssh's own failures (exit 255: sshd restarting as cloud-init finishes, a reset
        # connection) are retried until the deadline; the command's own exit status is not.
        deadline = time.monotonic() + max(timeout, 1)
        while True:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
            if done.returncode != 255 or time.monotonic() + 5 > deadline:
                return done
            time.sleep(3)

    def master_cmd(self, command: str, timeout: float = 120):
        return self._ssh("127.0.0.1", SSH_PORT, command, timeout)

    def agent_cmd(self, command: str, timeout: float = 120):
        return self._ssh(str(self.agent.ip), 22, command, timeout)

    def _check(self, run, command: str, deadline: float) -> str:
        done = run(command, timeout=deadline - time.monotonic())
        if done.returncode != 0:
            raise Failed(
                f"`{command}` exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}"
            )
        return done.stdout

    def _wait_ssh(self, run, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            try:
                done = run("true", timeout=min(60, deadline - time.monotonic()))
                if done.returncode == 0:
                    return
                last = (done.stderr or done.stdout).strip()
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(5)
        raise TimeoutError(f"no SSH login: {last}")

    # -- the phases -------------------------------------------------------------------

    def prepare(self, deadline: float) -> str:
        q = self.qemuvm
        files = q.boot_files(
            self.image, self.work / "master-boot", (layout.KERNEL, layout.INITRD, "cmdline.txt")
        )
        cmdline = q.virt_cmdline(files["cmdline.txt"].read_text())
        disk = q.overlay(self.image, self.work / "master.qcow2")
        q.scratch_disk(self.work / f"{self.agent.name}-disk.img", self.agent.rancher_partuuid)
        self.net.create(self.test_address)
        master = self.cluster.master
        forwards = [("tcp", SSH_PORT, 22), ("tcp", API_PORT, layout.K3S_API_PORT)]
        forwards += [(proto, probe_port(port), port) for proto, port in EXTERNAL_PROBES]
        external = q.user_netdev(
            master.external.network, master.gateway, master.external.ip, forwards
        )
        internal = f"tap,ifname={self.net.tap('tap-master')},script=no,downscript=no"
        self.net.tap("tap-agent")
        console = self.out / "master.console.log"
        argv = q.qemu_argv(
            files[layout.KERNEL],
            files[layout.INITRD],
            cmdline,
            console,
            disk,
            "qcow2",
            [(external, "52:54:00:5c:00:01"), (internal, "52:54:00:5c:00:02")],
        )
        self.master = q.VM("master", self.net.ns, console, argv)
        return f"cmdline: {cmdline}"

    def master_banner(self, deadline: float) -> str:
        self.vms.append(self.master)
        self.master.start()
        banner = f"{self.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
        seconds = self._console_wait(self.master, banner, deadline)
        self.timings["qemu_start_to_master_banner"] = seconds
        line = self.master.banner_lines(banner)[0]
        return f"{line!r} {seconds:.0f} s after QEMU started"

    def _console_wait(self, vm, needle: str, deadline: float, since: int = 0) -> float:
        try:
            return vm.wait_for(needle, deadline, since)
        except (TimeoutError, self.qemuvm.VMExited) as exc:
            raise Failed(f"{exc}; console ends: {vm.tail(8)!r}") from None

    def master_ssh(self, deadline: float) -> str:
        self._wait_ssh(self.master_cmd, deadline)
        release = self._check(self.master_cmd, f"cat {layout.RELEASE_FILE}", deadline)
        for line in release.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "K3S_MODE":
                self.k3s_mode = value.strip().strip("\"'")
        return f"{self.user}@master; {layout.RELEASE_FILE}: K3S_MODE={self.k3s_mode or '?'}"

    def master_services(self, deadline: float) -> str:
        units = ["dnsmasq", "lighttpd", "nfs-server", "netfilter-persistent"]
        if self.k3s_mode == layout.EMBEDDED:
            units.append("k3s")
        done = self.master_cmd(
            f"systemctl is-active {' '.join(units)}", deadline - time.monotonic()
        )
        states = dict(zip(units, done.stdout.split(), strict=False))
        bad = {u: s for u, s in states.items() if s != "active"}
        if bad or done.returncode != 0:
            failed = self.master_cmd("systemctl --failed --no-legend --plain", 60).stdout
            raise Failed(f"not active: {bad or states}; failed units: {' '.join(failed.split())}")
        failed = self.master_cmd("systemctl --failed --no-legend --plain", 60).stdout.split()
        units_failed = [w for w in failed if "." in w and not w.startswith("●")]
        note = f"; other failed units: {' '.join(units_failed)}" if units_failed else ""
        return "active: " + ", ".join(units) + note

    def master_exports(self, deadline: float) -> str:
        base = self._check(
            self.master_cmd, f"findmnt -n -o FSTYPE {layout.AGENT_BASE}", deadline
        ).strip()
        if base != "squashfs":
            raise Failed(f"{layout.AGENT_BASE} is {base or 'not mounted'}, not the squashfs")
        exports = self._check(self.master_cmd, "sudo exportfs -v", deadline)
        found = []
        for agent in self.cluster.agents:
            merged = f"{layout.AGENT_MOUNTS}/{agent.name}"
            fstype = self._check(self.master_cmd, f"findmnt -n -o FSTYPE {merged}", deadline)
            if fstype.strip() != "overlay":
                raise Failed(f"{merged} is {fstype.strip() or 'not mounted'}, not an overlay")
            flat = " ".join(exports.split())
            if f"{merged} {agent.ip}(" not in flat:
                raise Failed(f"{merged} is not exported to {agent.ip}: {flat[-300:]!r}")
            found.append(f"{merged} -> {agent.ip}")
        return "base squashfs; overlay + export: " + ", ".join(found)

    def master_nat(self, deadline: float) -> str:
        ext = self.cluster.master.external.device
        nat = self._check(self.master_cmd, "sudo iptables -t nat -S POSTROUTING", deadline)
        rule = f"-A POSTROUTING -o {ext} -j MASQUERADE"
        if rule not in nat:
            raise Failed(f"no {rule!r} in the nat table: {' '.join(nat.split())!r}")
        forward = self._check(self.master_cmd, "cat /proc/sys/net/ipv4/ip_forward", deadline)
        forward = forward.strip()
        if forward != "1":
            raise Failed(f"net.ipv4.ip_forward is {forward}")
        return f"{rule}; ip_forward=1"

    def external_isolation(self, deadline: float) -> str:
        """The external side reaches SSH and the K3S API only; NFS, TFTP, DHCP, DNS and the
        seeds are filtered. Probed for real from both sides: each daemon answers on the
        internal network (so it runs and the probe works), and the same probe through the
        user-net forward onto the master's external address gets nothing."""
        ext = self.cluster.master.external.device
        rules = self._check(self.master_cmd, "sudo iptables -S INPUT", deadline)
        if "-P INPUT DROP" not in rules:
            raise Failed(f"INPUT policy is not DROP: {' '.join(rules.split())!r}")
        open_ports = set()
        for line in rules.splitlines():
            words = line.split()
            if f"-i {ext}" in line and words[-1] == "ACCEPT":
                if "--dport" not in words:
                    raise Failed(f"{ext} accepts everything: {line!r}")
                open_ports.add(int(words[words.index("--dport") + 1]))
        if not open_ports <= {22, layout.K3S_API_PORT}:
            raise Failed(f"{ext} accepts ports {sorted(open_ports)}")
        internal_ip = str(self.cluster.master.internal.ip)
        jobs = []
        for proto, port in EXTERNAL_PROBES:
            jobs.append(("internal", proto, port, internal_ip, port))
            jobs.append(("external", proto, port, "127.0.0.1", probe_port(port)))
        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(lambda j: probe(self.net.ns, *j[1:]), jobs))
        wrong = []
        for (side, proto, port, _h, _p), answered in zip(jobs, answers, strict=True):
            if answered != (side == "internal"):
                verb = "answers" if answered else "does not answer"
                wrong.append(f"{proto}/{port} {verb} on the {side} side")
        if wrong:
            raise Failed("; ".join(wrong))
        names = ", ".join(f"{PROBE_NAMES[p]} {t}/{p}" for t, p in EXTERNAL_PROBES)
        return f"{ext} accepts only tcp {sorted(open_ports)}; unreachable from outside: {names}"

    def agent_bootrom(self, deadline: float) -> str:
        from scooby.testqemu import bootrom

        agent = self.agent
        device = self.net.add_rom(agent.mac)
        try:
            # A Pi's ROM keeps asking; a minute without an answer is a master that won't.
            dhcp_by, ack = min(deadline, time.monotonic() + DHCP_WAIT), None
            while ack is None:
                try:
                    ack = bootrom.lease(self.net.rom, device, agent.mac, attempts=2)
                except TimeoutError:
                    if time.monotonic() > dhcp_by:
                        raise
            if ack.yiaddr != agent.ip or ack.options.get(60) != b"PXEClient":
                raise Failed(f"DHCP gave {ack.yiaddr} (vendor {ack.options.get(60)!r})")
            prefix = self.cluster.master.internal.network.prefixlen
            self.net.rom_address(f"{agent.ip}/{prefix}")
            folder = self.work / f"{agent.name}-boot"
            folder.mkdir(exist_ok=True)
            sizes = []
            for name in ("cmdline.txt", layout.KERNEL, layout.INITRD):
                data = bootrom.tftp_get(self.net.rom, ack.server, f"{agent.pxe_id}/{name}")
                (folder / name).write_bytes(data)
                sizes.append(f"{name} {len(data) / 2**20:.1f} MiB")
        finally:
            self.net.drop_rom()
        return f"lease {ack.yiaddr} from {ack.server}; TFTP {agent.pxe_id}/: " + ", ".join(sizes)

    def _boot_agent(self, console_name: str) -> None:
        q = self.qemuvm
        folder = self.work / f"{self.agent.name}-boot"
        cmdline = q.virt_cmdline((folder / "cmdline.txt").read_text())
        console = self.out / console_name
        argv = q.qemu_argv(
            folder / layout.KERNEL,
            folder / layout.INITRD,
            cmdline,
            console,
            self.work / f"{self.agent.name}-disk.img",
            "raw",
            [("tap,ifname=tap-agent,script=no,downscript=no", self.agent.mac)],
        )
        self.agent_vm = q.VM(self.agent.name, self.net.ns, console, argv)
        self.vms.append(self.agent_vm)
        self.agent_vm.start()

    def _agent_online(self, deadline: float, key: str) -> str:
        banner = f"{self.agent.name.upper()} IS ONLINE"
        seconds = self._console_wait(self.agent_vm, banner, deadline)
        self.timings[key] = seconds
        line = self.agent_vm.banner_lines(banner)[0]
        return f"{line!r} {seconds:.0f} s after QEMU started"

    def agent_banner(self, deadline: float) -> str:
        self._boot_agent(f"{self.agent.name}.console.log")
        return self._agent_online(deadline, "qemu_start_to_agent_banner")

    def agent_root(self, deadline: float) -> str:
        self._wait_ssh(self.agent_cmd, deadline)
        master_ip = self.cluster.master.internal.ip
        want = f"{master_ip}:{layout.AGENT_MOUNTS}/{self.agent.name}"
        root = self._check(self.agent_cmd, "findmnt -n -o FSTYPE,SOURCE /", deadline).split()
        if root[:1] != ["nfs"] or root[1:2] != [want]:
            raise Failed(f"/ is {' '.join(root)}, not nfs {want}")
        rancher = self.agent_cmd("findmnt -n -o FSTYPE,SOURCE /var/lib/rancher", 60).stdout.split()
        if rancher[:1] != ["ext4"]:
            disks = self.agent_cmd("lsblk -n -o NAME,PARTUUID,FSTYPE", 60).stdout
            unit = self.agent_cmd("systemctl status --no-pager -n 5 var-lib-rancher.mount", 60)
            raise Failed(
                f"/var/lib/rancher is {' '.join(rancher) or 'not mounted'}; disks: "
                f"{' '.join(disks.split())}; {' '.join(unit.stdout.split())[-600:]}"
            )
        partuuid = self._check(
            self.agent_cmd, f"lsblk -n -o PARTUUID {shlex.quote(rancher[1])}", deadline
        ).strip()
        if partuuid.lower() != self.agent.rancher_partuuid:
            raise Failed(f"/var/lib/rancher is on PARTUUID {partuuid}")
        return f"/ = nfs {want}; /var/lib/rancher = ext4 {rancher[1]} PARTUUID={partuuid}"

    def agent_write(self, deadline: float) -> str:
        self._check(
            self.agent_cmd, f"echo {self.token} | sudo tee {PROBE} >/dev/null && sync", deadline
        )
        upper = f"{layout.AGENT_UPPERS}/{self.agent.name}{PROBE}"
        while True:
            got = self.master_cmd(f"sudo cat {upper}", deadline - time.monotonic())
            if got.returncode == 0 and got.stdout.strip() == self.token:
                return f"{PROBE} on {self.agent.name} is {upper} on the master"
            if time.monotonic() > deadline:
                raise Failed(f"{upper}: {(got.stdout + got.stderr).strip()!r}, not the token")
            time.sleep(2)

    def agent_reset(self, deadline: float) -> str:
        # Power the agent off first, as `scooby-agent reset` asks.
        self.agent_cmd("sudo systemctl poweroff", 30)
        stop_by = min(deadline, time.monotonic() + 120)
        while self.agent_vm.running() and time.monotonic() < stop_by:
            time.sleep(2)
        halted = "powered off" if not self.agent_vm.running() else "stopped (poweroff hung)"
        self.agent_vm.stop()
        out = self._check(self.master_cmd, f"sudo {layout.SCOOBY_AGENT} reset {self.agent.name}",
                          deadline)  # fmt: skip
        upper = f"{layout.AGENT_UPPERS}/{self.agent.name}"
        left = self._check(self.master_cmd, f"sudo find {upper} -mindepth 1", deadline).split()
        if left:
            raise Failed(f"{upper} not empty after reset: {left[:5]}")
        listing = self._check(self.master_cmd, f"sudo {layout.SCOOBY_AGENT} list", deadline)
        row = next(
            (ln.split() for ln in listing.splitlines() if ln.startswith(self.agent.name)), []
        )
        if row[-2:] != ["yes", "yes"]:
            raise Failed(f"not mounted and exported again: {' '.join(row)!r}")
        return f"agent {halted}; {out.strip().splitlines()[-1]}; upper dir empty"

    def agent_reboot(self, deadline: float) -> str:
        self.agent_bootrom(deadline)
        self._boot_agent(f"{self.agent.name}.console-2.log")
        banner = self._agent_online(deadline, "qemu_start_to_agent_banner_after_reset")
        self._wait_ssh(self.agent_cmd, deadline)
        gone = self.agent_cmd(f"test ! -e {PROBE}", deadline - time.monotonic())
        if gone.returncode != 0:
            raise Failed(f"{PROBE} survived the reset")
        return f"{banner}; {PROBE} gone"

    def k3s_nodes(self, deadline: float) -> str | Skip:
        if self.k3s_mode in ("", layout.NO_K3S):
            return Skip(f"image built without K3S (K3S_MODE={self.k3s_mode or 'unset'})")
        want = {self.cluster.master.hostname, self.agent.name}
        last = ""
        while time.monotonic() < deadline:
            done = self.master_cmd("sudo k3s kubectl get nodes --no-headers", 120)
            last = (done.stdout + done.stderr).strip()
            ready = {ln.split()[0] for ln in last.splitlines() if ln.split()[1:2] == ["Ready"]}
            if want <= ready:
                return f"Ready: {', '.join(sorted(ready))}"
            time.sleep(10)
        raise Failed(f"nodes not all Ready: {' '.join(last.split())!r}")

    def k3s_manifest(self, deadline: float) -> str | Skip:
        import yaml

        from scooby.core.model import MANIFESTS

        objects = []
        for rel in self.cluster.server_files:
            if rel.startswith(MANIFESTS) and rel.endswith((".yaml", ".yml")):
                for doc in yaml.safe_load_all((self.cluster.repo / rel).read_text()):
                    if isinstance(doc, dict) and doc.get("kind") and doc.get("metadata"):
                        objects.append((rel, doc))
        if not objects:
            return Skip(f"no manifest under {MANIFESTS} to look for")
        rel, doc = objects[0]
        kind, meta = doc["kind"], doc["metadata"]
        command = f"sudo k3s kubectl get {kind} {meta['name']}"
        if meta.get("namespace"):
            command += f" -n {meta['namespace']}"
        last = ""
        while time.monotonic() < deadline:
            done = self.master_cmd(command, 120)
            if done.returncode == 0:
                return f"{kind} {meta['name']} from {rel} deployed"
            last = (done.stdout + done.stderr).strip()
            time.sleep(10)
        raise Failed(f"{kind} {meta['name']} from {rel} not deployed: {last!r}")
