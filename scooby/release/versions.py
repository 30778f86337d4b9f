"""A release's version rules: which versions are tags, which commit and date an image's
version names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from scooby.util import git


def release_date(repo: Path, commit: str) -> str:
    """The commit's date, so a rebuilt release says the same; today without git."""
    if commit:
        when = git.git_output(repo, "show", "-s", "--format=%cs", commit)
        if when:
            return when
    return datetime.now(UTC).strftime("%Y-%m-%d")


def image_commit(repo: Path, image_version: str) -> str:
    """The commit the image was built from: its tag, or the `-g<hash>` in its version."""
    rev = image_version.removesuffix("-dirty")
    if "-g" in rev:
        rev = rev.rsplit("-g", 1)[1]
    elif not rev.startswith("v"):
        return ""
    return git.git_output(repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}") or ""


def is_tag(image_version: str) -> bool:
    """`v1.2.3`, not `v1.2.3-4-gabc1234`, `v1.2.3-dirty` or `0.0.0+unknown`."""
    return image_version.startswith("v") and not re.search(r"-g[0-9a-f]+|-dirty$|\+", image_version)
