"""Named phases, each with its own timeout and measured time, and their table."""

from __future__ import annotations

import shlex
import subprocess
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


@dataclass
class Phases:
    phases: list[Phase] = field(default_factory=list)
    echo: Callable[[Phase], None] = lambda phase: None

    def status(self, name: str) -> str:
        return next((p.status for p in self.phases if p.name == name), NOT_RUN)

    def run(
        self,
        name: str,
        timeout: float,
        check: Callable[[float], str | Skip | None],
        needs: tuple[str, ...] = (),
    ) -> Phase:
        """Run `check(deadline)`: passed, FAILED (an exception, or over its timeout), SKIPPED
        (it returned Skip, or a phase it needs was skipped), or not run (one it needs failed)."""
        phase = Phase(name, timeout)
        self.phases.append(phase)
        for need in needs:
            found = next((p for p in self.phases if p.name == need), None)
            if found is not None and found.status == SKIPPED:
                phase.status, phase.detail = SKIPPED, found.detail
                break
            if found is None or found.status != PASSED:
                phase.detail = f"needs {need} ({found.status if found else NOT_RUN})"
                break
        else:
            start = time.monotonic()
            try:
                result = check(start + timeout)
            except Exception as exc:  # noqa: BLE001 - any failure is this phase's result
                phase.status, phase.detail = FAILED, one_line(exc)
            else:
                if isinstance(result, Skip):
                    phase.status, phase.detail = SKIPPED, result.reason
                else:
                    phase.status, phase.detail = PASSED, result or ""
            phase.seconds = time.monotonic() - start
            if phase.status == PASSED and phase.seconds > timeout:
                phase.status = FAILED
                phase.detail = f"took {phase.seconds:.0f} s, over its {timeout:.0f} s timeout"
        self.echo(phase)
        return phase

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
    total = sum(p.seconds for p in phases)
    t.caption = f"total {total:.0f} s · " + " · ".join(
        f"{sum(p.status == s for p in phases)} {s}" for s in (PASSED, FAILED, SKIPPED, NOT_RUN)
    )
    return t
