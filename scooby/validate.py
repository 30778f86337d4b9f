"""`scooby validate`: every problem in the user's repository, before any slow work starts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scooby import load
from scooby.errors import Diagnostic, ScoobyError, errors_only
from scooby.model import Cluster

HELP = "check config, .env, agents/ and server/ (manifests included); print a cluster summary"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def validate(
    repo: Path, environ: dict[str, str] | None = None
) -> tuple[Cluster | None, list[Diagnostic]]:
    """Load the repo and apply every rule; the cluster (if it loaded) and all diagnostics."""
    loaded = load.load(repo, environ)
    diagnostics = list(loaded.diagnostics)
    return loaded.cluster, sorted(set(diagnostics), key=lambda d: (d.path, d.line or 0, d.message))


def validated(repo: Path) -> Cluster:
    """The cluster, or ScoobyError with every problem: what render and build start from."""
    cluster, diagnostics = validate(repo)
    for d in diagnostics:
        if d.severity == "warning":
            print(d, file=sys.stderr)
    if cluster is None or errors_only(diagnostics):
        raise ScoobyError(errors_only(diagnostics))
    return cluster


def run(args: argparse.Namespace) -> int:
    cluster, diagnostics = validate(args.repo)
    for d in diagnostics:
        print(d, file=sys.stderr)
    errors = errors_only(diagnostics)
    if errors or cluster is None:
        print(
            f"{len(errors)} error(s), {len(diagnostics) - len(errors)} warning(s)", file=sys.stderr
        )
        return 1
    print(summary(cluster))
    return 0


def summary(cluster: Cluster) -> str:
    m = cluster.master
    lines = [
        f"master   {m.hostname}  external {m.external.device} {m.external.address} gw {m.gateway}"
        f"  internal {m.internal.device} {m.internal.address}",
        f"base     {m.base.kind}  k3s {m.k3s.version}",
        f"agents   {len(cluster.agents)}",
    ]
    lines += [f"  {a.name:<16} {a.ip!s:<15} {a.mac}  pxe {a.pxe_id}" for a in cluster.agents]
    return "\n".join(lines)
