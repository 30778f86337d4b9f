"""Live-deploy benchmarks on this machine (no master needed): prints every figure.

    python benchmarks/bench_deploy.py [--agents N]

For a cluster of N agents (default 20), from v1 to each change:
1. what `scooby deploy` sends: the tar stream's bytes (plan.json + changed files), the
   number of files written and removed;
2. the laptop-side time: render + record + plan + stream (no SSH);
3. the master-side time: scooby-apply against a master tree in a temporary directory
   (SCOOBY_APPLY_ROOT: file work only; the commands it would run are logged, not run).

The SSH round trips and the services' reloads are measured by `nox -s test_day2` on a
booted QEMU master (its phases.json: v2_live_deploy_seconds, ..._bytes_sent).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "deploy")]

from test_apply import Version, install  # noqa: E402 - the tests' master tree

from scooby.core import layout  # noqa: E402
from scooby.deploy import request  # noqa: E402
from scooby.deploy.plan import plan  # noqa: E402
from scooby.deploy.remote import stream  # noqa: E402


def agent(i: int) -> str:
    return (
        f"AGENT_ETHERNET=b8:27:eb:00:{i // 256:02x}:{i % 256:02x}\n"
        f"AGENT_IP=192.168.64.{10 + i}\n"
        f"AGENT_RANCHER_PART_UUID=00000000-0000-4000-8000-{i:012x}\n"
        f"AGENT_PXE_ID=0000{i:04x}\nAGENT_K3S_ARGS=\n"
    )


def agents(n: int) -> dict[str, str]:
    return {f"agents/a{i:03d}.agent": agent(i) for i in range(n)}


def measure(tmp: Path, name: str, v1: Version, files: dict[str, str]) -> None:
    start = time.monotonic()
    v2 = Version(tmp, name, files)
    p = plan(v1.record, v2.record)
    payload = stream(request(v1.record, v2.record, p), v2.sources)
    laptop = time.monotonic() - start
    root = tmp / f"{name}-master"
    install(root, v1)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(root / layout.SCOOBY_APPLY.lstrip("/"))],
        input=payload,
        capture_output=True,
        env={**os.environ, "SCOOBY_APPLY_ROOT": str(root)},
    )
    master = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    print(
        f"{name:<28} {len(payload):>9} bytes sent  {len(p.write):>3} written "
        f"{len(p.remove):>3} removed  laptop {laptop:5.2f} s  scooby-apply {master:5.2f} s"
        f"  reload: {' '.join(p.actions) or '-'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    n = parser.parse_args().agents
    base = {"config": "", **agents(n)}
    manifest = "server/var/lib/rancher/k3s/server/manifests/hello.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        v1 = Version(tmp, "v1", {k: v for k, v in base.items() if k != "config"})
        print(f"cluster of {n} agents; load {os.getloadavg()[0]:.2f}")
        measure(tmp, "add-one-agent", v1, {**agents(n + 1)})
        measure(tmp, "remove-one-agent", v1, {**agents(n - 1)})
        measure(tmp, "add-a-manifest", v1, {**agents(n), manifest: "kind: Namespace\n"})


if __name__ == "__main__":
    main()
