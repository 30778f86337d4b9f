"""Build benchmarks on this machine: run on demand (as root), prints every figure.

    python benchmarks/bench_build.py [--repo DIR] [--no-peer] [--skip-second-cold]

0. the peer, cold: Debian's own Raspberry Pi image recipe (image-specs, Pi 4 bookworm, with
   vmdb2: benchmarks/peer/, its source and every change in its README.md), run first and
   back to back with Scooby's cold build, so both meet the same machine
1. cold build: `scooby build --clean --k3s=none` (empty .cache/ of the bench repository)
2. rebuild after changing only an agent file
3. image size (apparent and allocated)
4. peak memory of the whole process tree (sum of RSS of scooby and every descendant,
   sampled every 0.2 s from /proc), for each build
5. a second cold build of the same inputs: are the file contents identical? (both roots
   are dumped with debugfs rdump and compared file by file; the FAT partitions byte by byte)

The bench repository (default build/bench/repo) is its own: its .cache is NOT the
checkout's, so the cold builds are really cold (.deb downloads included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "build")]  # conftest, test_image


def tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) of pid and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(p)
        rss[p] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


PEER = ROOT / "benchmarks" / "peer"


def timed_build(repo: Path, *extra: str) -> tuple[float, int, str]:
    return timed(["scooby", "build", "--repo", str(repo), "--k3s=none", *extra])


def timed(cmd: list[str], cwd: Path | None = None, env=None) -> tuple[float, int, str]:
    """Wall time, peak memory of the process tree, and output (with the load average)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out[-4000:]}")
    # The machine is shared: say how busy it was (1, 5, 15 min load averages at the end).
    out += "load average at the end: {:.1f} {:.1f} {:.1f}\n".format(*os.getloadavg())
    return time.monotonic() - start, peak, out


def partitions(image: Path) -> list[dict]:
    return json.loads(subprocess.check_output(["sfdisk", "-J", str(image)]))["partitiontable"][
        "partitions"
    ]


