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

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from scooby.core import layout
from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import Master
from scooby.core.paths import SCHEMAS_DIR
from scooby.load import envfile
from scooby.validate import manifests

RELEASES = SCHEMAS_DIR / "k3s-releases.json"
USER_K3S_CONFIG = "server/etc/rancher/k3s/config.yaml"
DNSMASQ_DIR = "server/etc/dnsmasq.d"
# Debian's dnsmasq reads every file in /etc/dnsmasq.d but these (/etc/default/dnsmasq).
DNSMASQ_IGNORED = (".dpkg-dist", ".dpkg-old", ".dpkg-new", "~")

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


# --- the release table -------------------------------------------------------------------


@cache
def releases() -> dict[str, Any]:
    return json.loads(RELEASES.read_text("utf-8"))


def minor(version: str) -> str | None:
    m = re.match(r"^v?(\d+)\.(\d+)\.", version)
    return f"{m[1]}.{m[2]}" if m else None


def end_of_life(version: str) -> tuple[date | None, str]:
    """(the end-of-life date, how it is known) of `version`'s minor; (None, "") if unknown."""
    want = minor(version)
    if want is None:
        return None, ""
    table = releases()["minors"]
    if want in table:
        return date.fromisoformat(table[want]["eol"]), table[want]["source"]
    key = tuple(map(int, want.split(".")))
    newer = sorted(m for m in table if tuple(map(int, m.split("."))) > key)
    if newer and key < tuple(map(int, max(table, key=_k).split("."))):
        # An older minor ends no later than the next one listed.
        nxt = min(newer, key=_k)
        return date.fromisoformat(table[nxt]["eol"]), f"no later than {nxt}"
    return None, ""


def _k(m: str) -> tuple[int, ...]:
    return tuple(map(int, m.split(".")))


def check_release(master: Master, today: date | None = None) -> list[Diagnostic]:
    today = today or date.today()
    src, version = master.source, master.k3s.version
    line = src.line("LC_K3S_VERSION")
    eol, how = end_of_life(version)
    reviewed = releases()["reviewed"]
    if eol is None:
        return [
            warning(
                src.path,
                line,
                f"K3S {minor(version)} is not in Scooby's release table (reviewed {reviewed}): "
                "check its end of life at docs.k3s.io before you rely on it",
                "LC_K3S_VERSION",
            )
        ]
    if eol < today:
        when = f"on {eol}" if not how.startswith("no later") else f"{how}, on {eol}"
        return [
            error(
                src.path,
                line,
                f"K3S {minor(version)} reached its end of life {when}: it gets no security "
                "fixes. Pin a supported release with `scooby k3s pin VERSION` "
                f"(schemas/k3s-releases.json, reviewed {reviewed})",
                "LC_K3S_VERSION",
            )
        ]
    return []


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


# --- what the user's files say ------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    rel: str
    line: int | None


@dataclass(frozen=True)
class NodePort:
    port: int
    proto: str
    service: str
    at: Found


@dataclass(frozen=True)
class DhcpRange:
    start: IPv4Address
    end: IPv4Address
    at: Found


@dataclass(frozen=True)
class Pool:
    start: IPv4Address
    end: IPv4Address
    at: Found
    key: str


@dataclass(frozen=True)
class Reading:
    metallb: Found | None  # the first MetalLB resource (or chart) in the manifests
    node_ports: tuple[NodePort, ...]
    pools: tuple[Pool, ...]  # IPv4 MetalLB pool ranges
    dhcp: tuple[DhcpRange, ...]  # dnsmasq dhcp-range lines, IPv4
    interfaces: tuple[tuple[str, Found], ...]  # dnsmasq interface= lines


