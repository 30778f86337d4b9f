"""`scooby render`: the validated cluster into --out, then the daemons' own checkers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "render every file the master and its agents need into --out (default build/render)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default: REPO/build/render)",
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip the daemons' own checkers (dnsmasq --test, lighttpd -tt, ...)",
    )


def run(args: argparse.Namespace) -> int:
    from scooby.render import render
    from scooby.validate import validated

    cluster = validated(args.repo)
    out = args.out or args.repo / "build" / "render"
    check = None
    if args.check:
        from scooby.render import checks

        check = checks.check
    result = render(cluster, out, check=check)  # a tree the checkers reject is not swapped in
    for d in result.diagnostics:
        print(d, file=sys.stderr)
    print(
        f"rendered {len(result.files)} files for {cluster.master.hostname} and "
        f"{len(cluster.agents)} agent(s) into {out}"
    )
    if args.check:
        print(
            f"checked {out} with dnsmasq, lighttpd, iptables, cloud-init, systemd, sshd, exportfs"
        )
    return 0
