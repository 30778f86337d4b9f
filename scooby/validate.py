"""`scooby validate`: every problem in the user's repository, before any slow work starts.

Load (each file against its schema) -> cross-file rules (scooby.rules) -> manifests
(scooby.manifests). Problems are printed one per line, `PATH:LINE: error: KEY: message`;
exit 1 if any is an error. `--explain KEY` and `--settings-table` read the schemas, the
single source of every key's description, default and format.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scooby import load, manifests, rules, schema
from scooby.errors import Diagnostic, ScoobyError, errors_only
from scooby.model import Cluster

HELP = "check config, .env, agents/ and server/ (manifests included); print a cluster summary"

# Where each schema's keys are written, for --explain and the settings table.
FILES = {"config": "config", "agent": "agents/NAME.agent", "env": ".env (secrets)"}


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


def validate(
    repo: Path, environ: dict[str, str] | None = None, with_manifests: bool = True
) -> tuple[Cluster | None, list[Diagnostic]]:
    """Load the repo and apply every rule; the cluster (if it loaded) and all diagnostics."""
    loaded = load.load(repo, environ)
    diagnostics = list(loaded.diagnostics)
    diagnostics += rules.check(loaded, repo)
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


def run(args: argparse.Namespace) -> int:
    if getattr(args, "explain", None):
        return explain(args.explain)
    if getattr(args, "settings_table", False):
        print(settings_table(), end="")
        return 0
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
    manifest_count = sum(1 for f in cluster.server_files if f.startswith(manifests.MANIFESTS))
    lines = [
        f"master   {m.hostname}  external {m.external.device} {m.external.address} gw {m.gateway}"
        f"  internal {m.internal.device} {m.internal.address}",
        f"base     {m.base.kind}  k3s {m.k3s.version}",
        f"server   {len(cluster.server_files)} file(s), {manifest_count} in the manifests folder",
        f"agents   {len(cluster.agents)}",
    ]
    lines += [f"  {a.name:<16} {a.ip!s:<15} {a.mac}  pxe {a.pxe_id}" for a in cluster.agents]
    return "\n".join(lines)


# --- the schemas as documentation ---------------------------------------------------------------


def _format(prop: dict) -> str:
    fmt = prop.get("format", "")
    optional = fmt.endswith("-or-empty")
    fmt = fmt.removesuffix("-or-empty")
    if fmt in schema.FORMATS:
        text = schema.FORMATS[fmt][1]
        return f"{text} (or empty)" if optional else text
    if "enum" in prop:
        return (
            "one of "
            + ", ".join(f"`{v}`" for v in prop["enum"] if v)
            + (" (or empty)" if "" in prop["enum"] else "")
        )
    if "pattern" in prop:
        return f"matches `{prop['pattern']}`"
    return "text"


def explain(key: str) -> int:
    found = schema.find_key(key.upper())
    if found is None:
        hint = schema.suggest(key, schema.all_keys())
        print(f"scooby validate: error: no setting named {key}{hint}", file=sys.stderr)
        return 2
    kind, prop = found
    required = key.upper() in schema.schema(kind).get("required", [])
    default = "(required)" if required else repr(prop.get("default", ""))
    print(f"{key.upper()}  in {FILES[kind]}")
    print(f"  {prop['description']}")
    print(f"  default: {default}")
    print(f"  format:  {_format(prop)}")
    return 0


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    rows = ["| Key | File | Default | Format | Description |", "|---|---|---|---|---|"]
    for kind in schema.KINDS:
        required = schema.schema(kind).get("required", [])
        for key, prop in schema.properties(kind).items():
            default = (
                "*required*"
                if key in required
                else f"`{prop['default']}`"
                if prop.get("default")
                else ""
            )
            rows.append(
                f"| `{key}` | `{FILES[kind].split(' ')[0]}` | {_cell(default)} | "
                f"{_cell(_format(prop))} | {_cell(prop['description'])} |"
            )
    return "\n".join(rows) + "\n"
