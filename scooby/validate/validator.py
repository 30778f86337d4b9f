"""Validate: every problem in the user's repository, before any slow work starts.

Load (each file against its schema) -> cross-file rules (scooby.validate.rules) -> K3S's rules
(scooby.validate.k3s) -> manifests (scooby.validate.manifests). Each problem is a Diagnostic,
`PATH:LINE: error: KEY: message`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scooby.core.errors import Diagnostic, ScoobyError, errors_only
from scooby.core.model import Cluster
from scooby.load import reader
from scooby.validate import k3s, manifests, rules


def validate(
    repo: Path, environ: dict[str, str] | None = None, with_manifests: bool = True
) -> tuple[Cluster | None, list[Diagnostic]]:
    """Load the repo and apply every rule; the cluster (if it loaded) and all diagnostics."""
    loaded = reader.load(repo, environ)
    diagnostics = list(loaded.diagnostics)
    diagnostics += rules.check(loaded, repo)
    if loaded.master is not None:
        diagnostics += k3s.check(loaded.master, repo.resolve(), reader.server_files(repo.resolve()))
    if with_manifests:
        diagnostics += manifests.check(repo, loaded.config or None)
    return loaded.cluster, sorted(set(diagnostics), key=_order)


def _order(d: Diagnostic) -> tuple:
    return (d.path, d.line or 0, d.key or "", d.message)


def validated(repo: Path) -> Cluster:
    """The cluster, or ScoobyError with every problem: what render and build start from."""
    cluster, diagnostics = validate(repo)
    for d in diagnostics:
        if d.severity == "warning":
            print(d, file=sys.stderr)
    if cluster is None or errors_only(diagnostics):
        raise ScoobyError(errors_only(diagnostics))
    return cluster
