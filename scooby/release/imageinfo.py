"""What a built image says about itself: its `/etc/scooby/release`, read with debugfs from
the ext4 root without a loop device, a mount or root."""

from __future__ import annotations

from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.util import diskimage

RELEASE_KEYS = ("SCOOBY_VERSION", "BASE", "K3S_VERSION", "K3S_MODE", "CONFIG_DIGEST")


def read_image_file(image: Path, inside: str, shown: str = "") -> str:
    """A file's text from the image's ext4 root, via debugfs: no loop device, no mount, no root."""
    shown = shown or str(image)
    offset = diskimage.partition(image, layout.ROOT_PARTITION, shown).offset
    done = diskimage.debugfs(image, offset, "-R", f"cat {inside}")
    # debugfs exits 0 even when the file is missing; it says so on stderr.
    problem = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith("debugfs ")
    ]
    if done.returncode != 0 or problem:
        why = problem[0] if problem else f"debugfs exited {done.returncode}"
        raise ScoobyError(error(shown, None, f"cannot read {inside} from the image: {why}"))
    return done.stdout


def parse_release_file(text: str, where: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    problems = [
        error(where, None, "missing from the image's release file", key)
        for key in RELEASE_KEYS
        if not values.get(key)
        and not (key == "K3S_VERSION" and values.get("K3S_MODE") == layout.NO_K3S)
    ]
    if values.get("K3S_MODE") and values["K3S_MODE"] not in layout.K3S_MODES:
        problems.append(error(where, None, f"not one of {', '.join(layout.K3S_MODES)}", "K3S_MODE"))
    if problems:
        raise ScoobyError(problems)
    return values


def image_release(image: Path, shown: str = "") -> dict[str, str]:
    """The image's /etc/scooby/release; SHOWN names the image in messages (repo-relative)."""
    shown = shown or str(image)
    text = read_image_file(image, layout.RELEASE_FILE, shown)
    return parse_release_file(text, f"{shown}:{layout.RELEASE_FILE}")
