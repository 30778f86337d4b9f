"""Rules over the files a user commits, read as text: agent-like files that are never read,
secrets, directives that run a program when a daemon parses its config, a tracked `.env`.

Split from `rules` (the cross-file rules over loaded values): these read the repository's
files themselves, whatever loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from scooby.core.errors import Diagnostic, error
from scooby.core.redact import SECRETS
from scooby.load import envfile, reader

SECRET_SCAN_LIMIT = 1 << 20  # bytes; larger files under server/ are binaries or archives
# `KEY=value`, `key = value` or YAML's `key: value`: the KEY a secret is assigned to.
_KEY_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]{0,63})\s*(?:=|:(?=\s|$))")

# Directives that make a daemon's config parser run a program. Render checks configs with the
# daemons' own parsers on the build host, so none may come from the repo: they are refused.
EXECUTING = (
    (re.compile(r"^\s*(conf-script|dhcp-script|dhcp-luascript)\s*(=|$)"), "dnsmasq"),
    (re.compile(r"^\s*(include_shell)\b"), "lighttpd"),
)


# --- agents/: files that look like agents but are never read --------------------------------


def stray_agent_files(repo: Path) -> Iterator[Diagnostic]:
    for path in reader.stray_agent_files(repo):
        rel = path.relative_to(repo).as_posix()
        parsed = _parse_quietly(path, rel)
        keys = [e for e in parsed if e.key.startswith("AGENT_")]
        if keys:
            yield error(
                rel,
                keys[0].line,
                f"this file holds agent settings but is not read: only *.agent files are; "
                f"rename it to {rel}.agent",
                keys[0].key,
            )


def _parse_quietly(path: Path, rel: str) -> tuple[envfile.Entry, ...]:
    try:
        data = path.read_bytes()[:SECRET_SCAN_LIMIT]
    except OSError:
        return ()
    text, _ = envfile.decode(data, rel)
    if text is None:
        return ()
    return envfile.parse(text, rel)[0].entries


# --- secrets in committed files --------------------------------------------------------------


def committed_files(repo: Path) -> Iterator[Path]:
    """`config`, everything in agents/ and under server/: what the user commits."""
    if (repo / reader.CONFIG).is_file():
        yield repo / reader.CONFIG
    for folder in (reader.AGENTS, reader.SERVER):
        base = repo / folder
        if base.is_dir() and not base.is_symlink():  # a linked folder is refused by load
            yield from sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())


def secrets(repo: Path) -> list[Diagnostic]:
    out = []
    for path in committed_files(repo):
        rel = path.relative_to(repo).as_posix()
        out += scan_text(_text(path), rel)
    return out


def _text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(SECRET_SCAN_LIMIT)
    except OSError:
        return ""
    if b"\x00" in data:
        return ""  # a binary: nothing a person typed
    return data.decode("utf-8", errors="replace")


def scan_text(text: str, rel: str) -> list[Diagnostic]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in SECRETS:
            if pattern.search(line):
                assignment = _KEY_ASSIGNMENT.match(line)
                out.append(
                    error(
                        rel,
                        number,
                        f"looks like {what}: secrets never go in committed files; "
                        "put them in .env (git-ignored) or a CI repository secret",
                        assignment.group(1) if assignment else None,
                    )
                )
                break
    return out


# --- directives that execute code, and a tracked .env ----------------------------------------


def executing(repo: Path) -> list[Diagnostic]:
    """server/ files with a directive that runs a program when its config is parsed.

    Every file is scanned, not only dnsmasq.d and lighttpd: a config can include any file.
    """
    out = []
    for path in committed_files(repo):
        rel = path.relative_to(repo).as_posix()
        if not rel.startswith(f"{reader.SERVER}/"):
            continue
        for number, line in enumerate(_text(path).splitlines(), start=1):
            for pattern, daemon in EXECUTING:
                if m := pattern.match(line):
                    out.append(
                        error(
                            rel,
                            number,
                            f"{m.group(1)} runs a program when {daemon} reads its configuration; "
                            "Scooby checks configurations with the daemons' own parsers on the "
                            "build host, so it refuses them (see docs/security.md)",
                        )
                    )
    return out


def tracked_env(repo: Path) -> list[Diagnostic]:
    """`.env` committed to git: every secret in it is published with the repository."""
    import shutil
    import subprocess

    if not (repo / reader.ENV).exists() or shutil.which("git") is None:
        return []

    def git(*args: str) -> subprocess.CompletedProcess:
        # no fsmonitor: a repository's own git config must not run a program here
        cmd = ["git", "-c", "core.fsmonitor=false", "-C", str(repo), *args]
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False)

    try:
        # Only a repository of its own (a Scooby repo nested in another is an example).
        prefix = git("rev-parse", "--show-prefix")
        if prefix.returncode != 0 or prefix.stdout.strip():
            return []
        proc = git("ls-files", "-z", "--", reader.ENV)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode == 0 and proc.stdout.strip(b"\0"):
        return [
            error(
                reader.ENV,
                None,
                "is tracked by git: its secrets are in the repository's history; "
                "`git rm --cached .env`, then rotate every secret in it",
            )
        ]
    return []
