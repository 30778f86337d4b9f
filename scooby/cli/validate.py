"""`scooby validate`: problems printed one per line, `PATH:LINE: error: KEY: message`; exit 1
if any is an error, else a cluster summary. `--explain KEY` and `--settings-table` print the
schemas' own descriptions."""

from __future__ import annotations

import argparse
import sys

from scooby.core.errors import errors_only
from scooby.core.model import MANIFESTS, Cluster
from scooby.validate import k3s
from scooby.validate.explain import explain, no_such_key, settings_table

HELP = "check config, .env, agents/ and server/ (manifests included); print a cluster summary"


def configure(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--explain",
        metavar="KEY",
        help="describe one setting (file, default, format) and exit",
    )
    what.add_argument(
        "--settings-table",
        action="store_true",
        help="print a Markdown table of every setting (the README's) and exit",
    )
    parser.add_argument(
        "--no-manifests",
        dest="manifests",
        action="store_false",
        help="skip the Kubernetes manifests (the scooby-manifests pre-commit hook checks them)",
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "explain", None):
        text = explain(args.explain)
        if text is None:
            print(f"scooby validate: error: {no_such_key(args.explain)}", file=sys.stderr)
            return 2
        print(text)
        return 0
    if getattr(args, "settings_table", False):
        print(settings_table(), end="")
        return 0
    from scooby.validate import validate

    cluster, diagnostics = validate(args.repo, with_manifests=getattr(args, "manifests", True))
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
    manifest_count = sum(1 for f in cluster.server_files if f.startswith(MANIFESTS))
    lines = [
        f"master   {m.hostname}  external {m.external.device} {m.external.address} gw {m.gateway}"
        f"  internal {m.internal.device} {m.internal.address}",
        f"base     {m.base.kind}  k3s {m.k3s.version}"
        + (f"  extra packages {' '.join(m.base.extra_packages)}" if m.base.extra_packages else ""),
        f"server   {len(cluster.server_files)} file(s), {manifest_count} in the manifests folder",
        f"agents   {len(cluster.agents)}",
    ]
    lines[2:2] = k3s.summary(m, cluster.repo)  # K3S's settings, what the outside reaches
    lines += [f"  {a.name:<16} {a.ip!s:<15} {a.mac}  pxe {a.pxe_id}" for a in cluster.agents]
    return "\n".join(lines)
