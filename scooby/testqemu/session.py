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
from functools import partial
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.core.paths import IMAGE
from scooby.testqemu import agent as agent_phases
from scooby.testqemu import evidence
from scooby.testqemu import k3s as k3s_phases
from scooby.testqemu import master as master_phases
from scooby.testqemu.phases import (
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    Phase,
    Phases,
)
from scooby.testqemu.ssh import SSH_PORT, ssh

DEFAULT_IMAGE = IMAGE
EVIDENCE = "build/test-qemu"


# -- the run ----------------------------------------------------------------------------


# Every phase, in the data flow's order: (name, timeout in s, phase(session, deadline), needs).
# `needs` skips what cannot run after a failure (and marks SKIPPED what follows a SKIPPED).
PLAN = (
    ("prepare", 300, master_phases.prepare, ()),
    ("master-banner", 1200, master_phases.master_banner, ("prepare",)),
    ("master-ssh", 300, master_phases.master_ssh, ("master-banner",)),
    ("master-services", 120, master_phases.master_services, ("master-ssh",)),
    ("master-exports", 120, master_phases.master_exports, ("master-ssh",)),
    ("master-nat", 120, master_phases.master_nat, ("master-ssh",)),
    ("external-isolation", 180, master_phases.external_isolation, ("master-ssh",)),
    ("agent-bootrom", 180, agent_phases.agent_bootrom, ("master-services",)),
    ("agent-banner", 1200, agent_phases.agent_banner, ("agent-bootrom",)),
    ("agent-root", 300, agent_phases.agent_root, ("agent-banner",)),
    ("agent-write", 120, agent_phases.agent_write, ("agent-root",)),
    ("agent-reset", 300, agent_phases.agent_reset, ("agent-write",)),
    ("agent-reboot", 1200, agent_phases.agent_reboot, ("agent-reset",)),
    ("k3s-nodes", 900, k3s_phases.k3s_nodes, ("agent-banner", "master-services")),
    ("k3s-manifest", 600, k3s_phases.k3s_manifest, ("k3s-nodes",)),
)


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

    def run(self, keep: bool = False) -> Phases:
        clear_evidence(self.out)
        self.work = Path(tempfile.mkdtemp(prefix="scooby-test-qemu."))
        old = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
        old |= {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
        p = self.phases.run
        try:
            for name, timeout, phase, needs in self.plan:
                p(name, timeout, partial(phase, self), needs)
        except (KeyboardInterrupt, Interrupted) as exc:
            name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc)
            self.interrupted = True
            running = self.phases.phases[-1] if self.phases.phases else None
            if running is not None and running.status == NOT_RUN and not running.detail:
                running.status, running.detail = FAILED, f"interrupted ({name})"
            raise KeyboardInterrupt from None
        finally:
            try:
                evidence.save(self)
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
                evidence.report(self)
        return self.phases

    def master_cmd(self, command: str, timeout: float = 120):
        return ssh(self.net.ns, self.identity, self.user, "127.0.0.1", SSH_PORT, command, timeout)

    def agent_cmd(self, command: str, timeout: float = 120):
        return ssh(self.net.ns, self.identity, self.user, str(self.agent.ip), 22, command, timeout)
