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
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from scooby.core.errors import Diagnostic, error
from scooby.core.redact import SECRETS, shown


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


def parse(text: str, rel: str, secret: bool = False) -> tuple[EnvFile, list[Diagnostic]]:
    """`secret`: a file of secrets (.env), whose text no message may quote; so is any file
    with a private key pasted in (its lines are base64 words a message would echo)."""
    secret = secret or bool(SECRETS[0][1].search(text))
    entries: list[Entry] = []
    problems: list[Diagnostic] = []
    seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = _line(binding.original)
        if binding.error:
            what = "this line" if secret else shown(binding.original.string.strip(), 40)
            problems.append(error(rel, line, f"cannot parse {what}: expected KEY=VALUE"))
            continue
        if binding.key is None:
            continue  # blank line or comment
        if binding.value is None:  # a lone word: in a secrets file, maybe the secret itself
            key = None if secret or not _IDENTIFIER.fullmatch(binding.key) else binding.key
            problems.append(error(rel, line, "has no '=': expected KEY=VALUE", key))
            continue
        if binding.key in seen:
            problems.append(
                error(rel, line, f"set twice (first on line {seen[binding.key]})", binding.key)
            )
            continue
        seen[binding.key] = line
        entries.append(Entry(binding.key, binding.value, line))
    return EnvFile(rel, tuple(entries)), problems


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # a key as shells write them
ENV_LIMIT = 64 << 10  # bytes: a KEY=VALUE file is a few dozen short lines
TEXT_LIMIT = 1 << 20  # bytes: a manifest (etcd refuses objects over 1.5 MiB anyway)


def read_bytes(
    path: Path, rel: str, limit: int, follow: bool = False
) -> tuple[bytes | None, list[Diagnostic]]:
    """A user's file, if it is a regular file of at most `limit` bytes.

    Never opens a FIFO (it would hang), a device (`/dev/zero` never ends) or, unless
    `follow`, a symbolic link (it could point at another user's file or `/proc`).
    """
    try:
        st = path.stat() if follow else path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return None, [error(rel, None, f"{kind_of(st.st_mode)}: only regular files are read")]
        if st.st_size > limit:
            return None, [error(rel, None, f"is {st.st_size:,} bytes; the limit is {limit:,}")]
        flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the stat
                return None, [error(rel, None, "is no longer a regular file")]
            data = f.read(limit + 1)
    except OSError as exc:
        return None, [error(rel, None, f"cannot read: {exc.strerror or exc}")]
    if len(data) > limit:
        return None, [error(rel, None, f"is more than {limit:,} bytes; the limit")]
    return data, []


def kind_of(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, what in (
        (stat.S_ISLNK, "is a symbolic link"),
        (stat.S_ISDIR, "is a directory"),
        (stat.S_ISFIFO, "is a FIFO (named pipe)"),
        (stat.S_ISSOCK, "is a socket"),
        (stat.S_ISCHR, "is a character device"),
        (stat.S_ISBLK, "is a block device"),
    ):
        if test(mode):
            return what
    return "is not a regular file"


def read_text(
    path: Path, rel: str, limit: int = TEXT_LIMIT, follow: bool = False
) -> tuple[str | None, list[Diagnostic]]:
    """A user's text file (env file, manifest, YAML/JSON): its text, or why it has none."""
    data, problems = read_bytes(path, rel, limit, follow)
    if data is None:
        return None, problems
    return decode(data, rel)


def load(path: Path, repo: Path, secret: bool = False) -> tuple[EnvFile, list[Diagnostic]]:
    """`secret` (.env): a link is followed (to a file kept outside the repo) and no message
    quotes the file's text."""
    rel = path.relative_to(repo).as_posix()
    text, problems = read_text(path, rel, ENV_LIMIT, follow=secret)
    if text is None:
        return EnvFile(rel, (), False), problems
    return parse(text, rel, secret)


def _line(original) -> int:
    """python-dotenv counts blank lines before a binding as part of it: skip them."""
    raw = original.string
    return original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
