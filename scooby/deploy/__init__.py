"""Deploy: a running master follows the repository, without a reflash (docs/day2.md).

    render (into REPO/build/deploy/render) -> the record of the new state
    ssh HOST: the master's record -> plan (files, services, agents, reboot or not)
    dry run: the plan, nothing sent
    live plan: one tar (plan.json + the changed files) into `sudo scooby-apply` on the master
    rollback: plan from the master's record back to the one before its last deploy; the
              files come from what that deploy kept on the master (layout.DEPLOY_PREVIOUS)

Only what changed is sent. A plan that needs a reboot (the boot partition, systemd units,
the base or the K3S version) is refused, with the reasons: A/B deploys are not built yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from scooby.core.errors import ScoobyError, error
from scooby.core.model import Cluster
from scooby.deploy.plan import Plan, plan
from scooby.deploy.remote import Target


@dataclass(frozen=True)
class Deployed:
    plan: Plan
    sent: int  # bytes streamed to the master (0 for a dry run or an empty plan)
    seconds: float
    output: str  # scooby-apply's report


def deploy(cluster: Cluster, target: Target, work: Path, dry_run: bool = False) -> Deployed:
    from scooby.deploy import remote
    from scooby.render import render
    from scooby.render.record import record, sources

    start = time.monotonic()
    rendered = render(cluster, work / "render").out
    new = record(cluster, rendered)
    old = remote.read_record(target)
    p = plan(old, new)
    if dry_run or p.empty:
        return Deployed(p, 0, time.monotonic() - start, "")
    if p.reboot:
        raise ScoobyError(
            [
                error(target.host, None, f"needs a reboot (A/B deploy, not built yet): {why}")
                for why in p.reboot
            ]
        )
    payload = remote.stream(request(old, new, p), sources(cluster, rendered))
    output = remote.apply(target, payload)
    return Deployed(p, len(payload), time.monotonic() - start, output)


def rollback(target: Target, dry_run: bool = False) -> Deployed:
    """Return the master to the state before its last deploy, with the files that deploy
    kept on the master (nothing is rendered or sent but the plan)."""
    from scooby.core import layout
    from scooby.deploy import remote

    start = time.monotonic()
    current = remote.read_record(target)
    previous = remote.read_record(target, f"{layout.DEPLOY_PREVIOUS}/record.json")
    p = plan(current, previous)
    if dry_run or p.empty:
        return Deployed(p, 0, time.monotonic() - start, "")
    if p.reboot:
        raise ScoobyError(
            [
                error(target.host, None, f"the rollback needs a reboot (A/B): {why}")
                for why in p.reboot
            ]
        )
    payload = remote.stream({**request(current, previous, p), "rollback": True}, {})
    output = remote.apply(target, payload)
    return Deployed(p, len(payload), time.monotonic() - start, output)


def request(old: dict, new: dict, p: Plan) -> dict:
    """plan.json, what scooby-apply on the master reads first."""
    return {
        "format": 1,
        "manifest": new,
        "previous_agents": old["agents"],
        # what the last deploy put at each path this one replaces or removes: a file that
        # differs was changed on the master, and scooby-apply keeps a copy of it
        "previous_files": {
            path: old["files"][path]["sha256"]
            for path in p.write + p.remove
            if path in old["files"]
        },
        "write": p.write,
        "remove": p.remove,
        "agents_added": p.agents_added,
        "agents_removed": p.agents_removed,
        "agents_changed": p.agents_changed,
        "actions": p.actions,
    }


__all__ = ["Deployed", "Target", "deploy", "request", "rollback"]
