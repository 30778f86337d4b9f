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
    HTML-escaped (these are config files). `shquote` quotes for sh, `yaml` for YAML: every
    user value goes through the one for the format it lands in."""
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
    env.filters["yaml"] = yaml_scalar
    env.filters.update(filters or {})
    return env


def yaml_scalar(value: Any) -> str:
    """`value` as a YAML string scalar that every reader reads back as the same string.

    Always double-quoted, as JSON writes it (JSON is YAML 1.2, and YAML 1.1 reads the same
    escapes): plain, an agent named `null`, `yes`, `0x10` or `1e3` is None, True or a number
    to PyYAML (cloud-init) or Go's YAML (K3S), each by its own rules.
    """
    import json

    return json.dumps(str(value))
