"""Diagnostics: the one-line `PATH:LINE: error: MESSAGE` contract every stage reports in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scooby.core.redact import redact, shown

KEY_LIMIT = 80  # characters of a key (a manifest's Kind/name) a message shows
MESSAGE_LIMIT = 1000

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    path: str  # relative to the repo, or "" when no file applies
    line: int | None
    message: str
    key: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.path or "scooby"
        if self.line is not None:
            where = f"{where}:{self.line}"
        key = self.key if self.key is None or len(self.key) <= KEY_LIMIT else shown(self.key)
        what = redact(f"{key}: {self.message}" if key else self.message)
        if len(what) > MESSAGE_LIMIT:  # whatever a rule quoted, never a huge value (cut after
            what = f"{what[: MESSAGE_LIMIT - 3]}..."  # redacting: a cut token is not found)
        # One line per problem, whatever a user's file put in a name or value.
        line = redact(f"{where}: {self.severity}: {what}")
        line = line.replace("\r", "\\r").replace("\n", "\\n")
        # A file name that is not UTF-8 still prints (escaped), never raises.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def error(path: str, line: int | None, message: str, key: str | None = None) -> Diagnostic:
    return Diagnostic(path, line, message, key, "error")


def warning(path: str, line: int | None, message: str, key: str | None = None) -> Diagnostic:
    return Diagnostic(path, line, message, key, "warning")


class ScoobyError(Exception):
    """A user error: carries every diagnostic found; the CLI prints them and exits 1."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(map(str, self.diagnostics)))


def errors_only(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]
