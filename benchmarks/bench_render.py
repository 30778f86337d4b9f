"""`scooby render` benchmarks: the whole process, as a user runs it. Run on demand.

    python benchmarks/bench_render.py [--runs N] [--out-dir DIR]

For the original's example cluster (tests/data/example-repo) and a 250-agent cluster, with
the daemons' checkers (the default) and with --no-check, prints per case: the median and
best wall time of N runs, and the median CPU time (user + system, the process and its
children: the checkers). Targets: example <= 1.5 s, 250 agents <= 4 s.

Wall time here depends on the shared disk (a 250-agent render is 4,500 files; runs after
the first reuse the workspace beside OUT and rewrite only what changed), so CPU time is
printed too, and --out-dir can point at a tmpfs (/dev/shm) to separate the two. The first
run of each case, which creates the trees, is timed and printed separately ("cold").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import big_repo  # noqa: E402  (the same 250-agent cluster the tests check)

EXAMPLE = ROOT / "tests" / "data" / "example-repo"
TARGETS = {"example": 1.5, "250 agents": 4.0}


def run_once(repo: Path, out: Path, check: bool) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "scooby", "render", "--repo", str(repo), "--out", str(out)]
    if not check:
        cmd.append("--no-check")
    before = os.times()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "CI": ""})
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out-dir", type=Path, default=None, help="where to render")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scooby-bench-render.", dir=args.out_dir))
    try:
        repos = {"example": EXAMPLE, "250 agents": big_repo(work / "big", 250)}
        print(f"scooby render, whole process; {args.runs} runs each; output under {work}")
        print(f"{'cluster':<12} {'checks':<7} {'median':>8} {'best':>8} {'cpu':>8}  target")
        for name, repo in repos.items():
            for check in (True, False):
                out = work / f"out-{name.replace(' ', '-')}"
                cold = run_once(repo, out, check)  # creates OUT and its workspace
                results = [run_once(repo, out, check) for _ in range(args.runs)]
                walls = [w for w, _ in results]
                median = statistics.median(walls)
                verdict = "ok" if median <= TARGETS[name] else "OVER"
                print(
                    f"{name:<12} {'yes' if check else 'no':<7} {median:>7.2f}s {min(walls):>7.2f}s"
                    f" {statistics.median(c for _, c in results):>7.2f}s"
                    f"  <= {TARGETS[name]} s: {verdict}   (cold {cold[0]:.2f}s)"
                )
                shutil.rmtree(out)  # the next case starts cold again
                shutil.rmtree(out.with_name(f".{out.name}.next"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
