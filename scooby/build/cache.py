"""Named, cached build stages: each output lives under `.cache/` keyed by a hash of its inputs.

A stage's key hashes everything that can change its output: the settings it reads, the
contents of the template files it uses and the version of the tool that makes it. The
output is written beside its final name and renamed into place, so an interrupted stage
never leaves something that looks cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = ".cache"
# Bump when a stage's code changes its output in a way its inputs don't show.
FORMAT = 1
# Outputs kept per stage (see Cache.commit): an agent base is about 0.8 GB (docs/build.md).
KEPT_VERSIONS = 2


def digest_files(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """sha256 of every file under the given files/directories, by root-relative path."""
    out: dict[str, str] = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            rel = file.relative_to(root).as_posix()
            mode = "x" if os.access(file, os.X_OK) else "-"
            out[rel] = mode + hashlib.sha256(file.read_bytes()).hexdigest()
    return out


def key(stage: str, inputs: dict) -> str:
    """A short, stable hash of a stage's name and its (JSON-serialisable) inputs."""
    blob = json.dumps({"stage": stage, "format": FORMAT, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cache:
    root: Path  # REPO/.cache

    @classmethod
    def of(cls, repo: Path) -> Cache:
        return cls(repo / CACHE_DIR)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @contextlib.contextmanager
    def locked(self, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold .cache/lock for a whole build: builds sharing a cache (other checkouts or test
        repositories symlink theirs here) take turns instead of writing the same stage."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # released when the file closes, also when the process dies

    def stage_dir(self, stage: str, stage_key: str) -> Path:
        return self.root / "stages" / f"{stage}-{stage_key}"

    def lookup(self, stage: str, stage_key: str) -> Path | None:
        path = self.stage_dir(stage, stage_key)
        if not path.is_dir():
            return None
        os.utime(path)  # last used now: `commit` keeps the most recently used versions
        return path

    def staging(self, stage: str, stage_key: str) -> Path:
        """A fresh directory to build a stage's output in; `commit` renames it into place."""
        tmp = self.root / "stages" / f".{stage}-{stage_key}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, stage: str, stage_key: str, staging: Path) -> Path:
        final = self.stage_dir(stage, stage_key)
        # Keep .cache/ from growing forever, but not at the price of a cold rebuild each time
        # one switches between two checkouts, branches or suites that share it: the most
        # recently used KEPT_VERSIONS outputs of a stage stay, this one included.
        others = [old for old in (self.root / "stages").glob(f"{stage}-*") if old != final]
        others.sort(key=lambda old: old.stat().st_mtime, reverse=True)
        for old in others[KEPT_VERSIONS - 1 :]:
            shutil.rmtree(old, ignore_errors=True)
        if final.exists():  # the same inputs built again (the agent base, for a newer archive)
            shutil.rmtree(final)
        staging.rename(final)
        return final

    def discard_staging(self) -> None:
        """Remove what an interrupted stage left half-written."""
        for tmp in (self.root / "stages").glob(".*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)

    def clean(self) -> None:
        """`--clean`: drop every cached stage and download (other tools' caches under .cache/,
        e.g. nox's pre-commit, are left alone)."""
        for path in (self.root / "stages", self.debs, self.downloads):
            if path.exists():
                shutil.rmtree(path)
