"""The one Jinja2 environment every template goes through (templates/**: the rendered tree,
the image's release file, the release notes), so they share one whitespace policy."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any


def environment(root: Path, filters: dict[str, Callable[..., Any]] | None = None):
    """Templates under ROOT: undefined names are errors, a block tag's own line and
    indentation vanish (trim_blocks, lstrip_blocks), a file's last newline stays, nothing is
    HTML-escaped (these are config files). `shquote` quotes for sh."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["shquote"] = shlex.quote
    env.filters.update(filters or {})
    return env
