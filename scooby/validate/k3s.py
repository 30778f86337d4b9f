"""K3S's rules, and the K3S options that follow from the user's files.

- The pinned release: its minor must not be past its end of life (schemas/k3s-releases.json).
- The pod and service networks must overlap neither of the master's networks nor each other.
- `LC_K3S_NODE_PORT_RANGE` must keep clear of the ports the master serves; the manifests'
  NodePorts must lie in it, and one the external network cannot reach is pointed out.
- `server/etc/rancher/k3s/config.yaml` would replace the generated one: `config.yaml.d/`.
- DHCP on the external network (server/etc/dnsmasq.d/) opens 67/udp there; dnsmasq must
  listen on that device; a MetalLB pool must not overlap its range.
- ServiceLB is turned off when a manifest holds a MetalLB resource (LC_K3S_SERVICELB=auto).

`facts()` gives render what it needs from the same reading: what K3S disables, the
LoadBalancer ranges and the external-DHCP switch for the firewall. docs/k3s.md cites K3S's
documentation for each rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import Master
from scooby.validate.k3s_files import Reading, read
from scooby.validate.k3s_release import check_release, end_of_life, minor, releases

__all__ = ["check", "end_of_life", "facts", "minor", "releases", "summary"]

USER_K3S_CONFIG = "server/etc/rancher/k3s/config.yaml"

# Ports the master serves or K3S uses on it; a NodePort on one would take it over (kube-proxy
# answers NodePorts on every address, the internal one included). docs.k3s.io/installation/
# requirements lists K3S's; the rest are Scooby's services.
MASTER_PORTS: dict[int, str] = {
    22: "SSH",
    53: "DNS (dnsmasq)",
    67: "DHCP (dnsmasq)",
    69: "TFTP (dnsmasq)",
    111: "rpcbind (NFS)",
    123: "NTP (chrony)",
    2049: "NFS",
    2379: "etcd",
    2380: "etcd",
    2381: "etcd metrics",
    2382: "etcd",
    5001: "the embedded registry",
    layout.K3S_API_PORT: "the K3S API",
    6444: "kube-apiserver (local)",
    8472: "flannel VXLAN",
    10010: "containerd streaming",
    layout.HTTP_PORT: "the cloud-init seeds (lighttpd)",
    **{p: "the kubelet, kube-proxy or a control-plane component" for p in range(10248, 10260)},
}


# --- networks and ports ------------------------------------------------------------------


def check_networks(master: Master) -> list[Diagnostic]:
    src, k = master.source, master.k3s
    nets = {
        "LC_K3S_CLUSTER_CIDR": k.cluster_cidr,
        "LC_K3S_SERVICE_CIDR": k.service_cidr,
    }
    theirs = {
        "LC_INTERNAL_NET": master.internal.network,
        "LC_EXTERNAL_NET": master.external.network,
    }
    out = []
    for key, net in nets.items():
        for other, net2 in theirs.items():
            if net.overlaps(net2):
                what = "pod" if key == "LC_K3S_CLUSTER_CIDR" else "service"
                out.append(
                    error(
                        src.path,
                        src.line(key) or src.line(other),
                        f"K3S's {what} network {net} overlaps {other}={net2}: traffic for "
                        f"those addresses would go to the wrong place; set {key} (K3S's "
                        f"{'cluster' if what == 'pod' else 'service'}-cidr) to a free range",
                        key,
                    )
                )
    if k.cluster_cidr.overlaps(k.service_cidr):
        out.append(
            error(
                src.path,
                src.line("LC_K3S_SERVICE_CIDR") or src.line("LC_K3S_CLUSTER_CIDR"),
                f"{k.service_cidr} overlaps the pod network LC_K3S_CLUSTER_CIDR={k.cluster_cidr}",
                "LC_K3S_SERVICE_CIDR",
            )
        )
    return out


def check_node_port_range(master: Master) -> list[Diagnostic]:
    src = master.source
    line = src.line("LC_K3S_NODE_PORT_RANGE")
    first, last = master.k3s.node_port_range
    key = "LC_K3S_NODE_PORT_RANGE"
    if not 1 <= first <= last <= 65535:
        return [error(src.path, line, f"{first}-{last} is not a port range (1-65535)", key)]
    taken = [p for p in sorted(MASTER_PORTS) if first <= p <= last]
    if taken:
        named = ", ".join(f"{p} ({MASTER_PORTS[p]})" for p in taken[:4])
        more = f" and {len(taken) - 4} more" if len(taken) > 4 else ""
        return [
            error(
                src.path,
                line,
                f"{first}-{last} holds ports the master serves: {named}{more}; a NodePort there "
                "would take the port over on every address. Start the range above "
                f"{max(taken)} (K3S's default is 30000-32767)",
                key,
            )
        ]
    return []


def check_open_ports(master: Master) -> list[Diagnostic]:
    src = master.source
    return [
        error(
            src.path,
            src.line("LC_EXTERNAL_OPEN_PORTS"),
            f"{o.port}/{o.proto}: not a port (1-65535)",
            "LC_EXTERNAL_OPEN_PORTS",
        )
        for o in master.open_ports
        if not 1 <= o.port <= 65535
    ]


# --- facts for render ------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    disable: tuple[str, ...]  # K3S packaged components to turn off
    disable_reason: str
    lb_ranges: tuple[str, ...]  # "FIRST-LAST" LoadBalancer addresses on the external network
    external_dhcp: bool  # a dhcp-range on the external network: 67/udp open there


def facts(master: Master, repo: Path, reading: Reading | None = None) -> Facts:
    reading = reading or read(repo)
    disable, reason = (), ""
    setting = master.k3s.servicelb
    if setting == "off":
        disable, reason = ("servicelb",), "ServiceLB off: LC_K3S_SERVICELB=off"
    elif setting == "auto" and reading.metallb is not None:
        at = reading.metallb
        disable = ("servicelb",)
        reason = (
            f"ServiceLB off: MetalLB is in the manifests ({at.rel}:{at.line}) and needs it off "
            "(LC_K3S_SERVICELB=auto)"
        )
    ext = master.external.network
    lb = tuple(f"{p.start}-{p.end}" for p in reading.pools if p.start in ext and p.end in ext)
    dhcp = any(r.start in ext for r in reading.dhcp)
    return Facts(disable, reason, tuple(dict.fromkeys(lb)), dhcp)


def summary(master: Master, repo: Path) -> list[str]:
    """validate's lines about K3S and what the external network reaches (the firewall)."""
    found, reading = facts(master, repo), read(repo)
    k = master.k3s
    first, last = k.node_port_range
    lines = [
        f"k3s      {k.version}  pods {k.cluster_cidr}  services {k.service_cidr}  "
        f"NodePorts {first}-{last}  ServiceLB {'off' if found.disable else 'on'}"
    ]
    if found.disable:
        lines.append(f"         {found.disable_reason}")
    opened = ["22/tcp", f"{layout.K3S_API_PORT}/tcp"]
    opened += [f"{o.port}/{o.proto}" for o in master.open_ports]
    if found.external_dhcp:
        at = next(r.at for r in reading.dhcp if r.start in master.external.network)
        opened.append(f"67/udp (DHCP, {at.rel}:{at.line})")
    lines.append(f"external {master.external.ip}: {', '.join(opened)}")
    if found.lb_ranges:
        lines.append(f"external LoadBalancer addresses: {', '.join(found.lb_ranges)}")
    return lines


