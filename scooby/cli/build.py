"""`scooby build`: its options, the SIGTERM handling and the summary table over scooby.build."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from scooby.build.pipeline import Report
from scooby.core import layout
from scooby.core.paths import IMAGE

HELP = f"build the master's bootable image ({IMAGE}) from Debian's archive"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--k3s",
        choices=("auto", "embed", "none"),
        default="auto",
        help="embed K3S (fail if it can't be had), auto: embed or install at first boot "
        "(default), none: no K3S",
    )
    parser.add_argument(
        "--clean", action="store_true", help="drop .cache/ (stages and downloads) first"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="IMG",
        help=f"where to write the image (default: REPO/{IMAGE})",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scooby.build import build

    repo = args.repo.resolve()
    out = (args.out or repo / IMAGE).resolve()
    # What the image holds must not depend on the caller's umask (000 made / and /etc 0777).
    os.umask(0o022)
    console = Console(stderr=True)
    logfile = repo / "build" / "build.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    # A SIGTERM (CI cancelling the job) unwinds like Ctrl-C: temporary files are removed.
    signal.signal(signal.SIGTERM, _interrupted)
    with open(logfile, "w") as log:
        report, image = build(repo, out, args.k3s, args.clean, console, log)
    console.print(summary(report, image))
    for w in report.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {w}")
    console.print(f"image: {image.image}   log: {logfile}")
    return 0


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def summary(report: Report, image):
    from rich.table import Table

    table = Table(title="scooby build")
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_column("cache")
    table.add_column("note")
    for s in report.stages:
        table.add_row(s.name, f"{s.seconds:.1f} s", "hit" if s.cached else "-", s.note)
    total = sum(s.seconds for s in report.stages)
    table.add_row("total", f"{total:.1f} s", "", "")
    plan = report.k3s
    k3s = {
        layout.EMBEDDED: f"K3S {plan.version} (embedded)",
        layout.FIRST_BOOT: f"K3S {plan.version} installed at first boot (NOT embedded)",
    }.get(plan.mode, "without K3S")
    table.caption = (
        f"image {image.size / 2**30:.2f} GiB ({image.image.name}) · base {report.base} · {k3s}"
    )
    return table
