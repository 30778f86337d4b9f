"""The output folder render owns: refused when it is the user's, locked while written,
swapped in whole. Split from `renderer`, which writes the tree itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.load.reader import SERVER

# In every tree render writes: the folder is Scooby's, replaced whole on each render. A
# non-empty folder without it is the user's, and render refuses to touch it.
MARKER = ".scooby-render"
MARKER_TEXT = "Written by `scooby render`: this whole folder is replaced on each render.\n"


def refuse_inputs(repo: Path, out: Path) -> None:
    """--out must not be the repository, hold it, or lie in a folder render reads."""
    repo = Path(os.path.abspath(repo))
    real_out, real_repo = out.resolve(), repo.resolve()
    if real_out == real_repo or real_out in real_repo.parents:
        raise ScoobyError(
            error(
                "", None, f"--out {out} is the repository or holds it: render replaces --out whole"
            )
        )
    for folder in (SERVER, "agents", ".git", "templates", "schemas"):
        inside = real_repo / folder
        if real_out == inside or inside in real_out.parents:
            raise ScoobyError(
                error("", None, f"--out {out} is inside the repository's {folder}/: choose another")
            )


def aside(out: Path) -> Path:
    return out.with_name(f".{out.name}.swap")


def refuse_unowned(folder: Path) -> None:
    """A folder render may replace: missing, empty, or one it wrote (MARKER inside)."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ScoobyError(
            error("", None, f"{folder} exists and is not a folder: render will not replace it")
        )
    marker = folder / MARKER
    if (marker.is_file() and not marker.is_symlink()) or not any(folder.iterdir()):
        return
    raise ScoobyError(
        error(
            "",
            None,
            f"{folder} is not empty and was not written by scooby render (no {MARKER} in it); "
            "render replaces its --out whole, so choose a new or empty folder",
        )
    )


@contextlib.contextmanager
def locked(out: Path):
    """One render at a time into --out's parent folder (where its workspace and swap live):
    a second one fails at once, with a message, rather than mixing two trees."""
    import fcntl

    fd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScoobyError(
                error(
                    "",
                    None,
                    f"another scooby render is writing into {out.parent}: wait for it to finish",
                )
            ) from None
        yield
    finally:
        os.close(fd)


def discard(work: Path) -> None:
    """Remove a workspace render made (it carries MARKER), after a failed write."""
    with contextlib.suppress(OSError):
        if work.is_dir() and not work.is_symlink() and (work / MARKER).is_file():
            shutil.rmtree(work)


def swap_in(work: Path, out: Path) -> None:
    """Put the finished workspace at `out`, and the previous `out` where the workspace was.

    An atomic exchange where the file system has one (renameat2 RENAME_EXCHANGE: ext4,
    tmpfs, xfs, btrfs); else three renames, with `out` missing only between two of them.
    """
    if not out.exists():
        work.rename(out)
        return
    if exchange(work, out):
        return
    aside = out.with_name(f".{out.name}.swap")
    if aside.exists():
        shutil.rmtree(aside)  # left by an interrupted swap
    out.rename(aside)
    work.rename(out)
    aside.rename(work)


def exchange(a: Path, b: Path) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) == 0
