"""`scooby COMMAND [--repo DIR] ...`: a thin shell over each stage's public function.

Exit codes: 0 success, 1 user error (one `PATH:LINE: error: ...` line each), 2 usage error
(argparse's own), 130 interrupted. Each command lives in its own module, scooby/cli/NAME.py,
which provides `HELP`, `configure(parser)` and `run(args) -> int`; heavy imports stay inside
`run`, so `scooby --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from scooby import __version__
from scooby.core.errors import ScoobyError
from scooby.core.redact import redact, shown

# command name -> module; the order is the data flow's.
COMMANDS = {
    "validate": "scooby.cli.validate",
    "render": "scooby.cli.render",
    "build": "scooby.cli.build",
    "test-qemu": "scooby.cli.test_qemu",
    "release": "scooby.cli.release",
    "deploy": "scooby.cli.deploy",
    "k3s": "scooby.cli.k3s",
    "doctor": "scooby.cli.doctor",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="scooby", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"scooby {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument(
            "--repo",
            type=Path,
            default=Path.cwd(),
            metavar="DIR",
            help="the Scooby repository (default: the current directory)",
        )
        module.configure(p)
        p.set_defaults(run=module.run)
    return top


def report(err: ScoobyError) -> None:
    for diagnostic in err.diagnostics:
        print(diagnostic, file=sys.stderr)


def main(argv: list[str] | None = None, starting_handler=None) -> int:
    """`starting_handler`: the SIGINT handler `python -m scooby` installed while modules load
    (scooby/__main__.py); it stays until every command's module is imported, then Ctrl-C
    raises KeyboardInterrupt again, for the commands' own clean-up."""
    try:
        args = parser().parse_args(argv)  # imports every command: Ctrl-C may land here
    except KeyboardInterrupt:
        print("scooby: interrupted", file=sys.stderr)
        return 130
    if starting_handler and signal.getsignal(signal.SIGINT) is starting_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not args.repo.is_dir():
        print(f"scooby: error: --repo {args.repo}: not a directory", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except ScoobyError as err:
        report(err)
        return 1
    except KeyboardInterrupt:
        print("scooby: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in scooby, not the user's input: still one clean line
        if os.environ.get("SCOOBY_DEBUG"):
            raise
        what = redact(f"{type(exc).__name__}: {shown(str(exc), 300)}").replace("\n", "\\n")
        print(
            f"scooby: internal error: {what} "
            "(rerun with SCOOBY_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return 3
