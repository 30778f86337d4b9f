"""The one way Scooby says that a host tool is missing, naming its Debian package from the
one list of them, scripts/packages.txt (`scooby doctor` checks the whole list)."""

from __future__ import annotations

import shutil
from functools import cache


@cache
def _packages() -> dict[str, str]:
    """program -> the Debian package that gives it, from scripts/packages.txt."""
    from scooby.util.doctor import read_packages

    return {item: p.name for p in read_packages() for item in p.gives if not item.startswith("/")}


def missing(tools: tuple[str, ...] | list[str]) -> list[str]:
    """The tools not on PATH, in the given order."""
    return [t for t in tools if shutil.which(t) is None]


def not_installed(tool: str) -> str:
    """`TOOL` is not installed (Debian package PKG, see scripts/packages.txt)."""
    package = _packages().get(tool, tool)
    return f"`{tool}` is not installed (Debian package {package}, see scripts/packages.txt)"
