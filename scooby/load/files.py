"""Which files of the user's repository are the cluster's inputs (names only, nothing parsed)."""

from __future__ import annotations

from pathlib import Path

CONFIG = "config"
ENV = ".env"
AGENTS = "agents"
SERVER = "server"
AGENT_SUFFIX = ".agent"
# Documentation that lives beside the user's files and is not part of the cluster.
SERVER_IGNORED = {"README.md", ".gitkeep"}
AGENTS_IGNORED = {"README.md", ".gitkeep"}


def agent_files(repo: Path) -> list[Path]:
    folder = repo / AGENTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(AGENT_SUFFIX))


def stray_agent_files(repo: Path) -> list[Path]:
    """Files in agents/ that are not `.agent` files and not documentation."""
    folder = repo / AGENTS
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.endswith(AGENT_SUFFIX) and p.name not in AGENTS_IGNORED
    )


def server_files(repo: Path) -> tuple[str, ...]:
    """Repo-relative paths under server/, sorted; the folder's own README and .gitkeep left out."""
    folder = repo / SERVER
    if not folder.is_dir():
        return ()
    files = []
    for path in folder.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(folder)
        if len(rel.parts) == 1 and rel.name in SERVER_IGNORED or rel.name == ".gitkeep":
            continue
        files.append(path.relative_to(repo).as_posix())
    return tuple(sorted(files))
