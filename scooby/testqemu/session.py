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

import os
import secrets
import shutil
import signal
import tempfile
import threading
from functools import partial
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.core.paths import IMAGE
from scooby.testqemu import agent as agent_phases
from scooby.testqemu import evidence
from scooby.testqemu import k3s as k3s_phases
from scooby.testqemu import master as master_phases
from scooby.testqemu.phases import FAILED, NOT_RUN, PASSED, SKIPPED, Failed, Phase, Phases, Step
from scooby.testqemu.ssh import SSH_PORT, Link

DEFAULT_IMAGE = IMAGE
EVIDENCE = "build/test-qemu"


# -- the run ----------------------------------------------------------------------------


# Every phase, in the data flow's order: (name, timeout in s, phase(session, deadline), needs,
# after). A phase starts once those in `needs` and `after` have finished, and runs only if
# those in `needs` passed (a SKIPPED one skips it too): the master's checks run while the
# agent boots. The boot ROM needs only the banner, which the master says once dnsmasq,
# lighttpd and the NFS server have started (scooby-ready.service), so it plays while the SSH
# login and the master's checks run, as a Pi's ROM would not wait for them either.
# `after` orders phases that touch the same thing without needing each other:
# `scooby-agent reset` remounts what master-exports reads; K3S wants the agent back up; the
# master reboots last, once nothing else needs it up.
MASTER_CHECKS = ("master-exports", "master-data", "master-nat", "external-isolation")
PLAN = (
    ("prepare", 300, master_phases.prepare, (), ()),
    ("master-banner", 1200, master_phases.master_banner, ("prepare",), ()),
    ("master-ssh", 300, master_phases.master_ssh, ("master-banner",), ()),
    ("master-services", 120, master_phases.master_services, ("master-ssh",), ()),
    ("master-exports", 120, master_phases.master_exports, ("master-ssh",), ()),
    ("master-data", 120, master_phases.master_data, ("master-ssh",), ()),
    ("master-nat", 120, master_phases.master_nat, ("master-ssh",), ()),
    ("external-isolation", 180, master_phases.external_isolation, ("master-ssh",), ()),
    ("agent-bootrom", 180, agent_phases.agent_bootrom, ("master-banner",), ()),
    ("agent-banner", 1200, agent_phases.agent_banner, ("agent-bootrom",), ()),
    ("agent-root", 300, agent_phases.agent_root, ("agent-banner",), ()),
    ("agent-late-disk", 300, agent_phases.agent_late_disk, ("agent-root",), ()),
    ("agent-write", 120, agent_phases.agent_write, ("agent-root",), ()),
    ("agent-reset", 300, agent_phases.agent_reset, ("agent-write",),
     ("master-services", *MASTER_CHECKS, "agent-late-disk")),
    ("agent-reboot", 1200, agent_phases.agent_reboot, ("agent-reset",), ()),
    ("k3s-nodes", 900, k3s_phases.k3s_nodes, ("agent-banner", "master-services"),
     ("agent-reboot",)),
    ("k3s-manifest", 600, k3s_phases.k3s_manifest, ("k3s-nodes",), ()),
    ("master-reboot", 1200, master_phases.master_reboot, ("master-data",),
     ("master-services", *MASTER_CHECKS, "agent-reboot", "k3s-manifest")),
)  # fmt: skip


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
    from scooby.util import doctor

    problems = doctor.diagnostics(doctor.examine())  # `scooby doctor`: programs, tun, netns
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
    plan = PLAN  # a subclass (the day-two test) runs its own phases with the same lifecycle
    disk_cache = "unsafe"  # the master's disk (qemuvm.qemu_argv); a test that kills QEMU: writeback

    def __init__(self, cluster, agent, image: Path, out: Path, identity, console) -> None:
        from scooby.testqemu import qemuvm

        self.qemuvm = qemuvm
        self.cluster, self.agent, self.image = cluster, agent, image
        self.out, self.identity, self.console = out, identity, console
        self.user = cluster.secrets.default_user
        self.phases = Phases(echo=self._echo)
        self.net = qemuvm.Network(f"scbq{os.getpid() % 100000}")
        self.vms: list = []
        self.links: dict[tuple[int, str], Link] = {}  # (id of the VM, host): its connection
        self.lock = threading.Lock()  # phases run in threads: VMs start only until closing
        self.closing = False
        self.master = None
        self.agent_vm = None
        self.work = Path()
        self.k3s_mode = ""
        self.master_identity: dict[str, str] = {}  # master-data's reading, for master-reboot
        self.token = secrets.token_hex(8)
        self.interrupted = False
        self.timings: dict[str, float] = {}
        self.rom_again = ""  # what agent-reset's second boot-ROM run fetched, for agent-reboot
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

    def run(self, keep: bool = False) -> Phases:
        clear_evidence(self.out)
        self.work = Path(tempfile.mkdtemp(prefix="scooby-test-qemu."))
        old = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
        old |= {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
        steps = [Step(n, t, partial(phase, self), needs, *after) for n, t, phase, needs, *after
                 in self.plan]  # fmt: skip
        try:
            self.phases.run_plan(steps)
        except (KeyboardInterrupt, Interrupted) as exc:
            name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc)
            self.interrupted = True
            self.phases.interrupt(f"interrupted ({name})")
            raise KeyboardInterrupt from None
        finally:
            try:
                evidence.save(self)
            finally:
                # Nothing interrupts the cleanup itself: no VM or namespace is left behind.
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(s, signal.SIG_IGN)
                self.close()
                if keep:
                    shutil.move(str(self.work), self.out / "work")
                else:
                    shutil.rmtree(self.work, ignore_errors=True)
                for s, handler in old.items():
                    signal.signal(s, handler)
                evidence.report(self)
        return self.phases

    def close(self) -> None:
        """Stop every VM and connection and delete the namespaces; no VM starts after."""
        with self.lock:
            self.closing = True
            links = list(self.links.values())
        for link in links:
            link.end()
        for vm in self.vms:
            vm.stop()
        self.net.delete()

    def start_vm(self, vm) -> None:
        with self.lock:
            if self.closing:
                raise Failed("the run is ending: no VM starts now")
            self.vms.append(vm)
            vm.start()

    def link(self, vm, host: str, port: int) -> Link:
        """The shared SSH connection to `vm`; a VM that stopped takes its connection along."""
        with self.lock:
            for key, link in list(self.links.items()):
                if key[0] != id(vm) and link.proc is not None and not self._alive(key[0]):
                    link.close()
            key = (id(vm), host)
            if key not in self.links:
                control = self.work / f"ssh-{len(self.links)}"
                link = Link(self.net.ns, self.identity, self.user, host, port, control)
                link.ended = self.closing
                self.links[key] = link
            return self.links[key]

    def _alive(self, vm_id: int) -> bool:
        return any(id(vm) == vm_id and vm.running() for vm in self.vms)

    def master_link(self) -> Link:
        return self.link(self.master, "127.0.0.1", SSH_PORT)

    def agent_link(self) -> Link:
        return self.link(self.agent_vm, str(self.agent.ip), 22)

    def master_cmd(self, command: str, timeout: float = 120):
        return self.master_link().run(command, timeout)

    def agent_cmd(self, command: str, timeout: float = 120):
        return self.agent_link().run(command, timeout)
