"""Which inputs is this? A digest of the cluster's files, carried by the Cluster.

`config_digest` hashes exactly the files `scooby.load` reads into the cluster (config,
agents/*.agent, server/**), never `.env`: two machines with the same checkout get the same
digest, and a secret never influences a published value.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from scooby.load import files


def inputs(repo: Path) -> list[str]:
    """Repo-relative paths of the cluster's inputs, sorted: what `load` reads, minus `.env`."""
    repo = Path(repo).resolve()
    paths = [files.CONFIG] if (repo / files.CONFIG).is_file() else []
    paths += [p.relative_to(repo).as_posix() for p in files.agent_files(repo)]
    paths += list(files.server_files(repo))  # the same file set the build copies
    return sorted(paths)


def config_digest(repo: Path) -> str:
    """sha256 over (path, content hash) of each input: independent of mtimes, modes, machines."""
    repo = Path(repo).resolve()
    outer = hashlib.sha256()
    for rel in inputs(repo):
        path = repo / rel
        # A symlink is an input by its target's name (what git commits), not what it points to.
        # Anything else that is not a regular file (a FIFO: reading it would hang) is refused
        # by load; it never gets here with a cluster, but is never opened either.
        if path.is_symlink():
            data = os.readlink(path).encode()
        else:
            data = path.read_bytes() if path.is_file() else b""
        outer.update(rel.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
    return outer.hexdigest()
