"""SSH into the VMs from the test's network namespace, and waiting on them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from scooby.testqemu import qemuvm
from scooby.testqemu.phases import Failed

SSH_PORT, API_PORT = 2222, 6443  # the master's forwards, on the test namespace's loopback


def ssh(
    ns: str, identity: Path | None, user: str, host: str, port: int, command: str, timeout: float
):
    """`ssh USER@HOST:PORT COMMAND` from inside the test's network namespace."""
    argv = ["ip", "netns", "exec", ns, "ssh", "-p", str(port)]
    if identity is not None:
        argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "ConnectTimeout=15",
        "LogLevel=ERROR",
        "ServerAliveInterval=15",
    ):
        argv += ["-o", option]
    argv += [f"{user}@{host}", command]
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


def check(run, command: str, deadline: float) -> str:
    done = run(command, timeout=deadline - time.monotonic())
    if done.returncode != 0:
        raise Failed(f"`{command}` exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")
    return done.stdout


def wait_ssh(run, deadline: float) -> None:
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


def console_wait(vm, needle: str, deadline: float, since: int = 0) -> float:
    try:
        return vm.wait_for(needle, deadline, since)
    except (TimeoutError, qemuvm.VMExited) as exc:
        raise Failed(f"{exc}; console ends: {vm.tail(8)!r}") from None
