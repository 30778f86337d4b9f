"""Where release artifacts go (GitHub, S3), progress bars while they get there, and the summary.

Each destination is decided once, up front, from the environment: present secrets mean an
upload, absent ones a single `... skipped: ...` line. Only versions that name a clean commit
are published anywhere; a `-dirty` or unknown version stays in dist/.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from scooby import github, s3


@dataclass
class Targets:
    github: github.Target | None = None  # None: no GitHub upload
    s3: s3.Target | None = None  # None: no S3 upload
    skipped: list[str] = field(default_factory=list)  # one line per skipped destination
    version: str = ""
    # Where the published image will be downloaded from. Known without any credential, so a
    # CI build job without write access writes the same Imager list the release job uploads.
    github_download: str = ""  # .../releases/download/TAG
    s3_place: s3.Target | None = None

    def url_for(self, name: str, split: bool) -> str | None:
        """Where Raspberry Pi Imager downloads the image from; None: the local file."""
        if self.github_download and not split:
            return f"{self.github_download}/{quote(name)}"
        if self.s3_place and self.version:
            return self.s3_place.https_url(self.s3_place.key(self.version, name))
        return None


def publishable(image_version: str | None) -> str:
    """Why this version must not be published, or "" when it may."""
    if image_version is None:
        return "no image"
    if image_version.endswith("-dirty"):
        return f"{image_version} was built from uncommitted changes"
    if "+unknown" in image_version:
        return f"{image_version} was built outside a git checkout"
    return ""


def targets(
    repo: Path, image_version: str | None, environ: Mapping[str, str] | None = None
) -> Targets:
    """Every destination for this version, from `.env` and the environment."""
    from scooby.release import is_tag

    environ = secrets_env(repo, os.environ if environ is None else environ)
    found = Targets(version=image_version or "")
    why_not = publishable(image_version)
    if why_not:
        found.skipped = [f"GitHub: skipped: {why_not}", f"S3: skipped: {why_not}"]
        return found
    tag = image_version if is_tag(image_version) else None
    slug = github.slug(environ, repo)
    if tag and slug:
        found.github_download = github.download_base(environ, slug, tag)
    found.s3_place = s3.place(environ)
    found.github, skip = github.target(environ, repo, tag, image_version)
    found.skipped += [skip] if skip else []
    found.s3, skip = s3.target(environ)
    found.skipped += [skip] if skip else []
    return found


def secrets_env(repo: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`.env` overlaid by the environment (CI's repository secrets win), as `load` does."""
    from scooby import envfile

    merged: dict[str, str] = {}
    path = repo / ".env"
    if path.is_file():
        parsed, _ = envfile.load(path, repo)  # problems were reported by `validated` already
        merged.update(parsed.values())
    merged.update({k: v for k, v in environ.items() if v})
    return merged


@contextmanager
def progress() -> Iterator:
    """rich progress bars on stderr; they collapse to nothing when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as bars:
        yield bars


def publish(made, found: Targets, dry_run: bool = False) -> dict[str, list[str]]:
    """Upload each artifact where it belongs; artifact name -> ["where (what happened)"]."""
    results: dict[str, list[str]] = {a.name: [] for a in made.artifacts}
    to_github = [a for a in made.artifacts if a.github] if found.github else []
    to_s3 = [a for a in made.artifacts if a.s3] if found.s3 else []
    if dry_run:
        for a in to_github:
            results[a.name].append(f"{found.github.describe(a.name)} (dry run)")
        for a in to_s3:
            results[a.name].append(f"{found.s3.uri(found.s3.key(made.version, a.name))} (dry run)")
        return results
    with progress() as bars:
        if to_github:
            _to_github(made, found, to_github, bars, results)
        if to_s3:
            _to_s3(made, found, to_s3, bars, results)
    return results


def _to_github(made, found: Targets, artifacts, bars, results) -> None:
    client = github.Client(found.github)
    release = client.release(notes(made, found))
    existing = client.assets(release)
    for a in artifacts:
        task = bars.add_task(f"GitHub {a.name}", total=a.size)
        advance = lambda n, task=task: bars.advance(task, n)  # noqa: E731
        outcome = github.upload(client, release, existing, a.path, a.size, a.sha256, advance)
        results[a.name].append(f"{found.github.describe(a.name)} ({outcome})")


def _to_s3(made, found: Targets, artifacts, bars, results) -> None:
    client = s3.client(found.s3)
    config = s3.transfer_config()
    for a in artifacts:
        key = found.s3.key(made.version, a.name)
        task = bars.add_task(f"S3 {a.name}", total=a.size)
        advance = lambda n, task=task: bars.advance(task, n)  # noqa: E731
        outcome = s3.upload(client, found.s3, key, a.path, a.size, a.sha256, config, advance)
        results[a.name].append(f"{found.s3.uri(key)} ({outcome})")


def notes(made, found: Targets) -> str:
    """The GitHub release's text, from release.json: what it is and how to flash it."""
    import json

    from scooby import TEMPLATES_DIR
    from scooby.render import environment

    manifest = next(a for a in made.artifacts if a.kind == "manifest")
    image = next(a for a in made.artifacts if a.kind == "image")
    imager = found.github.download_url("rpi-imager.json") if found.github else "rpi-imager.json"
    return (
        environment(TEMPLATES_DIR / "release")
        .get_template("notes.md.j2")
        .render(r=json.loads(manifest.path.read_text()), image=image.name, imager_url=imager)
    )


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


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
