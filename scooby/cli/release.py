"""`scooby release`: its options, progress bars and summary table over scooby.release."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scooby.core.paths import IMAGE
from scooby.release.artifacts import COMPRESSORS, DEFAULT_DIST, DEFAULT_IMAGE
from scooby.util.progress import human, progress

HELP = (
    f"compress {IMAGE} and write .bmap, SHA256SUMS, release.json and a Raspberry Pi "
    "Imager list to dist/; upload them to GitHub and S3 when their secrets are set"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        type=Path,
        default=Path(DEFAULT_IMAGE),
        metavar="FILE",
        help=f"the built image (default: {DEFAULT_IMAGE}, relative to --repo)",
    )
    parser.add_argument(
        "--dist",
        type=Path,
        default=Path(DEFAULT_DIST),
        metavar="DIR",
        help=f"where artifacts go (default: {DEFAULT_DIST}, relative to --repo)",
    )
    parser.add_argument(
        "--format",
        choices=sorted(COMPRESSORS),
        default="zst",
        help="image compression: zst (default, fast, Imager >= 1.7) or xz (smaller, slower)",
    )
    parser.add_argument(
        "--upload-only",
        action="store_true",
        help="publish the artifacts already in --dist (checked against SHA256SUMS); "
        "no image, no compression",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="make the artifacts and list them with size, SHA-256 and destination; upload nothing",
    )


def run(args: argparse.Namespace) -> int:
    from scooby.release import publish
    from scooby.release.artifacts import from_dist, make
    from scooby.release.imageinfo import image_release

    repo = args.repo.resolve()
    dist = args.dist if args.dist.is_absolute() else repo / args.dist
    if args.upload_only:
        made = from_dist(dist)
        targets = publish.targets(repo, made.version)
    else:
        from scooby.validate.validator import validated

        cluster = validated(repo)
        image = args.image if args.image.is_absolute() else repo / args.image
        info = image_release(image, os.path.relpath(image, repo)) if image.is_file() else None
        targets = publish.targets(repo, info["SCOOBY_VERSION"] if info else None)
        with progress() as bars:
            made = make(repo, image, dist, cluster, args.format, targets.url_for, bars)
    for line in targets.skipped:
        print(line, file=sys.stderr)
    results = publish.publish(made, targets, dry_run=args.dry_run)
    summary(made, results, dry_run=args.dry_run)
    return 0


def summary(made, results: dict[str, list[str]], dry_run: bool = False) -> None:
    """One table on stdout: every artifact, its size, its SHA-256 and where it went."""
    from rich.console import Console
    from rich.table import Table

    title = f"scooby {made.version}" + (" (dry run: nothing uploaded)" if dry_run else "")
    table = Table(title=title, title_justify="left")
    table.add_column("artifact", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("uploaded to" if not dry_run else "would go to", no_wrap=True)
    rows = []
    for a in made.artifacts:
        where = results.get(a.name) or ["dist/ only"]
        rows.append((f"{a.path.parent.name}/{a.name}", human(a.size), a.sha256, "\n".join(where)))
        table.add_row(*rows[-1])
    # Every SHA-256 must be there in full, in a narrow terminal and in a CI log (where rich
    # assumes 80 columns): the table is as wide as its content, and a terminal wraps it.
    needed = sum(max(len(line) for r in rows for line in r[i].splitlines()) for i in range(4))
    needed = max(needed, *(len(c.header) for c in table.columns)) + 13  # borders, padding
    console = Console(width=max(needed, Console().width if sys.stdout.isatty() else 0))
    console.print(table)