# --- the checks -----------------------------------------------------------------------------


def check(
    master: Master, repo: Path, server_files: tuple[str, ...], today: date | None = None
) -> list[Diagnostic]:
    out = check_release(master, today)
    out += check_networks(master)
    out += check_node_port_range(master)
    out += check_open_ports(master)
    if USER_K3S_CONFIG in server_files:
        out.append(
            error(
                USER_K3S_CONFIG,
                None,
                "this would replace the K3S settings Scooby writes (node IPs, the agent join "
                "token, the firewall's assumptions): put your own settings in "
                "server/etc/rancher/k3s/config.yaml.d/NAME.yaml, which K3S reads after it",
            )
        )
    reading = read(repo)
    out += _check_node_ports(master, reading)
    out += _check_dhcp(master, reading)
    return out


def _check_node_ports(master: Master, reading: Reading) -> Iterator[Diagnostic]:
    first, last = master.k3s.node_port_range
    opened = {(o.port, o.proto) for o in master.open_ports}
    for np in reading.node_ports:
        if not first <= np.port <= last:
            yield error(
                np.at.rel,
                np.at.line,
                f"nodePort {np.port} is outside K3S's service-node-port-range {first}-{last} "
                "(LC_K3S_NODE_PORT_RANGE in config): K3S would refuse the Service",
                np.service,
            )
        elif (np.port, np.proto) not in opened:
            yield warning(
                np.at.rel,
                np.at.line,
                f"nodePort {np.port}/{np.proto} is not reachable from the external network; "
                f'add it to LC_EXTERNAL_OPEN_PORTS in config ("{np.port}/{np.proto}") if it '
                "should be",
                np.service,
            )


def _check_dhcp(master: Master, reading: Reading) -> Iterator[Diagnostic]:
    ext, dev = master.external.network, master.external.device
    external = [r for r in reading.dhcp if r.start in ext]
    if not external:
        return
    listening = any(name == dev for name, _ in reading.interfaces)
    for r in external:
        if not listening:
            yield error(
                r.at.rel,
                r.at.line,
                f"this DHCP range is on the external network, but dnsmasq listens on "
                f"{master.internal.device} only: add `interface={dev}` to {r.at.rel}",
            )
        for pool in reading.pools:
            if pool.start <= r.end and r.start <= pool.end:
                yield error(
                    pool.at.rel,
                    pool.at.line,
                    f"MetalLB pool {pool.start}-{pool.end} overlaps the DHCP range "
                    f"{r.start}-{r.end} ({r.at.rel}:{r.at.line}): dnsmasq would lease "
                    "addresses MetalLB hands to Services",
                    pool.key,
                )
