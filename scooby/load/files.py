"""Which files of the user's repository are the cluster's inputs (names only, nothing parsed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from scooby.core.errors import Diagnostic, error
from scooby.core.redact import shown
from scooby.load import envfile

CONFIG = "config"
ENV = ".env"
AGENTS = "agents"
SERVER = "server"
AGENT_SUFFIX = ".agent"
# Documentation that lives beside the user's files and is not part of the cluster.
SERVER_IGNORED = {"README.md", ".gitkeep"}
AGENTS_IGNORED = {"README.md", ".gitkeep"}


def agent_files(repo: Path) -> list[Path]:
    """Everything named *.agent in agents/ but folders: a link or FIFO is reported, not read."""
    folder = repo / AGENTS
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.endswith(AGENT_SUFFIX) and not _is_real_dir(p)
    )


def _is_real_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


def stray_agent_files(repo: Path) -> list[Path]:
    """Files in agents/ that are not `.agent` files and not documentation."""
    folder = repo / AGENTS
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.is_symlink()
        and not p.name.endswith(AGENT_SUFFIX)
        and p.name not in AGENTS_IGNORED
    )


# server/ goes into the master's image as it is: only regular files and folders, of sizes
# an SD card holds; a link could copy `.env` or /proc/self/environ into the image.
SERVER_FILE_LIMIT = 1 << 30  # bytes per file (an air-gap image archive is ~200 MB)
SERVER_TOTAL_LIMIT = 4 << 30  # bytes in all
SERVER_COUNT_LIMIT = 100_000  # files


def server_files(repo: Path, problems: list[Diagnostic] | None = None) -> tuple[str, ...]:
    """Repo-relative paths under server/, sorted; the folder's own README and .gitkeep left
    out. Anything but regular files and folders goes into `problems`, and is left out."""
    problems = [] if problems is None else problems
    folder = repo / SERVER
    if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
        problems.append(error(SERVER, None, "must be a folder, not a link or a file"))
        return ()
    if not folder.is_dir():
        return ()
    files: list[str] = []
    total = 0
    for here, dirs, names in os.walk(folder):  # never follows a link
        dirs.sort()
        for name in sorted(dirs + names):
            path = Path(here, name)
            rel = path.relative_to(repo).as_posix()
            st = path.lstat()
            if problem := _server_name_problem(name):
                problems.append(error(_printable(rel), None, problem))
                if name in dirs:
                    dirs.remove(name)
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(error(rel, None, _server_kind(path, st.st_mode)))
                continue
            inner = path.relative_to(folder)
            if len(inner.parts) == 1 and name in SERVER_IGNORED or name == ".gitkeep":
                continue
            total += st.st_size
            if st.st_size > SERVER_FILE_LIMIT:
                problems.append(
                    error(rel, None, f"is {st.st_size:,} bytes; the limit is {SERVER_FILE_LIMIT:,}")
                )
            files.append(rel)
    if total > SERVER_TOTAL_LIMIT:
        problems.append(
            error(SERVER, None, f"holds {total:,} bytes; the limit is {SERVER_TOTAL_LIMIT:,}")
        )
    if len(files) > SERVER_COUNT_LIMIT:
        problems.append(
            error(SERVER, None, f"holds {len(files):,} files; the limit is {SERVER_COUNT_LIMIT:,}")
        )
    return tuple(sorted(files))


def _server_kind(path: Path, mode: int) -> str:
    what = envfile.kind_of(mode)
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        dangling = "" if path.exists() else " (dangling)"
        what = f"is a symbolic link to {shown(target)}{dangling}"
    return (
        f"{what}: server/ takes regular files and folders only "
        "(copy the file itself in; a link could carry a file from outside the repo into the image)"
    )


def _server_name_problem(name: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "has a line break or control character in its name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not valid UTF-8"
    return None


def _printable(rel: str) -> str:
    return rel.encode("utf-8", "backslashreplace").decode("utf-8")
