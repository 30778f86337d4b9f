"""The K3S phases: nodes Ready, a manifest deployed; SKIPPED (with the reason) for an image
without K3S."""

from __future__ import annotations

import time

from scooby.core import layout
from scooby.testqemu.phases import Failed, Skip


def k3s_nodes(s, deadline: float) -> str | Skip:
    if s.k3s_mode in ("", layout.NO_K3S):
        return Skip(f"image built without K3S (K3S_MODE={s.k3s_mode or 'unset'})")
    want = {s.cluster.master.hostname, s.agent.name}
    last = ""
    while time.monotonic() < deadline:
        done = s.master_cmd("sudo k3s kubectl get nodes --no-headers", 120)
        last = (done.stdout + done.stderr).strip()
        ready = {ln.split()[0] for ln in last.splitlines() if ln.split()[1:2] == ["Ready"]}
        if want <= ready:
            return f"Ready: {', '.join(sorted(ready))}"
        time.sleep(10)
    raise Failed(f"nodes not all Ready: {' '.join(last.split())!r}")


def k3s_manifest(s, deadline: float) -> str | Skip:
    import yaml

    from scooby.core.model import MANIFESTS

    objects = []
    for rel in s.cluster.server_files:
        if rel.startswith(MANIFESTS) and rel.endswith((".yaml", ".yml")):
            for doc in yaml.safe_load_all((s.cluster.repo / rel).read_text()):
                if isinstance(doc, dict) and doc.get("kind") and doc.get("metadata"):
                    objects.append((rel, doc))
    if not objects:
        return Skip(f"no manifest under {MANIFESTS} to look for")
    rel, doc = objects[0]
    kind, meta = doc["kind"], doc["metadata"]
    command = f"sudo k3s kubectl get {kind} {meta['name']}"
    if meta.get("namespace"):
        command += f" -n {meta['namespace']}"
    last = ""
    while time.monotonic() < deadline:
        done = s.master_cmd(command, 120)
        if done.returncode == 0:
            return f"{kind} {meta['name']} from {rel} deployed"
        last = (done.stdout + done.stderr).strip()
        time.sleep(10)
    raise Failed(f"{kind} {meta['name']} from {rel} not deployed: {last!r}")
