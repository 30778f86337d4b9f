"""What every checker in scooby.render.checks shares: the trees of a render, on-master paths
moved under a root, running a tool, and its words as diagnostics."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from scooby.core.errors import Diagnostic, error
from scooby.util.tools import not_installed


def trees(out: Path) -> list[Path]:
    """The root trees in a render: the master's and each agent's private layer."""
    agents = out / "agents"
    return [out / "master", *(sorted(agents.iterdir()) if agents.is_dir() else [])]


def rebase(text: str, root: Path, paths: Iterable[str]) -> str:
    """`text` with each absolute on-master path in `paths` moved under `root`.

    Used to run a daemon's checker (or the daemon itself, in the live test) on this host
    against the master's configuration. Only whole path components match.
    """
    for path in sorted(paths, key=len, reverse=True):
        text = re.sub(
            rf"(?<![^\s=\"'(,:]){re.escape(path)}(?=[/\"'\s,:)]|$)",
            lambda _m, p=path: f"{root}{p}",
            text,
            flags=re.MULTILINE,
        )
    return text


def missing_tool(tool: str, what: str) -> list[Diagnostic]:
    if shutil.which(tool):
        return []
    return [
        error("", None, f"cannot check {what}: {not_installed(tool)}; or render with --no-check")
    ]


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # From "/": a relative include in a config finds nothing of the repository's.
    return subprocess.run(
        cmd,
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def grouped(files: Iterable[Path]) -> dict[bytes, list[Path]]:
    """Files by content digest: each distinct content needs checking once."""
    groups: dict[bytes, list[Path]] = {}
    for f in files:
        groups.setdefault(hashlib.sha256(f.read_bytes()).digest(), []).append(f)
    return groups


def each(
    out: Path, paths: list[Path], line: int | None, message: str, tool: str
) -> list[Diagnostic]:
    message = message.replace(f"{out}/", "")  # paths in the tools' words, OUT-relative too
    return [error(p.relative_to(out).as_posix(), line, f"{tool}: {message}") for p in paths]


def output(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(s for s in (proc.stderr.strip(), proc.stdout.strip()) if s)
