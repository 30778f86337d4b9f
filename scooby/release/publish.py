"""Where release artifacts go (GitHub, S3), and getting them there.

Each destination is decided once, up front, from the environment: present secrets mean an
upload, absent ones a single `... skipped: ...` line. Only versions that name a clean commit
are published anywhere; a `-dirty` or unknown version stays in dist/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from scooby.release import github, s3
from scooby.release.versions import is_tag
from scooby.util.progress import progress


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
    from scooby.load import reader

    merged = reader.written(repo, reader.ENV)  # its problems were reported by `validated`
    merged.update({k: v for k, v in environ.items() if v})
    return merged


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

    from scooby.core.paths import TEMPLATES_DIR
    from scooby.util.templates import environment

    manifest = next(a for a in made.artifacts if a.kind == "manifest")
    image = next(a for a in made.artifacts if a.kind == "image")
    imager = found.github.download_url("rpi-imager.json") if found.github else "rpi-imager.json"
    return (
        environment(TEMPLATES_DIR / "release")
        .get_template("notes.md.j2")
        .render(r=json.loads(manifest.path.read_text()), image=image.name, imager_url=imager)
    )
