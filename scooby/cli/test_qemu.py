"""`scooby test-qemu`: its options over scooby.testqemu; the exit status is the phases'."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scooby.testqemu.session import DEFAULT_IMAGE, EVIDENCE

HELP = "boot the image in QEMU: the master, and an agent network-booted from it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        type=Path,
        default=Path(DEFAULT_IMAGE),
        metavar="FILE",
        help=f"the image to boot (default: {DEFAULT_IMAGE}, relative to --repo); never modified",
    )
    parser.add_argument(
        "--identity",
        type=Path,
        default=None,
        metavar="KEY",
        help="SSH private key matching LC_SSH_AUTH_KEY (default: ssh's own keys and agent)",
    )
    parser.add_argument(
        "--agent",
        default=None,
        metavar="NAME",
        help="the agent to network-boot (default: the first in agents/)",
    )
    parser.add_argument(
        "--board",
        choices=("virt", "raspi3b", "raspi4b"),
        default="virt",
        help="virt (default): the master and an agent network-booted from it; raspi3b, "
        "raspi4b: the master alone on QEMU's Raspberry Pi board, with the files the Pi "
        "firmware would load",
    )
    parser.add_argument(
        "--medium",
        choices=("sd", "usb"),
        default="sd",
        help="with a Pi board: boot from the SD card (default) or a USB mass-storage device "
        "(raspi3b)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the VMs' disks and fetched boot files under build/test-qemu/work",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(EVIDENCE),
        metavar="DIR",
        help=f"where consoles, journal and phase table go (default: {EVIDENCE}, relative to "
        "--repo)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from scooby.testqemu import Session, check_host, pick_agent
    from scooby.validate import validated

    repo = args.repo.resolve()
    image = args.image if args.image.is_absolute() else repo / args.image
    out = args.out if args.out.is_absolute() else repo / args.out
    cluster = validated(repo)
    if args.board != "virt":
        return _pi_board(args, cluster, image, out)
    agent = pick_agent(cluster, args.agent)
    check_host(cluster, image, args.identity)
    # In a CI log (no terminal) the table and paths keep full lines rather than 80 columns.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    session = Session(cluster, agent, image, out, args.identity, console)
    phases = session.run(keep=args.keep)
    return 0 if phases.ok else 1


def _pi_board(args: argparse.Namespace, cluster, image: Path, out: Path) -> int:
    from rich.console import Console

    from scooby.testqemu.piboard import PiSession, check_board

    check_board(args.board, args.medium, image)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
    session = PiSession(cluster, image, out, args.board, args.medium, console)
    return 0 if session.run(keep=args.keep).ok else 1
