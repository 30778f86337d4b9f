"""Named phases, each with its own timeout and measured time, and their table.

A plan's phases run each in a thread of its own as soon as the phases it waits for have
finished (`Phases.run_plan`): checks that don't depend on each other overlap (the master's
checks while the agent boots). The table keeps the plan's order whatever the finishing order.
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "FAILED", "SKIPPED", "not run"


@dataclass
class Skip:
    """A phase's result when it does not apply to this image: reported, never passed."""

    reason: str


class Failed(AssertionError):
    pass


@dataclass
class Phase:
    name: str
    timeout: float
    status: str = NOT_RUN
    seconds: float = 0.0
    detail: str = ""
    start: float = 0.0  # seconds after the run's first phase started (phases overlap)


Check = Callable[[float], "str | Skip | None"]


@dataclass
class Step:
    """A phase of a plan. It starts once every phase named in `needs` and `after` has
    finished, and runs only if those in `needs` passed. `after=None`: after the step before
    it in the plan, so a plan of such steps runs one phase at a time."""

    name: str
    timeout: float
    check: Check
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] | None = None


@dataclass
class Phases:
    phases: list[Phase] = field(default_factory=list)
    echo: Callable[[Phase], None] = lambda phase: None
    running: dict[str, float] = field(default_factory=dict)  # name: time.monotonic() start
    frozen: bool = False  # interrupted: results that come in later are not recorded
    began: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self, name: str) -> str:
        return next((p.status for p in self.phases if p.name == name), NOT_RUN)

    def run(self, name: str, timeout: float, check: Check, needs: tuple[str, ...] = ()) -> Phase:
        """Run `check(deadline)`: passed, FAILED (an exception, or over its timeout), SKIPPED
        (it returned Skip, or a phase it needs was skipped), or not run (one it needs failed)."""
        phase = self.add(name, timeout)
        self.execute(phase, check, needs)
        return phase

    def add(self, name: str, timeout: float) -> Phase:
        phase = Phase(name, timeout)
        self.phases.append(phase)
        return phase

    def execute(self, phase: Phase, check: Check, needs: tuple[str, ...]) -> None:
        blocked = self.blocked(needs)
        if blocked is not None:
            with self.lock:
                if self.frozen:
                    return
                phase.status, phase.detail = blocked
            self.echo(phase)
            return
        start = time.monotonic()
        with self.lock:
            self.began = start if self.began is None else self.began
            phase.start = start - self.began
            self.running[phase.name] = start
        try:
            result = check(start + phase.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure is this phase's result
            status, detail = FAILED, one_line(exc)
        else:
            status, detail = (
                (SKIPPED, result.reason) if isinstance(result, Skip) else (PASSED, result or "")
            )
        seconds = time.monotonic() - start
        if status == PASSED and seconds > phase.timeout:
            status, detail = FAILED, f"took {seconds:.0f} s, over its {phase.timeout:.0f} s timeout"
        with self.lock:
            if self.frozen:
                return  # the run was interrupted: the table already says so
            self.running.pop(phase.name, None)
            phase.status, phase.detail, phase.seconds = status, detail, seconds
        self.echo(phase)

    def blocked(self, needs: tuple[str, ...]) -> tuple[str, str] | None:
        """(SKIPPED, why) after a skipped need, (not run, why) after one that did not pass."""
        for need in needs:
            found = next((p for p in self.phases if p.name == need), None)
            if found is not None and found.status == SKIPPED:
                return SKIPPED, found.detail
            if found is None or found.status != PASSED:
                return NOT_RUN, f"needs {need} ({found.status if found else NOT_RUN})"
        return None

    def run_plan(self, steps: list[Step]) -> None:
        """Every step, each in a thread of its own once what it waits for has finished.
        The calling thread only schedules, so a signal handler's exception reaches it."""
        waits, before = {}, ()
        for step in steps:
            waits[step.name] = set(step.needs) | set(before if step.after is None else step.after)
            before = (step.name,)
        unknown = set().union(*waits.values()) - set(waits)
        if unknown:
            raise ValueError(f"the plan waits for phases it does not have: {sorted(unknown)}")
        phases = {step.name: self.add(step.name, step.timeout) for step in steps}
        finished: queue.Queue[str] = queue.Queue()
        pending, done = list(steps), set()

        def work(step: Step) -> None:
            try:
                self.execute(phases[step.name], step.check, step.needs)
            finally:
                finished.put(step.name)

        while len(done) < len(steps):
            for step in [s for s in pending if waits[s.name] <= done]:
                pending.remove(step)
                threading.Thread(target=work, args=(step,), name=step.name, daemon=True).start()
            if len(steps) - len(pending) == len(done):  # none running, none can start
                raise ValueError(f"the plan's phases wait for each other: {pending}")
            try:
                done.add(finished.get(timeout=0.5))  # short: signals are handled in between
            except queue.Empty:
                continue

    def interrupt(self, why: str) -> None:
        """Freeze the table: each running phase FAILED with `why`; nothing is recorded after."""
        with self.lock:
            self.frozen = True
            now = time.monotonic()
            for phase in self.phases:
                if phase.name in self.running:
                    phase.status, phase.detail = FAILED, why
                    phase.seconds = now - self.running[phase.name]

    @property
    def ok(self) -> bool:
        return all(p.status in (PASSED, SKIPPED) for p in self.phases)


def one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, subprocess.CalledProcessError):
        out = (exc.stderr or exc.stdout or "").strip()
        text = f"`{shlex.join(map(str, exc.cmd))}` exited {exc.returncode}: {out[-400:]}"
    if isinstance(exc, TimeoutError | subprocess.TimeoutExpired) and not str(exc):
        text = "timed out"
    return " ".join(text.split())


def table(phases: list[Phase], title: str = "scooby test-qemu"):
    from rich.table import Table

    colour = {PASSED: "green", FAILED: "bold red", SKIPPED: "yellow", NOT_RUN: "dim"}
    t = Table(title=title)
    for column, justify in (("phase", "left"), ("result", "left"), ("time", "right")):
        t.add_column(column, justify=justify)
    t.add_column("timeout", justify="right")
    t.add_column("detail", overflow="fold")
    for p in phases:
        t.add_row(
            p.name,
            f"[{colour[p.status]}]{p.status}[/]",
            f"{p.seconds:.1f} s" if p.status != NOT_RUN else "-",
            f"{p.timeout:.0f} s",
            p.detail,
        )
    # The run's wall time: phases overlap, so this is not the sum of their times.
    total = max((p.start + p.seconds for p in phases), default=0.0)
    t.caption = f"total {total:.0f} s · " + " · ".join(
        f"{sum(p.status == s for p in phases)} {s}" for s in (PASSED, FAILED, SKIPPED, NOT_RUN)
    )
    return t
