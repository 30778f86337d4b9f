"""`scooby doctor`: every program, file and kernel feature the build and the tests need,
each with the Debian package or the fix; one `scripts/packages.txt:LINE: error: ...` line per
missing piece, exit 1 if any."""

from __future__ import annotations

import argparse

HELP = "check this machine: the programs, files and kernel features Scooby needs, and their fixes"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet", action="store_true", help="print only what is missing (the error lines)"
    )


def run(args: argparse.Namespace) -> int:
    from scooby.util import doctor

    return doctor.main(["--quiet"] if args.quiet else [])
