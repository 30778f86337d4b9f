"""`scooby k3s pin VERSION [--sums FILE]`: pin a K3S release and its checksums in `config`
(scooby.build.pin). Where GitHub is out of reach, it says what to download."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "K3S release tools: `scooby k3s pin VERSION` writes a release and its checksums into config"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="k3s_command", metavar="SUBCOMMAND", required=True)
    pin = sub.add_parser(
        "pin",
        help="pin VERSION: its sha256sum-arm64.txt's checksums into config",
        description="pin a K3S release: write it and its checksums into config",
    )
    pin.add_argument("version", metavar="VERSION", help="a K3S release, e.g. v1.36.4+k3s1")
    pin.add_argument(
        "--sums",
        type=Path,
        metavar="FILE",
        help="the release's sha256sum-arm64.txt, downloaded elsewhere (no GitHub here)",
    )
    # `scooby k3s pin VERSION --repo DIR` as well as `scooby k3s --repo DIR pin VERSION`.
    pin.add_argument(
        "--repo",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the Scooby repository (default: the current directory)",
    )


def run(args: argparse.Namespace) -> int:
    from scooby.build.pin import pin

    print(pin(args.repo, args.version, args.sums))
    return 0
