"""The pinned K3S release against Scooby's dated table of K3S minors and their end of life
(schemas/k3s-releases.json, which says where each date comes from)."""

from __future__ import annotations

import json
import re
from datetime import date
from functools import cache
from typing import Any

from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import Master
from scooby.core.paths import SCHEMAS_DIR

RELEASES = SCHEMAS_DIR / "k3s-releases.json"


@cache
def releases() -> dict[str, Any]:
    return json.loads(RELEASES.read_text("utf-8"))


def minor(version: str) -> str | None:
    m = re.match(r"^v?(\d+)\.(\d+)\.", version)
    return f"{m[1]}.{m[2]}" if m else None


def end_of_life(version: str) -> tuple[date | None, str]:
    """(the end-of-life date, how it is known) of `version`'s minor; (None, "") if unknown."""
    want = minor(version)
    if want is None:
        return None, ""
    table = releases()["minors"]
    if want in table:
        return date.fromisoformat(table[want]["eol"]), table[want]["source"]
    key = tuple(map(int, want.split(".")))
    newer = sorted(m for m in table if tuple(map(int, m.split("."))) > key)
    if newer and key < tuple(map(int, max(table, key=_k).split("."))):
        # An older minor ends no later than the next one listed.
        nxt = min(newer, key=_k)
        return date.fromisoformat(table[nxt]["eol"]), f"no later than {nxt}"
    return None, ""


def _k(m: str) -> tuple[int, ...]:
    return tuple(map(int, m.split(".")))


def check_release(master: Master, today: date | None = None) -> list[Diagnostic]:
    today = today or date.today()
    src, version = master.source, master.k3s.version
    line = src.line("LC_K3S_VERSION")
    eol, how = end_of_life(version)
    reviewed = releases()["reviewed"]
    if eol is None:
        return [
            warning(
                src.path,
                line,
                f"K3S {minor(version)} is not in Scooby's release table (reviewed {reviewed}): "
                "check its end of life at docs.k3s.io before you rely on it",
                "LC_K3S_VERSION",
            )
        ]
    if eol < today:
        when = f"on {eol}" if not how.startswith("no later") else f"{how}, on {eol}"
        return [
            error(
                src.path,
                line,
                f"K3S {minor(version)} reached its end of life {when}: it gets no security "
                "fixes. Pin a supported release with `scooby k3s pin VERSION` "
                f"(schemas/k3s-releases.json, reviewed {reviewed})",
                "LC_K3S_VERSION",
            )
        ]
    return []
