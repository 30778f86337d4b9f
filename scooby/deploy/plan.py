"""What a deploy changes on the master: the difference between two records.

A change is *live* when every changed path matches one of LIVE's prefixes: the files are
swapped in place and the listed services reloaded, with no reboot. Anything else (the boot
partition, systemd units, the base, the K3S version) needs a new image and a reboot: an
A/B deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scooby.core import layout

# On-master path prefix -> action; the first match wins (shared with scooby-update).
LIVE = layout.DEPLOY_LIVE


MANIFESTS = "/var/lib/rancher/k3s/server/manifests/"


def live_action(path: str) -> str | None:
    """The action for a live change of `path`, or None when it needs a reboot."""
    for prefix, action in LIVE:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return action
    return None


@dataclass
class Plan:
    write: list[str] = field(default_factory=list)  # added or changed files
    remove: list[str] = field(default_factory=list)
    agents_added: list[str] = field(default_factory=list)
    agents_removed: list[str] = field(default_factory=list)
    agents_changed: list[str] = field(default_factory=list)  # address, MAC or PXE ID
    actions: list[str] = field(default_factory=list)
    reboot: list[str] = field(default_factory=list)  # why a reboot (A/B) is needed

    @property
    def empty(self) -> bool:
        return not (
            self.write
            or self.remove
            or self.agents_added
            or self.agents_removed
            or self.agents_changed
            or self.reboot
        )


ACTION_ORDER = layout.DEPLOY_ACTIONS


def plan(old: dict, new: dict) -> Plan:
    p = Plan()
    before, after = old["files"], new["files"]
    p.write = sorted(path for path, e in after.items() if before.get(path) != e)
    p.remove = sorted(set(before) - set(after))
    old_agents, new_agents = old["agents"], new["agents"]
    p.agents_added = sorted(set(new_agents) - set(old_agents))
    p.agents_removed = sorted(set(old_agents) - set(new_agents))
    p.agents_changed = sorted(
        n for n in set(old_agents) & set(new_agents) if old_agents[n] != new_agents[n]
    )
    actions = set()
    for path in p.write + p.remove:
        action = live_action(path)
        if action is None:
            p.reboot.append(path)
        elif action:
            actions.add(action)
    if p.agents_added or p.agents_removed or p.agents_changed:
        actions |= {"daemon-reload", "dnsmasq", "exportfs"}
    for key in sorted(set(old["release"]) | set(new["release"])):
        if old["release"].get(key) != new["release"].get(key):
            was, now = old["release"].get(key) or "-", new["release"].get(key) or "-"
            p.reboot.append(f"release {key}: {was} -> {now}")
    p.actions = [a for a in ACTION_ORDER if a in actions]
    return p


def describe(p: Plan, host: str) -> list[str]:
    """The plan as `scooby deploy --dry-run` prints it."""
    if p.empty:
        return [f"{host} is up to date: nothing to deploy"]
    lines = [f"deploy to {host}: {'REBOOT (A/B)' if p.reboot else 'live, no reboot'}"]
    for path in p.write:
        lines.append(f"  write   {path}")
    for path in p.remove:
        note = "  (and its resources, from K3S)" if path.startswith(MANIFESTS) else ""
        lines.append(f"  remove  {path}{note}")
    for name in p.agents_added:
        lines.append(f"  agent + {name}  (lease, export, TFTP folder, seed and layer go live)")
    for name in p.agents_removed:
        lines.append(
            f"  agent - {name}  (drained and deleted from K3S; export, lease and folders"
            " removed; its changes kept aside)"
        )
    for name in p.agents_changed:
        lines.append(f"  agent ~ {name}  (address, MAC or PXE ID changed: re-exported)")
    if p.actions:
        lines.append(f"  reload  {' '.join(p.actions)}")
    for why in p.reboot:
        lines.append(f"  reboot  {why}")
    return lines
