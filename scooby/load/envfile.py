"""Read the shell-style `KEY=VALUE` files (config, .env, agents/*.agent) with their line numbers.

The original sourced these files with `sh`; python-dotenv's parser accepts the same
documented forms (quotes, comments, empty values, `export `, CRLF) and keeps each binding's
line, which every later error message needs. Variable interpolation is left off: none of
the documented examples use it, and a `$` in a value is kept literally.

`read_text` is how every user file (manifests and YAML/JSON too) is read: one error line
for an unreadable, non-UTF-8 or binary file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from scooby.core.errors import Diagnostic, error


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class EnvFile:
    path: str  # relative to the repo
    entries: tuple[Entry, ...]
    readable: bool = True  # False: unreadable or not text, so entries says nothing

    def values(self) -> dict[str, str]:
        return {e.key: e.value for e in self.entries}

    def lines(self) -> dict[str, int]:
        return {e.key: e.line for e in self.entries}


def decode(data: bytes, rel: str) -> tuple[str | None, list[Diagnostic]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [error(rel, line, "not valid UTF-8 text")]
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        return None, [error(rel, line, "contains a NUL byte: not a text file")]
    return text, []


def parse(text: str, rel: str) -> tuple[EnvFile, list[Diagnostic]]:
    entries: list[Entry] = []
    problems: list[Diagnostic] = []
    seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = _line(binding.original)
        if binding.error:
            problems.append(
                error(
                    rel,
                    line,
                    f"cannot parse {_snippet(binding.original.string)!r}: expected KEY=VALUE",
                )
            )
            continue
        if binding.key is None:
            continue  # blank line or comment
        if binding.value is None:
            problems.append(error(rel, line, "has no '=': expected KEY=VALUE", binding.key))
            continue
        if binding.key in seen:
            problems.append(
                error(rel, line, f"set twice (first on line {seen[binding.key]})", binding.key)
            )
            continue
        seen[binding.key] = line
        entries.append(Entry(binding.key, binding.value, line))
    return EnvFile(rel, tuple(entries)), problems


def read_text(path: Path, rel: str) -> tuple[str | None, list[Diagnostic]]:
    """A user's text file (env file, manifest, YAML/JSON): its text, or why it has none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [error(rel, None, f"cannot read: {exc.strerror}")]
    return decode(data, rel)


def load(path: Path, repo: Path) -> tuple[EnvFile, list[Diagnostic]]:
    rel = path.relative_to(repo).as_posix()
    text, problems = read_text(path, rel)
    if text is None:
        return EnvFile(rel, (), False), problems
    return parse(text, rel)


def _line(original) -> int:
    """python-dotenv counts blank lines before a binding as part of it: skip them."""
    raw = original.string
    return original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")


def _snippet(s: str) -> str:
    s = s.strip()
    return s if len(s) <= 40 else s[:37] + "..."
