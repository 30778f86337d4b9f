"""Byte-counting progress bars (rich) for long copies: compressing, uploading."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


# rich's Progress, fed by `advance(n)` callbacks rather than rich.progress.wrap_file: the
# stages (compress, sha256, uploads) take a plain callback and know nothing of rich.
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


def human(size: int) -> str:
    """1536 -> "1.5 KiB": sizes in tables and progress lines."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
