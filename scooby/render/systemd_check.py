"""`systemd-analyze verify` over every unit and drop-in of a render (for render.checks)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import Diagnostic
from scooby.render.checktools import each, missing_tool, output, run, trees

IMAGE_EXECUTABLES = frozenset({layout.K3S_BINARY, "/sbin/fake-hwclock"})  # K3S; fake-hwclock
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".mount", ".path", ".target", ".automount")
SYSTEMD_FILE_LINE = re.compile(r"^(/\S+?):(\d+): (.*)$")
SYSTEMD_UNIT_LINE = re.compile(r"^([\w@.\\:-]+\.[a-z]+): (.*)$")
SYSTEMD_NO_COMMAND = re.compile(r"Command (\S+) is not executable: No such file or directory")


UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def unit_files(tree: Path) -> list[Path]:
    """Units and drop-ins in a tree's systemd unit directories."""
    found = []
    for unit_dir in (tree / d for d in UNIT_DIRS):
        if not unit_dir.is_dir():
            continue
        for path in sorted(unit_dir.rglob("*")):
            if not path.is_file():
                continue
            in_dropin = path.parent.name.endswith(".d")
            if path.name.endswith(UNIT_SUFFIXES) or (in_dropin and path.name.endswith(".conf")):
                found.append(path)
    return found


def systemd(out: Path, tmp: Path) -> list[Diagnostic]:
    # Trees whose units are the same are verified once. Agents' units differ only by the
    # agent's name (in comments and descriptions), which is plain hostname text and cannot
    # change what systemd makes of a unit; so names are masked before comparing, and a unit
    # that differs in any other way is verified with its own agent.
    groups: dict[tuple, list[Path]] = {}
    for tree in trees(out):
        units = unit_files(tree)
        if units:
            key = tuple((u.relative_to(tree).as_posix(), _masked(tree, u)) for u in units)
            groups.setdefault(key, []).append(tree)
    if not groups:
        return []
    if missing := missing_tool("systemd-analyze", "systemd units"):
        return missing
    found = []
    for n, same in enumerate(groups.values()):
        found += _verify_units(out, same, tmp / str(n))
    return found


def _masked(tree: Path, unit: Path) -> bytes:
    data = unit.read_bytes()
    if tree.parent.name != "agents":
        return data
    for name in sorted({tree.name, tree.name.upper()}, key=len, reverse=True):
        data = data.replace(name.encode(), b"\0AGENT\0")
    return data


def _verify_units(out: Path, same: list[Path], unit_dir: Path) -> list[Diagnostic]:
    """`systemd-analyze verify` the units of the first tree, reported for each tree."""
    tree = same[0]
    copies: dict[str, Path] = {}  # copied file -> the rendered file, relative to the tree
    names: list[str] = []
    for unit in unit_files(tree):
        dropin = not unit.name.endswith(UNIT_SUFFIXES)
        target = unit_dir / (f"{unit.parent.name}/{unit.name}" if dropin else unit.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(unit, target)
        copies[str(target)] = unit.relative_to(tree)
        name = unit.parent.name.removesuffix(".d") if dropin else unit.name
        # A template is verified through an instance of it.
        name = name.replace("@.", "@scooby-check.")
        if name not in names:
            names.append(name)
    proc = run(
        ["systemd-analyze", "verify", "--man=no", "--recursive-errors=yes", *names],
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"},
    )
    if proc.returncode == 0:
        return []
    by_unit = {p.name: rel for p, rel in ((Path(k), v) for k, v in copies.items())}
    found = []
    for text in output(proc).splitlines():
        rel, line, message = _systemd_where(text, copies, by_unit)
        command = SYSTEMD_NO_COMMAND.search(message)
        if command and _provided(command.group(1), same):
            continue  # rendered into the tree, or shipped by the image: not on this host
        if rel is None:
            continue  # about the host's own units, not ours
        found += each(out, [t / rel for t in same], line, message, "systemd-analyze verify")
    if not found and not output(proc):  # failed without a word: report it, do not guess
        found = each(out, [t / "etc/systemd/system" for t in same], None, "failed", "verify")
    return found


def _systemd_where(
    text: str, copies: dict[str, Path], by_unit: dict[str, Path]
) -> tuple[Path | None, int | None, str]:
    m = SYSTEMD_FILE_LINE.match(text)
    if m:
        return copies.get(m.group(1)), int(m.group(2)), m.group(3)
    m = SYSTEMD_UNIT_LINE.match(text)
    if m:
        unit = m.group(1).replace("@scooby-check.", "@.")
        return by_unit.get(unit), None, m.group(2)
    return None, None, text


def _provided(command: str, same: list[Path]) -> bool:
    if command in IMAGE_EXECUTABLES:
        return True
    rendered = same[0] / command.lstrip("/")
    return rendered.is_file() and os.access(rendered, os.X_OK)
