"""Shared parts of the hostile-input suite: repositories, planted secrets, and the checks
every run must pass whatever its input (one-line errors, exit 0 or 1, no traceback, no hang,
bounded memory, nothing touched outside --out, no secret in any output)."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WILLOW = """\
AGENT_ETHERNET=b8:27:eb:81:1a:52
AGENT_IP=192.168.64.65
AGENT_RANCHER_PART_UUID=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1
AGENT_PXE_ID=c6811a52
AGENT_K3S_ARGS=
"""

# Secrets planted in inputs: none may appear in any output. Built from parts so this file
# does not trip the secret scans itself.
GITHUB_TOKEN = "ghp_" + "Zq9" * 12
AWS_KEY_ID = "AKIA" + "QWERTYUIOPASDFGH"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH " + "PRIVATE KEY-----"
)
PRIVATE_KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
SECRETS = (GITHUB_TOKEN, AWS_KEY_ID, PRIVATE_KEY_BODY, "Zq9Zq9Zq9Zq9")

TIMEOUT = 120  # seconds per run: far above any honest run; a hang fails, never blocks CI
MEMORY = 2 << 30  # bytes of address space per run

# `PATH[:LINE]: error|warning: ...`, or the closing count, or a command's own status lines.
DIAGNOSTIC = re.compile(r"^[^\s:][^:]*(:\d+)?: (error|warning): \S.*$")
SUMMARY = re.compile(r"^\d+ error\(s\), \d+ warning\(s\)$")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    args: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def scooby(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Run:
    """`python -m scooby ARGS` from this checkout, bounded in time and memory."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LC_", "AWS_", "GITHUB_", "SCOOBY_")) and k != "PYTHONPATH"
    }
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "scooby", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=TIMEOUT,
        preexec_fn=_limits,
        stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, list(args))


def assert_well_behaved(run: Run) -> None:
    """What holds for every input: exit 0 or 1, each error one line, nothing leaked."""
    assert run.returncode in (0, 1), (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "internal error" not in run.output, run.output[-3000:]
    for line in run.stderr.splitlines():
        if " error: " in line or " warning: " in line or line.startswith("scooby: "):
            assert DIAGNOSTIC.match(line) or line.startswith("scooby: "), line
        assert len(line) < 2000, f"a message of {len(line)} characters"
    for secret in SECRETS:
        assert secret not in run.output, f"secret {secret[:8]}... printed"


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry under root (not following links) with its kind, mode and content digest."""
    seen: dict[str, tuple] = {}
    for here, dirs, names in os.walk(root):
        rel_here = Path(here).relative_to(root)
        dirs[:] = [d for d in dirs if (rel_here / d).as_posix() not in skip]
        for name in dirs + names:
            path = Path(here, name)
            rel = path.relative_to(root).as_posix()
            if rel in skip:
                continue
            st = path.lstat()
            digest = None
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_symlink():
                digest = os.readlink(path)
            seen[rel] = (st.st_mode, digest)
    return seen
