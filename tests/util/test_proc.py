"""scooby.util.proc.run: an interrupt returns only once the child has ended (the build removes
the child's work tree right after), with real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scooby.util import proc


def interrupted_child(tmp_path: Path, runner) -> int:
    """Run a child that ignores SIGINT and SIGTERM through `runner`, interrupt the caller after
    0.3 s (as Ctrl-C or the build's SIGTERM does: KeyboardInterrupt); the child's pid."""
    pidfile = tmp_path / "pid"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner(["sh", "-c", f"trap '' INT TERM; echo $$ > {pidfile}; exec sleep 30"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return int(pidfile.read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_an_interrupted_run_has_waited_for_its_child(tmp_path: Path):
    pid = interrupted_child(tmp_path, proc.run)
    assert gone(pid)  # ended and reaped: nothing of it writes any more


def test_subprocess_run_returns_before_its_child_is_reaped(tmp_path: Path):
    """Why proc.run exists: the standard library's run leaves the killed child unreaped."""
    pid = interrupted_child(tmp_path, subprocess.run)
    assert not gone(pid)  # still in the process table (a zombie at best)
    os.waitpid(pid, 0)


def test_run_is_subprocess_run_otherwise(tmp_path: Path):
    done = proc.run(["sh", "-c", "cat; echo err >&2; exit 3"], input="in", text=True,
                    capture_output=True)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (3, "in", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        proc.run(["false"], check=True)
    started = time.monotonic()
    assert proc.run(["true"]).returncode == 0 and time.monotonic() - started < 5