def dump_root(image: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    offset = partitions(image)[1]["start"] * 512
    subprocess.run(
        ["debugfs", "-R", f"rdump / {out}", f"{image}?offset={offset}"],
        check=True,
        capture_output=True,
    )
    return out


def digests(tree: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(tree).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                h = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = f"{st.st_mode:o}:{st.st_uid}:{st.st_gid}:{h}"
            else:
                out[rel] = f"{st.st_mode:o}:{st.st_uid}:{st.st_gid}"
    return out


def compare(a: Path, b: Path, work: Path) -> None:
    pa, pb = partitions(a), partitions(b)
    fat = [(p["start"] * 512, p["size"] * 512) for p in (pa[0], pb[0])]
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(fat[0][0])
        fb.seek(fat[1][0])
        same_fat = fat[0][1] == fat[1][1] and fa.read(fat[0][1]) == fb.read(fat[1][1])
    print(f"second cold build: boot (FAT) partition byte-identical: {same_fat}")
    da = digests(dump_root(a, work / "a"))
    db = digests(dump_root(b, work / "b"))
    differ = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    print(f"second cold build: root files compared: {len(da)}; differing (contents, mode or "
          f"owner, timestamps ignored): {len(differ)}")  # fmt: skip
    for k in differ[:50]:
        print(f"  differs: /{k}")
    same_bytes = a.read_bytes() == b.read_bytes()
    print(f"second cold build: whole image byte-identical: {same_bytes}")
    shutil.rmtree(work / "a")
    shutil.rmtree(work / "b")


def peer(work: Path) -> dict:
    """Debian's image-specs Pi 4 bookworm recipe with vmdb2, cold (no rootfs tarball)."""
    if not shutil.which("vmdb2"):
        sys.exit("the peer needs vmdb2: apt-get install --no-install-recommends vmdb2 debootstrap "
                 "kpartx parted dosfstools zerofree (or run with --no-peer)")  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    image = work / "raspi_4_bookworm.img"
    image.unlink(missing_ok=True)
    # As image-specs' Makefile runs it: with a rootfs tarball, which a cold run finds absent
    # (so it debootstraps) and writes at the end (the recipe's cache-rootfs step).
    tarball = work / "raspi_4_bookworm.tar.gz"
    tarball.unlink(missing_ok=True)
    cmd = ["vmdb2", f"--rootfs-tarball={tarball}", f"--output={image}",
           f"--log={work / 'vmdb2.log'}", "raspi_4_bookworm.yaml"]  # fmt: skip
    env = None
    no_dm = "device-mapper" not in Path("/proc/misc").read_text()
    no_vfat = "vfat" not in Path("/proc/filesystems").read_text().split()
    if no_dm or no_vfat:
        # A kernel without device-mapper or vfat (this machine's): kpartx cannot map the
        # partitions, mount cannot mount the FAT one. The stand-ins in peer/bin map each
        # partition to a loop device, and give the FAT one a staging folder that mtools
        # copies in at umount (peer/README.md).
        print("no device-mapper or vfat in this kernel: the peer runs with benchmarks/peer/bin")
        env = {**os.environ, "PATH": f"{PEER / 'bin'}:{os.environ['PATH']}"}
    seconds, peak, out = timed(cmd, cwd=PEER, env=env)
    print(out[-2000:])
    return {"wall": seconds, "peak": peak, **sizes(image)}


def sizes(image: Path) -> dict:
    st = image.stat()
    return {"raw": st.st_size, "allocated": st.st_blocks * 512}


def table(rows: dict[str, dict]) -> None:
    print(f"{'what':<44} {'wall':>9} {'peak mem':>9} {'raw / allocated image':>22}")
    for what, r in rows.items():
        size = (
            f"{r['raw'] / 2**30:.2f} / {r['allocated'] / 2**30:.2f} GiB" if "raw" in r else "same"
        )
        print(f"{what:<44} {r['wall']:>7.1f} s {r['peak'] / 2**30:>5.2f} GiB {size:>22}")
    if "peer, cold" in rows:
        ratio = rows["Scooby, cold"]["wall"] / rows["peer, cold"]["wall"]
        print(f"Scooby cold / peer cold: {ratio:.3f} (target <= 0.12)")
    print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


def main() -> None:
    from test_image import make_repo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "build" / "bench" / "repo")
    parser.add_argument("--skip-second-cold", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer (about 27 min)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    cache = repo / ".cache"
    if cache.is_symlink():
        cache.unlink()
    cache.mkdir(parents=True, exist_ok=True)  # its own, so --clean empties only this one
    make_repo(repo)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    image = repo / "images" / "scooby.img"
    rows: dict[str, dict] = {}
    if not args.no_peer:
        rows["peer, cold"] = peer(repo.parent / "peer")
        print(f"peer cold: {rows['peer, cold']['wall']:.1f} s")

    seconds, peak, out = timed_build(repo, "--clean")
    rows["Scooby, cold"] = {"wall": seconds, "peak": peak, **sizes(image)}
    print(out)
    print(f"cold build: {seconds:.1f} s, peak memory (process tree RSS) {peak / 2**30:.2f} GiB")
    size = image.stat().st_size
    allocated = image.stat().st_blocks * 512
    print(f"image size: {size / 2**30:.2f} GiB raw ({size} bytes), {allocated / 2**30:.2f} GiB "
          "allocated on disk (sparse)")  # fmt: skip

    agent = repo / "agents" / "willow.agent"
    agent.write_text(
        agent.read_text().replace("AGENT_K3S_ARGS=", "AGENT_K3S_ARGS=--node-label=bench")
    )
    seconds, peak2, out = timed_build(repo)
    print(out)
    print(
        f"rebuild after changing an agent file: {seconds:.1f} s, "
        f"peak memory {peak2 / 2**30:.2f} GiB"
    )
    rows["Scooby, warm (one agent file changed)"] = {"wall": seconds, "peak": peak2}
    table(rows)

    if args.skip_second_cold:
        return
    agent.write_text(agent.read_text().replace("--node-label=bench", ""))
    first = image.with_name("first.img")
    seconds, _, _ = timed_build(repo)  # back to the original inputs
    shutil.move(image, first)
    seconds, peak3, out = timed_build(repo, "--clean")
    print(f"second cold build: {seconds:.1f} s, peak memory {peak3 / 2**30:.2f} GiB")
    compare(first, image, repo.parent)
    first.unlink()


if __name__ == "__main__":
    main()
