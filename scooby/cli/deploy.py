"""`scooby deploy --to HOST [--dry-run]`: the repository's current state onto a running master:
live when only the cluster description changed, A/B (a new root slot, a trial boot) when the
plan needs a reboot."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "deploy the repository to a running master over SSH (live, or A/B with a trial boot)"


def configure(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to",
        metavar="HOST",
        help="the master, as ssh takes it: [USER@]HOST (USER defaults to LC_DEFAULT_USER)",
    )
    where.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR",
        help="write DIR/scooby-deploy.tar.gz and DIR/SHA256SUMS for `scooby-update` on the"
        " master (a release to pull) instead of deploying",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would change (files, services, agents, reboot or not) and stop",
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="return the master to its state before the last deploy (with --dry-run: show it)",
    )
    parser.add_argument(
        "--allow-kernel-change",
        action="store_true",
        help="an A/B deploy may also write the boot partition (kernel, initrd, DTBs,"
        " config.txt, cmdline.txt), which both slots share and A/B does not protect",
    )
    parser.add_argument(
        "--root",
        action="store_true",
        help="--bundle: build the image and put its root slot beside the bundle, for a"
        " master whose plan needs a reboot (also done when DIR holds the previous release's"
        " bundle and the plan from it needs one)",
    )
    parser.add_argument(
        "--slot-mib",
        type=int,
        metavar="MIB",
        help="--bundle with a root: shrink the root file system to fit slots of MIB MiB"
        " (default: the new image's own root partition)",
    )
    parser.add_argument(
        "--k3s",
        choices=("auto", "embed", "none"),
        default="auto",
        help="--bundle with a root: K3S in the new image, as `scooby build --k3s` (default"
        " auto); a push deploy takes the master's own",
    )
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="an A/B deploy or rollback: how long to wait for the master's decision after"
        " its reboot (default 1800)",
    )
    parser.add_argument(
        "--identity",
        type=Path,
        metavar="KEY",
        help="the private key whose public half is LC_SSH_AUTH_KEY (default: ssh's own)",
    )
    parser.add_argument("--port", type=int, metavar="N", help="the master's SSH port (default 22)")
    parser.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPT",
        help="an extra `ssh -o OPT` (repeatable), e.g. UserKnownHostsFile=FILE",
    )


def run(args: argparse.Namespace) -> int:
    from scooby.deploy import Target, deploy, rollback
    from scooby.validate import validated

    cluster = validated(args.repo)
    if args.bundle is not None:
        return write_bundle(cluster, args)
    if args.root or args.slot_mib:
        from scooby.core.errors import ScoobyError, error

        raise ScoobyError(error("", None, "--root and --slot-mib go with --bundle"))
    host = args.to if "@" in args.to else f"{cluster.secrets.default_user}@{args.to}"
    target = Target(host, args.port, args.identity, tuple(args.ssh_option))

    def say(line: str) -> None:
        print(line, flush=True)  # as it happens: an A/B deploy takes minutes

    if args.rollback:
        result = rollback(target, dry_run=args.dry_run, wait=args.wait, say=say, label=args.to)
    else:
        result = deploy(
            cluster, target, args.repo / "build" / "deploy", dry_run=args.dry_run,
            repo=args.repo.resolve(), allow_kernel_change=args.allow_kernel_change,
            wait=args.wait, say=say, label=args.to,
        )  # fmt: skip
    if args.dry_run or result.plan.empty:
        return 0
    if result.output:
        print(result.output.rstrip())
    line = f"deployed to {args.to} in {result.seconds:.1f} s, {result.sent} bytes sent"
    if result.steps:  # A/B: where the time went
        each = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.steps.items())
        line += f" (A/B, slot {result.slot} committed: {each})"
    print(line)
    return 0


def write_bundle(cluster, args: argparse.Namespace) -> int:
    import os

    from scooby.core.errors import ScoobyError, error
    from scooby.deploy import bundle
    from scooby.deploy.image import TooLarge

    if args.dry_run or args.rollback:
        raise ScoobyError(error("", None, "--bundle takes neither --dry-run nor --rollback"))
    work = args.repo / "build" / "deploy"

    def say(line: str) -> None:
        print(line, flush=True)

    def image() -> Path:
        from scooby.deploy import ab

        say(f"building the new image (scooby build --k3s={args.k3s}) ...")
        return ab.build_image(args.repo.resolve(), work / "scooby.img", args.k3s, say)

    try:
        path, record = bundle.write(
            cluster, work, args.bundle, image=image, root=args.root,
            room=args.slot_mib * 2**20 if args.slot_mib else None,
            allow_kernel_change=args.allow_kernel_change, say=say,
        )  # fmt: skip
    except TooLarge as e:
        raise ScoobyError(error("", None, str(e))) from None
    sums = os.path.relpath(args.bundle / bundle.SUMS)
    print(
        f"{os.path.relpath(path)}: {len(record['files'])} files, {len(record['agents'])} agents,"
        f" {path.stat().st_size} bytes; its sha256 is in {sums}"
    )
    root = args.bundle / bundle.ROOT
    if root.exists():
        print(f"{os.path.relpath(root)}: the root slot, {root.stat().st_size} bytes of zstd")
    print(f"on the master: sudo scooby-update https://.../{bundle.BUNDLE} (SHA256SUMS beside it)")
    return 0
