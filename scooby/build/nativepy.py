"""This machine's own build of the root's Python, for the one step it does in the agent base.

While the agent base's packages install, python3.X-minimal's and python3.X's postinsts
byte-compile the standard library: `python3.X -E -S /usr/lib/python3.X/py_compile.py FILES`,
about 600 modules. Under qemu-user that is 37.6 s of the agent base (17.4 + 20.2 s, this
machine); the same Debian version of python3.X-minimal built for amd64 does it in 2.6 s, and
the .pyc files are the same bytes (bytecode does not depend on the machine: checked on all
597 of them). So for a cold agent base on an x86-64 machine, `prepare` fetches that build
from the same archive and pockets as the root's packages, the way apt would (InRelease
checked with gpgv against Debian's archive keyring; Packages.xz and every .deb checked
against the sha256 the signed index names), and keeps it under
`.cache/downloads/native-python/`: the interpreter, the loader and the libraries it links
(from libc6, zlib1g and libexpat1; it uses the root's own standard library).

hooks/native-tools.sh mounts it into the root and puts hooks/native-python.sh in front of the
root's python3.X: that one call runs natively when the root's python3.X-minimal is the very
version prepared here, and every other call, or any mismatch, goes to the root's own
interpreter as before. Nothing here can fail a build: offline, the newest prepared one is
offered (the version check decides); without one, Python compiles emulated, as it always did.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import platform
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from scooby.build import archive

ARCH = "amd64"  # the only machine this is for: an arm64 one emulates nothing
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LIBS = ("libc6", "zlib1g", "libexpat1")  # what python3.X-minimal's interpreter links
LOADER = "ld-linux-x86-64.so.2"
TIMEOUT = 30  # seconds per file: a cold build must not stall on an unreachable mirror
FOLDER = "native-python"  # under .cache/downloads/
SONAME = re.compile(r"ld-linux-x86-64\.so\.2|lib[\w+-]+\.so\.[0-9]+")


class Unavailable(Exception):
    """The archive gave no usable native Python: the build compiles emulated."""


def prepare(lines: list[str], downloads: Path) -> tuple[Path | None, str]:
    """The folder of a native python3.X matching `lines`' archive (None if there is none),
    and what to say about it in the build log."""
    if platform.machine() != "x86_64" or not KEYRING.is_file():
        return None, "not an x86-64 machine with Debian's archive keyring: Python emulated"
    cache = downloads / FOLDER
    try:
        stanzas = newest(packages(lines))
        python = interpreter(stanzas)
        folder = cache / f"{python}_{stanzas[python + '-minimal']['Version']}"
        if not (folder / "version").is_file():
            build(folder, [stanzas[name] for name in (python + "-minimal", *LIBS)])
        return folder, f"native {folder.name} for the standard library's compile"
    except (Unavailable, OSError, ValueError, lzma.LZMAError, subprocess.CalledProcessError) as exc:
        found = sorted(cache.glob("*/version"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1].parent, f"archive not read ({exc}): the newest native one offered"
        return None, f"no native Python ({exc}): the standard library compiled emulated"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 (apt's URLs)
        return response.read()


def signed(line: str) -> tuple[str, str]:
    """A pocket's base URL and its InRelease text, as gpgv verified it."""
    base = line.split()[1].rstrip("/")
    with tempfile.NamedTemporaryFile() as raw:
        raw.write(fetch(archive.in_release_url(line)))
        raw.flush()
        text = subprocess.run(
            ["gpgv", "--keyring", str(KEYRING), "--output", "-", raw.name],
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "replace")
    return base, text


def sha256_of(in_release: str, name: str) -> str:
    """The sha256 an InRelease gives for one of its amd64 Packages indices
    (`main/binary-amd64/Packages.xz`), read as archive.py reads the arm64 ones."""
    found = archive.packages_digests(in_release, ARCH).get(name)
    if not found:
        raise Unavailable(f"no {name} in the InRelease")
    return found


def verified(url: str, sha256: str) -> bytes:
    data = fetch(url)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise Unavailable(f"{url}: sha256 differs from the signed index")
    return data


WANTED = re.compile(rf"Package: (python3(\.[0-9]+)?-minimal|{'|'.join(LIBS)})\n")


def packages(lines: list[str]) -> list[dict[str, str]]:
    """The stanzas of python3-minimal, each python3.X-minimal and LIBS in the pockets' amd64
    main Packages indices, each with its pocket's URL."""
    out = []
    for line in lines:
        base, in_release = signed(line)
        name = archive.packages_path(arch=ARCH)
        xz = verified(archive.packages_url(line, arch=ARCH), sha256_of(in_release, name))
        index = lzma.decompress(xz)
        for stanza in index.decode("utf-8", "replace").split("\n\n"):
            if WANTED.match(stanza):
                out.append(archive.fields(stanza) | {"Base": base})
    return out


def newer(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def newest(stanzas: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Package name -> its stanza of the highest version in any pocket (apt's candidate)."""
    best: dict[str, dict[str, str]] = {}
    for stanza in stanzas:
        name = stanza["Package"]
        if name in best and not newer(stanza["Version"], best[name]["Version"]):
            continue
        best[name] = stanza
    return best


def interpreter(stanzas: dict[str, dict[str, str]]) -> str:
    """python3.X: the one the suite's python3-minimal depends on."""
    fields = stanzas.get("python3-minimal", {})
    depends = f"{fields.get('Pre-Depends', '')}, {fields.get('Depends', '')}"
    found = re.search(r"\b(python3\.[0-9]+)-minimal\b", depends)
    if not found:
        raise Unavailable("no python3-minimal in the amd64 index")
    missing = [n for n in (found[1] + "-minimal", *LIBS) if n not in stanzas]
    if missing:
        raise Unavailable(f"not in the amd64 index: {', '.join(missing)}")
    return found[1]


def build(folder: Path, wanted: list[dict[str, str]]) -> None:
    """Download and check each .deb, unpack it, and keep only what runs the interpreter."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        tree, keep = Path(tmp) / "tree", Path(tmp) / "keep"
        tree.mkdir()
        keep.mkdir()
        for stanza in wanted:
            deb = Path(tmp) / "package.deb"
            deb.write_bytes(verified(f"{stanza['Base']}/{stanza['Filename']}", stanza["SHA256"]))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        python = wanted[0]["Package"].removesuffix("-minimal")
        shutil.copyfile(tree / "usr" / "bin" / python, keep / "python")
        libs = tree / "usr" / "lib" / "x86_64-linux-gnu"
        for lib in libs.iterdir():  # the loader and each library by its soname, links resolved
            if SONAME.fullmatch(lib.name) and lib.is_file():
                shutil.copyfile(lib, keep / lib.name)
        for path in keep.iterdir():
            path.chmod(0o755)
        run = [str(keep / LOADER), "--library-path", str(keep), str(keep / "python"), "--version"]
        said = subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip()
        if not said.startswith("Python " + python.removeprefix("python")):
            raise Unavailable(f"{python}: it says {said!r}")
        (keep / "name").write_text(python + "\n")
        (keep / "version").write_text(wanted[0]["Version"] + "\n")
        if folder.exists():  # an earlier, interrupted one (no version file): replaced whole
            shutil.rmtree(folder)
        os.replace(keep, folder)
