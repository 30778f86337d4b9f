"""Which commit is this? `git describe` and friends, for a build's version and a release's date.

`describe` names a build after the commit it came from: `v1.2.3` on a tag, otherwise
`v1.2.3-4-gabc1234` (4 commits after the tag) or `0.0.0-4-gabc1234` (no tag yet), with
`-dirty` when tracked files have uncommitted changes. Without git or a repository it
falls back to `0.0.0+unknown` rather than failing a build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

UNKNOWN = "0.0.0+unknown"
TAG_PATTERN = "v[0-9]*"
ABBREV = 7

# A git hook or an outer tool may point git elsewhere; describe the repo we were given.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES")


def git_output(repo: Path, *args: str) -> str | None:
    """stdout of `git -C repo ARGS`, or None when git or the repository is missing."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            # safe.directory: CI containers and sudo builds check out as another user.
            # core.fsmonitor off: `--dirty` refreshes the index, which would run a command a
            # repository's config names there; Scooby never runs the repository's programs.
            ["git", "-c", f"safe.directory={repo}", "-c", "core.fsmonitor=false", "-C", str(repo),
             *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )  # fmt: skip
    except (FileNotFoundError, NotADirectoryError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def describe(repo: Path) -> str:
    """`v1.2.3`, `v1.2.3-4-gabc1234[-dirty]`, `0.0.0-4-gabc1234[-dirty]` or `0.0.0+unknown`."""
    repo = Path(repo).resolve()
    if not repo.is_dir():
        return UNKNOWN
    described = git_output(
        repo, "describe", "--tags", f"--match={TAG_PATTERN}", f"--abbrev={ABBREV}", "--dirty"
    )
    if described:
        return described
    # No version tag: describe the commit alone and count from the first commit, so
    # untagged builds still sort by history and name their commit.
    count = git_output(repo, "rev-list", "--count", "HEAD")
    short = git_output(repo, "rev-parse", f"--short={ABBREV}", "HEAD")
    if not count or not short:
        return UNKNOWN
    dirty = git_output(repo, "describe", "--always", "--dirty", f"--abbrev={ABBREV}") or ""
    return f"0.0.0-{count}-g{short}" + ("-dirty" if dirty.endswith("-dirty") else "")


def commit(repo: Path) -> str:
    """The full commit hash of HEAD, or "" without git."""
    return git_output(Path(repo).resolve(), "rev-parse", "HEAD") or ""
