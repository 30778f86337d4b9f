"""Files written whole or not at all, their SHA-256, and pinned, verified downloads."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 4 * 1024 * 1024
PARTIAL = ".partial"  # the one suffix of a file still being written


def partial(dest: Path) -> Path:
    """The hidden name beside DEST that DEST is written under until it is complete."""
    return dest.with_name(f".{dest.name}{PARTIAL}")


@contextmanager
def atomic(dest: Path) -> Iterator[Path]:
    """A temporary path beside DEST, renamed onto DEST when the block ends without an
    exception and removed otherwise: DEST is never half written."""
    tmp = partial(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: Path, text: str) -> None:
    with atomic(dest) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path, advance: Callable[[int], None] | None = None) -> str:
    """The file's SHA-256 (hex); `advance(n)` after each chunk, for a progress bar."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if advance:
                advance(len(chunk))
    return digest.hexdigest()


class DownloadFailed(Exception):
    """The URL could not be read (network, HTTP status, disk); str() says why."""


class WrongChecksum(Exception):
    """The downloaded bytes are not the pinned ones; `got` is their SHA-256."""

    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


# Hand-written on urllib rather than pooch (the well-kept library for this): LC_IMAGE_HREF may
# be a file:// URL, which pooch's downloaders (HTTP, FTP, SFTP, DOI) do not read, and pooch
# would add requests and platformdirs for the ~20 lines below.
def download_verified(url: str, dest: Path, sha256: str, timeout: float = 30) -> Path:
    """DEST when it is there with the pinned SHA256; else URL downloaded under a temporary
    name, checked, then renamed to DEST. Raises DownloadFailed or WrongChecksum."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadFailed(str(getattr(exc, "reason", exc))) from exc
        if digest.hexdigest() != sha256:
            raise WrongChecksum(digest.hexdigest())
    return dest
