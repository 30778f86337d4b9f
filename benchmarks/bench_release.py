"""Release step time and compressed size: `python benchmarks/bench_release.py [--xz]`.

Targets (issue 6): the compressed image <= 35% of the raw image's USED bytes, and the whole
release step (compress + checksums + bmap + manifests) <= 3 min on this machine.

Uses images/scooby.img when it exists. Otherwise it makes a representative master image and
says so: a sparse 3.5 GiB MBR image (the original's typical size) with a 256 MiB FAT boot
partition and an ext4 root holding a copy of this host's /usr/bin and /usr/lib/python3 (ELF
binaries, libraries and Python: ~750 MB, about the measured 786 MB Debian arm64 master root),
optionally plus already-compressed data (`--precompressed-mb`, like an agent squashfs or
K3S's air-gap tarball, which no compressor can shrink).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import WILLOW, write_repo  # noqa: E402
from release_images import release_values  # noqa: E402

from scooby.core import layout  # noqa: E402
from scooby.release import artifacts as release  # noqa: E402
from scooby.util import diskimage  # noqa: E402
from scooby.util.files import sha256_file  # noqa: E402
from scooby.validate.validator import validated  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB


def run(*command: str, stdin: str | None = None) -> str:
    return subprocess.run(command, input=stdin, text=True, check=True, capture_output=True).stdout


def representative_image(path: Path, work: Path, precompressed_mb: int) -> None:
    tree = work / "root"
    (tree / "usr").mkdir(parents=True)
    for src in ("/usr/bin", "/usr/lib/python3"):
        dest = tree / src.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", src, str(dest)], check=True)
    if precompressed_mb:
        blob = tree / "var/lib/scooby/precompressed.bin"
        blob.parent.mkdir(parents=True)
        with blob.open("wb") as f, open("/dev/urandom", "rb") as rnd:
            for _ in range(precompressed_mb):
                f.write(rnd.read(MiB))
    return tree


def make_image(path: Path, tree: Path, release_text: str, size: int = int(3.5 * GiB)) -> None:
    etc = tree / layout.RELEASE_FILE.lstrip("/")
    etc.parent.mkdir(parents=True, exist_ok=True)
    etc.write_text(release_text)
    with path.open("wb") as f:
        f.truncate(size)
    boot_start, boot_size = 4 * MiB, 256 * MiB
    root_start = boot_start + boot_size
    run(
        "sfdisk",
        "-q",
        str(path),
        stdin=f"label: dos\nstart={boot_start // 512}, size={boot_size // 512}, type=c\n"
        f"start={root_start // 512}, type=83\n",
    )
    run(
        "mkfs.vfat",
        "-F",
        "32",
        "-s",
        "1",
        f"--offset={boot_start // 512}",
        str(path),
        str(boot_size // 1024),
    )
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-d",
        str(tree),
        "-E",
        f"offset={root_start}",
        str(path),
        f"{(size - root_start) // 1024}k",
    )


def used_bytes(image: Path) -> int:
    """Bytes in use: ext4 blocks in use (metadata and journal included) plus FAT clusters."""
    root = diskimage.partition(image, layout.ROOT_PARTITION).offset
    boot = diskimage.partition(image, layout.BOOT_PARTITION).offset
    info = run("dumpe2fs", "-h", f"{image}?offset={root}")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    ext4 = (int(fields["Block count"]) - int(fields["Free blocks"])) * int(fields["Block size"])
    listing = subprocess.run(
        ["mdir", "-i", f"{image}@@{boot}", "::"],
        capture_output=True,
        text=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    # "   264 287 744 bytes free": mtools groups digits with spaces
    line = next(x for x in listing.splitlines() if x.strip().endswith("bytes free"))
    free = int("".join(c for c in line.removesuffix("bytes free") if c.isdigit()))
    return ext4 + (root - boot) - free


def timed(label: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    print(f"  {label:<44} {seconds:7.1f} s", flush=True)
    return result, seconds


def compress_only(image: Path, out: Path, command: list[str]) -> int:
    with image.open("rb") as src, out.open("wb") as dest:
        subprocess.run(command, stdin=src, stdout=dest, check=True)
    return out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / release.DEFAULT_IMAGE)
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="the repository --image was built from"
    )
    parser.add_argument("--precompressed-mb", type=int, default=0)
    parser.add_argument(
        "--zstd",
        default="-3,-12,-12 --long=27,-19 --long=27",
        help="zstd option sets to compare, comma separated (release uses -12 --long=27)",
    )
    parser.add_argument("--xz", action="store_true", help="also time `--format xz` (slow)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        work = Path(tmp)
        repo = write_repo(work / "repo", {"config": "", "agents/willow.agent": WILLOW})
        image = work / "repo/images/scooby.img"
        image.parent.mkdir()
        text = "".join(f"{k}={v}\n" for k, v in release_values(repo, "v0.0.0-bench").items())
        if args.image.is_file():
            # A real build, released from the repository it was built from. Both are copied
            # first (sparse), so the benchmark never touches another run's files.
            print(f"image: {args.image} (a real build of {args.repo})")
            repo = work / "built"
            subprocess.run(["cp", "-a", "--sparse=always", str(args.repo), str(repo)], check=True)
            try:
                image = repo / args.image.resolve().relative_to(args.repo.resolve())
            except ValueError:  # the image lives elsewhere: put it where release looks
                image = repo / release.DEFAULT_IMAGE
                image.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "--sparse=always", str(args.image), str(image)], check=True)
            data = 0
        else:
            print(
                "image: images/scooby.img not found: a REPRESENTATIVE image is used "
                "(3.5 GiB sparse, root = host /usr/bin + /usr/lib/python3"
                f" + {args.precompressed_mb} MiB precompressed)"
            )
            tree = representative_image(image, work, args.precompressed_mb)
            data = int(run("du", "-sb", str(tree)).split()[0])
            make_image(image, tree, text)
            shutil.rmtree(tree)
        raw = image.stat().st_size
        used = used_bytes(image)
        print(f"  raw size {raw / MiB:,.0f} MiB, used {used / MiB:,.0f} MiB", end="")
        print(f" (file data {data / MiB:,.0f} MiB)" if data else "")
        _, t_sha = timed("sha256 of the raw image", sha256_file, image)
        for i, options in enumerate(args.zstd.split(",")):
            out = work / f"variant{i}.zst"
            size, t = timed(
                f"zstd -T0 {options} (compress only)",
                compress_only,
                image,
                out,
                ["zstd", "-T0", *options.split(), "-q", "-c"],
            )
            print(f"    -> {size / MiB:,.1f} MiB = {size / used:.1%} of used bytes")
            out.unlink()
        cluster = validated(repo)
        for fmt in ["zst"] + (["xz"] if args.xz else []):
            dist = work / f"dist-{fmt}"
            made, t_release = timed(
                f"scooby release ({fmt}: compress, sha256, bmap, json)",
                lambda fmt=fmt, dist=dist: release.make(repo, image, dist, cluster, fmt),
            )
            packed = next(a for a in made.artifacts if a.kind == "image")
            ratio = packed.size / used
            print(
                f"    -> {packed.name}: {packed.size / MiB:,.1f} MiB = {ratio:.1%} of used "
                f"bytes (target <= 35%: {'met' if ratio <= 0.35 else 'NOT met'}); "
                f"{t_release:.0f} s (target <= 180 s: "
                f"{'met' if t_release <= 180 else 'NOT met'})"
            )
            shutil.rmtree(dist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
