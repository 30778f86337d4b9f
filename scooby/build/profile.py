"""Where a base stage's time goes: mmdebstrap's output, each line stamped, and a summary.

Every line mmdebstrap (and apt, dpkg, the maintainer scripts and the hooks under it) prints
goes to the build log with the seconds since the stage's mmdebstrap started, e.g.
`[ 312.4] Setting up python3.13 (3.13.5-2) ...`. The time until the next line is charged to
what the current line started:

- a phase: each `I: ...` line of mmdebstrap (apt update, download, extract, essential
  install, each hook by its file name, the remaining packages, the tarball);
- a step: dpkg's `Setting up X`, `Processing triggers for Y`, and an initramfs generation
  (`update-initramfs: Generating ...`); `Unpacking`, `Preparing to unpack` and
  `Selecting previously unselected` lines end the step (unpacking is the phase's own time).

At the end of the stage the log gets a short table: each phase's wall time, the slowest
steps, and the CPU time (user + sys) of mmdebstrap's whole process tree, which under
qemu-user is mostly emulated work and, unlike wall time, hardly depends on what else runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TOP_STEPS = 12
_HOOK = re.compile(r"^running (--[a-z]+-hook|special hook)[^:]*: (\S+)")
_STEP = re.compile(
    r"^(?:Setting up (?P<setup>\S+)"
    r"|Processing triggers for (?P<trigger>\S+)"
    r"|update-initramfs: (?P<initramfs>Generating) )"
)
_UNPACK = re.compile(r"^(Unpacking |Preparing to unpack |Selecting previously unselected )")
# mmdebstrap's own phase messages, by their first words: a short name for the table.
_PHASES = {
    "running apt-get update": "apt update",
    "downloading packages": "download",
    "extracting archives": "extract",
    "installing essential packages": "essential install",
    "installing remaining packages": "install remaining",
    "cleaning package lists": "clean apt",
    "creating tarball": "tarball",
}


def phase_of(message: str) -> str | None:
    """The phase an `I: ` message of mmdebstrap starts, or None when it starts none."""
    hook = _HOOK.match(message)
    if hook:
        kind, what = hook.groups()
        name = Path(what).name if "/" in what else what
        return f"{kind.removeprefix('--')} {name}"
    for start, name in _PHASES.items():
        if message.startswith(start):
            return name
    return None


def step_of(line: str) -> str | None:
    """`setup X`, `trigger Y` or `initramfs`; "" when the line ends a step; None otherwise."""
    found = _STEP.match(line)
    if found:
        if found["setup"]:
            return f"setup {found['setup']}"
        if found["trigger"]:
            return f"trigger {found['trigger']}"
        return "initramfs"
    return "" if _UNPACK.match(line) else None


class Profile:
    """Stamps lines and charges the time between them to the current phase and step."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.start = self.last = clock()
        self.phase, self.step = "start", ""
        self.phases: dict[str, float] = {}
        self.steps: dict[str, float] = {}
        self.cpu = 0.0

    def _charge(self, now: float) -> None:
        spent = now - self.last
        self.phases[self.phase] = self.phases.get(self.phase, 0.0) + spent
        if self.step:
            self.steps[self.step] = self.steps.get(self.step, 0.0) + spent
        self.last = now

    def line(self, text: str) -> str:
        """The line as the log gets it; its time starts now."""
        now = self.clock()
        self._charge(now)
        body = text.rstrip("\n")
        if body.startswith("I: "):
            phase = phase_of(body[3:])
            if phase:
                self.phase, self.step = phase, ""
        else:
            step = step_of(body)
            if step is not None:
                self.step = step
        return f"[{now - self.start:6.1f}] {body}\n"

    def finish(self, cpu: float) -> None:
        """The process ended: charge the last line's time; `cpu` is its tree's (`reap`)."""
        self._charge(self.clock())
        self.cpu = cpu

    def table(self, title: str, top: int = TOP_STEPS) -> str:
        wall = self.last - self.start
        rows = [f"--- profile: {title}: wall {wall:.1f} s, CPU (user+sys) {self.cpu:.1f} s"]
        rows += [f"  {seconds:7.1f} s  {name}" for name, seconds in self.phases.items()]
        slow = sorted(self.steps.items(), key=lambda item: -item[1])[:top]
        if slow:
            rows.append(f"  slowest dpkg steps ({len(self.steps)} in all):")
            rows += [f"  {seconds:7.1f} s  {name}" for name, seconds in slow]
        return "\n".join(rows) + "\n"


def reap(proc: subprocess.Popen) -> float:
    """Wait for `proc` (setting its returncode); the CPU time (user + sys) of its own process
    tree, from os.wait4. Not RUSAGE_CHILDREN: that also counts what other threads of this
    process ran meanwhile (the agent base's finish runs beside the master base)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    """user + sys of every waited-for child process so far (mmdebstrap's tree, once it ends)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stamp(stream, log, profile: Profile) -> None:
    """Copy `stream` (a process's binary stdout) into `log` line by line, stamped, until it
    closes. Make `profile` before starting the process; `finish` it once the process ended."""
    for raw in iter(stream.readline, b""):
        log.write(profile.line(raw.decode("utf-8", "replace")))
        log.flush()


@contextlib.contextmanager
def timed(log, title: str) -> Iterator[None]:
    """One line in the log for a native step (untar, mksquashfs): wall and CPU time of the
    child processes it ran."""
    start, cpu = time.monotonic(), _children_cpu()
    yield
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu
    log.write(f"--- profile: {title}: wall {wall:.1f} s, CPU (user+sys) {cpu:.1f} s\n")
    log.flush()
