"""SSH into the VMs from the test's network namespace, and waiting on them.

Each VM gets one SSH connection that every later command shares (OpenSSH's connection
multiplexing, ControlMaster): a command then costs a channel, not a key exchange and a PAM
login on an emulated CPU. The connection is opened once sshd says hello on its port (the
event the test waits for, polled every half second) and the first login through it is the
login check. Without it (not open yet, or gone) a command connects on its own, as before.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scooby.testqemu import qemuvm
from scooby.testqemu.phases import Failed

SSH_PORT, API_PORT = 2222, 6443  # the master's forwards, on the test namespace's loopback
OPTIONS = (
    "BatchMode=yes",
    "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null",
    "ConnectTimeout=15",
    "LogLevel=ERROR",
    "ServerAliveInterval=15",
)


def ssh_argv(ns: str, identity: Path | None, port: int, control: Path | None) -> list[str]:
    argv = ["ip", "netns", "exec", ns, "ssh", "-p", str(port)]
    if identity is not None:
        argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    for option in OPTIONS:
        argv += ["-o", option]
    if control is not None:  # use the shared connection if it is there, else connect
        argv += ["-o", f"ControlPath={control}", "-o", "ControlMaster=no"]
    return argv


def ssh(
    ns: str,
    identity: Path | None,
    user: str,
    host: str,
    port: int,
    command: str,
    timeout: float,
    control: Path | None = None,
    retry: bool = True,
):
    """`ssh USER@HOST:PORT COMMAND` from inside the test's network namespace."""
    argv = [*ssh_argv(ns, identity, port, control), f"{user}@{host}", command]
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
        if not retry or done.returncode != 255 or time.monotonic() + 5 > deadline:
            return done
        time.sleep(3)


@dataclass
class Link:
    """One VM's shared SSH connection: `ssh -M -N`, a process of the test's own."""

    ns: str
    identity: Path | None
    user: str
    host: str
    port: int
    control: Path  # the connection's socket
    proc: subprocess.Popen | None = None
    ended: bool = False  # the run is ending: no connection opens any more
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, command: str, timeout: float = 120, retry: bool = True):
        control = self.control if self.up() else None
        return ssh(self.ns, self.identity, self.user, self.host, self.port, command, timeout,
                   control, retry)  # fmt: skip

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.control.exists()

    def open(self, deadline: float) -> str:
        """Log in and keep the connection: "" once its socket is there, else why not."""
        self.close()
        argv = ssh_argv(self.ns, self.identity, self.port, None)
        argv += ["-M", "-N", "-o", f"ControlPath={self.control}", "-o", "ControlPersist=no"]
        with self.lock:
            if self.ended:
                return "the run is ending"
            self.proc = subprocess.Popen(
                [*argv, f"{self.user}@{self.host}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # Ctrl-C reaches the test, which closes it
            )
        while time.monotonic() < deadline:
            if self.control.exists():
                return ""
            with self.lock:
                proc = self.proc
                if proc is None:
                    return "closed"
                if proc.poll() is not None:
                    return proc.stderr.read().strip() or f"ssh exited {proc.returncode}"
            time.sleep(0.1)
        self.close()
        return "ssh timed out"

    def end(self) -> None:
        with self.lock:
            self.ended = True
        self.close()

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # ssh removes its socket; commands through it end
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        self.proc = None
        self.control.unlink(missing_ok=True)


def says_ssh(ns: str, host: str, port: int) -> bool:
    """Whether an SSH server greets on host:port (inside `ns`) right now."""
    from scooby.testqemu.bootrom import inside

    with inside(ns), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            return s.recv(64).startswith(b"SSH-")
        except OSError:  # refused, reset, timed out, or QEMU's forward closing at once
            return False


def wait_ssh(link: Link, deadline: float) -> None:
    """sshd greets (polled every 0.5 s), then the key logs in and the connection stays."""
    last = "sshd never greeted"
    while time.monotonic() < deadline:
        if says_ssh(link.ns, link.host, link.port):
            last = link.open(deadline)
            if not last:
                done = link.run("true", timeout=max(deadline - time.monotonic(), 1))
                if done.returncode == 0:
                    return
                last = (done.stderr or done.stdout).strip()
        time.sleep(0.5)
    raise TimeoutError(f"no SSH login: {last}")


def check(run, command: str, deadline: float) -> str:
    done = run(command, timeout=deadline - time.monotonic())
    if done.returncode != 0:
        raise Failed(f"`{command}` exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")
    return done.stdout


def console_wait(vm, needle: str, deadline: float, since: int = 0) -> float:
    try:
        return vm.wait_for(needle, deadline, since)
    except (TimeoutError, qemuvm.VMExited) as exc:
        raise Failed(f"{exc}; console ends: {vm.tail(8)!r}") from None