def read(repo: Path) -> Reading:
    metallb: Found | None = None
    node_ports: list[NodePort] = []
    pools: list[Pool] = []
    for path in manifests.files(repo):
        rel = path.relative_to(repo).as_posix()
        if path.name.startswith("."):
            continue  # K3S skips dotfiles
        text, problems = envfile.read_text(path, rel)
        if text is None:
            continue
        for doc in manifests.expanded(manifests.documents(text, rel, problems)):
            data = doc.data
            if not isinstance(data, dict):
                continue
            api, kind = str(data.get("apiVersion", "")), str(data.get("kind", ""))
            if metallb is None and (
                api.startswith("metallb.io/") or (kind == "HelmChart" and _chart(data) == "metallb")
            ):
                metallb = Found(rel, doc.line)
            if kind == "Service":
                node_ports += _node_ports(doc, rel)
            if (api, kind) == manifests.METALLB_POOL:
                pools += _pools(doc, rel)
    dhcp, interfaces = _dnsmasq(repo)
    return Reading(metallb, tuple(node_ports), tuple(pools), dhcp, interfaces)


def _chart(data: dict) -> str:
    spec = data.get("spec")
    chart = spec.get("chart") if isinstance(spec, dict) else None
    return chart.rsplit("/", 1)[-1] if isinstance(chart, str) else ""


def _node_ports(doc: manifests.Document, rel: str) -> list[NodePort]:
    spec = doc.data.get("spec")
    if not isinstance(spec, dict) or spec.get("type") not in ("NodePort", "LoadBalancer"):
        return []
    name = manifests._name(doc.data, "Service")
    out = []
    for i, port in enumerate(spec.get("ports") or []):
        if isinstance(port, dict) and isinstance(port.get("nodePort"), int):
            proto = str(port.get("protocol", "TCP")).lower()
            line = manifests.line_of(doc, ["spec", "ports", i, "nodePort"])
            out.append(NodePort(port["nodePort"], proto, name, Found(rel, line)))
    return out


def _pools(doc: manifests.Document, rel: str) -> list[Pool]:
    spec = doc.data.get("spec")
    addresses = spec.get("addresses") if isinstance(spec, dict) else None
    out = []
    for i, entry in enumerate(addresses or []):
        span = manifests._span(entry)
        if span is None or span[0].version != 4 or span[0] > span[1]:
            continue  # reported by the manifest checks
        line = manifests.line_of(doc, ["spec", "addresses", i])
        out.append(
            Pool(span[0], span[1], Found(rel, line), manifests._name(doc.data, "IPAddressPool"))
        )
    return out


def _dnsmasq(repo: Path) -> tuple[tuple[DhcpRange, ...], tuple[tuple[str, Found], ...]]:
    folder = repo / DNSMASQ_DIR
    ranges: list[DhcpRange] = []
    interfaces: list[tuple[str, Found]] = []
    if not folder.is_dir():
        return (), ()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.name.endswith(DNSMASQ_IGNORED):
            continue
        rel = path.relative_to(repo).as_posix()
        text, _ = envfile.read_text(path, rel)
        for n, raw in enumerate((text or "").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            key, _, value = line.partition("=")
            key = key.strip()
            if key == "interface":
                interfaces += [(v.strip(), Found(rel, n)) for v in value.split(",") if v.strip()]
            elif key == "dhcp-range":
                span = _dhcp_span(value)
                if span:
                    ranges.append(DhcpRange(span[0], span[1], Found(rel, n)))
    return tuple(ranges), tuple(interfaces)


def _dhcp_span(value: str) -> tuple[IPv4Address, IPv4Address] | None:
    """dnsmasq's `dhcp-range=[tag:..,][set:..,]START[,END|,static][,...]`: the IPv4 span."""
    addresses = []
    for part in value.split(","):
        part = part.strip()
        try:
            ip = ip_address(part)
        except ValueError:
            if addresses:
                break
            continue
        if ip.version != 4:
            return None
        addresses.append(ip)
        if len(addresses) == 2:
            break
    if not addresses:
        return None
    return addresses[0], addresses[1] if len(addresses) > 1 else addresses[0]


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
