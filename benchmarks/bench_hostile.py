"""`scooby validate` on adversarial input: worst-case wall time and peak memory, printed.

    python benchmarks/bench_hostile.py

Each input is the largest or most expensive of its family that Scooby accepts to read
(within its size limits): an alias bomb, a nesting bomb, a manifest flooded with unknown
fields, a config and an agent file at the KEY=VALUE size limit, 1,000 agents (the cap),
and a 1 MiB manifest of long lines. Each runs as its own `python -m scooby validate`
process; figures are its wall time and its peak RSS (wait4's rusage of that child).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = "server/var/lib/rancher/k3s/server/manifests"
WILLOW = (
    "AGENT_ETHERNET=b8:27:eb:81:1a:52\nAGENT_IP=192.168.64.65\n"
    "AGENT_RANCHER_PART_UUID=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1\nAGENT_PXE_ID=c6811a52\n"
)


def _bomb(levels: int) -> str:
    head = "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: x\nspec:\n"
    body = "  a0: &a0 [" + ", ".join(["x"] * 9) + "]\n"
    body += "".join(
        f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, levels)
    )
    return head + body + f"  valuesContent: *a{levels - 1}\n"


def _agents(n: int) -> dict[str, str]:
    files = {"config": "LC_INTERNAL_NET=10.64.0.0/16\nLC_INTERNAL_IP=10.64.0.1\n"}
    for i in range(n):
        files[f"agents/n{i}.agent"] = (
            f"AGENT_ETHERNET=b8:27:eb:00:{i >> 8:02x}:{i & 255:02x}\n"
            f"AGENT_IP=10.64.{4 + (i >> 8)}.{i & 255}\n"
            f"AGENT_RANCHER_PART_UUID=0000{i:04x}-02\nAGENT_PXE_ID=0000{i:04x}\n"
        )
    return files


CASES: dict[str, dict[str, str]] = {
    "alias bomb (9^30 values)": {f"{MANIFESTS}/bomb.yaml": _bomb(30)},
    "nesting bomb (500,000 '[')": {f"{MANIFESTS}/deep.yaml": "[" * 500_000 + "]" * 500_000},
    "20,000 unknown fields": {
        f"{MANIFESTS}/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
        + "".join(f"f{i}: 1\n" for i in range(20_000))
    },
    "1 MiB manifest of long values": {
        f"{MANIFESTS}/long.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
        + "".join(f"  k{i}: {'v' * 1000}\n" for i in range(1000))
    },
    "64 KiB config of unknown keys": {"config": "".join(f"LC_X{i:05d}=1\n" for i in range(5400))},
    "64 KiB agent file of one value": {"agents/a.agent": "AGENT_K3S_ARGS=" + "x" * 65000 + "\n"},
    "1,000 agents (the cap)": _agents(1000),
    "1,001 agents (refused)": _agents(1001),
}


def run(files: dict[str, str]) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory(prefix="scooby-bench.") as tmp:
        repo = Path(tmp)
        base = {"config": "", "agents/willow.agent": WILLOW}
        if any(k.startswith("agents/") for k in files):
            base.pop("agents/willow.agent")
        for rel, text in {**base, **files}.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.monotonic() - start
        return seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'input':<34} {'exit':>4} {'seconds':>8} {'peak RSS MiB':>13}")
    worst_time = worst_rss = 0.0
    for name, files in CASES.items():
        seconds, rss_kib, code = run(files)
        worst_time, worst_rss = max(worst_time, seconds), max(worst_rss, rss_kib / 1024)
        print(f"{name:<34} {code:>4} {seconds:>8.2f} {rss_kib / 1024:>13.1f}")
    print(f"worst: {worst_time:.2f} s, {worst_rss:.1f} MiB")


if __name__ == "__main__":
    main()
