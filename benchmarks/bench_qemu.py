"""QEMU boot test benchmark on this machine: run on demand (as root), prints every figure.

    python benchmarks/bench_qemu.py [--runs N]

Builds (or reuses, through .cache/) the default image of the QEMU test's repository
(build/test-qemu-repo/repo: one agent, `--k3s=none`, a generated SSH key), then runs
`scooby test-qemu` on it N times and prints, per run and as the median:

- QEMU start -> master banner (`BUFFY WILL PATROL TONIGHT`) under TCG
- QEMU start -> agent banner (`WILLOW IS ONLINE`), first boot and after `scooby-agent reset`
- each phase's start (seconds into the run: phases overlap) and time
- the whole test's wall time (target: <= 5 min on this 2-core machine when it is otherwise
  idle), the CPU time of the test and its VMs (user + sys), and the load average before and
  after, so that a figure taken while other jobs shared the cores can be told apart
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "testqemu")]  # conftest, test_qemu

BUDGET = 5 * 60  # the whole test on this 2-core machine, otherwise idle (issue: Speed)


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def base_stages(repo: Path) -> str:
    """Which base stages this build took from the cache and which it built, as its log says
    (`=== stage NAME: S s, cached=BOOL`): a cold base is minutes, a cached one a second."""
    said = []
    for line in (repo / "build" / "build.log").read_text(errors="replace").splitlines():
        if line.startswith("=== stage ") and ", cached=" in line:
            name = line.removeprefix("=== stage ").split(":", 1)[0]
            if name.endswith("-base"):
                cached = line.split(", cached=", 1)[1].startswith("True")
                said.append(f"{name} {'cached' if cached else 'built'}")
    return ", ".join(said) or "no base stage in the build log"


def main() -> int:
    from test_qemu import build_repo  # the same repository as the pytest test

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    start = time.monotonic()
    built = build_repo()
    print(f"image: {built.image} ({built.image.stat().st_size / 2**30:.2f} GiB), "
          f"build {time.monotonic() - start:.0f} s ({base_stages(built.repo)})")  # fmt: skip

    walls, reports = [], []
    for n in range(args.runs):
        out = ROOT / "build" / "bench-qemu" / f"run{n + 1}"
        before, cpu, start = load(), cpu_seconds(), time.monotonic()
        done = subprocess.run(
            ["scooby", "test-qemu", "--repo", str(built.repo), "--image", str(built.image)]
            + ["--identity", str(built.key), "--out", str(out)],
            capture_output=True,
            text=True,
        )
        wall, cpu = time.monotonic() - start, cpu_seconds() - cpu
        report = json.loads((out / "phases.json").read_text())
        walls.append(wall)
        reports.append(report)
        print(
            f"\nrun {n + 1}: exit {done.returncode}, wall {wall:.0f} s, CPU {cpu:.0f} s "
            f"(user+sys, test and VMs); load average {before} before, {load()} after"
        )
        print(f"  {'phase':<20} {'result':<8} {'start':>7} {'time':>9}")
        for phase in report["phases"]:
            print(f"  {phase['name']:<20} {phase['status']:<8} {phase.get('start', 0):5.0f} s "
                  f"{phase['seconds']:7.1f} s")  # fmt: skip
        for key, seconds in report["timings"].items():
            print(f"  {key:<40} {seconds:7.1f} s")

    print("\nmedian over", args.runs, "run(s):")
    for key in reports[0]["timings"]:
        values = [r["timings"][key] for r in reports if key in r["timings"]]
        print(f"  {key:<40} {statistics.median(values):7.1f} s")
    median = statistics.median(walls)
    verdict = "within" if median <= BUDGET else "OVER"
    print(f"  whole test (wall)                        {median:7.1f} s ({verdict} {BUDGET} s "
          "when idle: compare the load average)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
