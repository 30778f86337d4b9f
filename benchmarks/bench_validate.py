"""`scooby validate` as a whole process: the original's example, and 250 agents + 20 manifests.

    python benchmarks/bench_validate.py [--runs N]

Targets on the 2-core build machine: <= 1.0 s and <= 2.0 s (median wall time of a cold
process, Python start-up included). Prints one line per case and exits 1 if a target is
missed. Profile a slow run with `python -X importtime -m scooby validate --repo DIR`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = "server/var/lib/rancher/k3s/server/manifests"

AGENT = """\
AGENT_ETHERNET=b8:27:eb:{a:02x}:{b:02x}:{c:02x}
AGENT_IP=192.168.64.{ip}
AGENT_RANCHER_PART_UUID={uuid}
AGENT_PXE_ID={pxe:08x}
AGENT_K3S_ARGS="--node-label 'scooby.example/rack={rack}'"
"""
DEPLOYMENT = """\
apiVersion: v1
kind: Namespace
metadata:
  name: app-{n}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{n}
  namespace: app-{n}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web-{n}}}
  template:
    metadata:
      labels: {{app: web-{n}}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{{containerPort: 80}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-{n}
  namespace: app-{n}
spec:
  type: LoadBalancer
  selector: {{app: web-{n}}}
  ports: [{{port: 80}}]
"""
HELM = """\
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: chart-{n}
  namespace: kube-system
spec:
  repo: https://charts.example.invalid
  chart: chart-{n}
  targetNamespace: app-{n}
  valuesContent: |-
    replicas: 1
"""


def generate(root: Path, agents: int = 250, manifests: int = 20) -> Path:
    shutil.copytree(ROOT / "examples" / "original", root)
    for i in range(agents):
        (root / "agents" / f"node-{i:03d}.agent").write_text(
            AGENT.format(
                a=i >> 16,
                b=(i >> 8) & 255,
                c=i & 255,
                ip=i + 2 if i + 2 != 65 else 253,
                uuid=f"{i:08x}-0000-4000-8000-{i:012x}",
                pxe=0x10000000 + i,
                rack=i % 8,
            )
        )
    (root / "agents" / "willow.agent").unlink()  # its IP sits among the generated ones
    (root / "agents" / "ted.agent").unlink()
    folder = root / MANIFESTS
    for n in range(manifests - 2):  # plus the original's metallb.yml and pihole.yml
        template = DEPLOYMENT if n % 2 else HELM
        (folder / f"app-{n:02d}.yaml").write_text(template.format(n=n))
    return root


def measure(repo: Path, runs: int) -> tuple[float, float, str]:
    scooby = shutil.which("scooby") or sys.executable
    cmd = [scooby, "validate", "--repo", str(repo)]
    if scooby == sys.executable:
        cmd[1:1] = ["-m", "scooby"]
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if run.returncode != 0:
            raise SystemExit(f"scooby validate failed on {repo}:\n{run.stderr}")
        out = run.stdout
    return statistics.median(times), min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="scooby-bench-") as tmp:
        cases = [
            ("original example (2 agents, 2 manifests)", ROOT / "examples" / "original", 1.0),
            ("generated (250 agents, 20 manifests)", generate(Path(tmp) / "big"), 2.0),
        ]
        for name, repo, target in cases:
            median, best, out = measure(repo, args.runs)
            agents = next(line for line in out.splitlines() if line.startswith("agents"))
            verdict = "ok" if median <= target else "SLOW"
            ok &= median <= target
            print(
                f"{name:<44} median {median:.3f} s  best {best:.3f} s  "
                f"target {target:.1f} s  {verdict}  ({agents.split()[1]} agents checked)"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
