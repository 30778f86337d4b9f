"""What the user's server/ files tell K3S and the firewall: MetalLB resources and pools and
NodePort Services in the manifests (as K3S applies them: Lists expanded, dotfiles skipped),
and DHCP ranges and listening devices in server/etc/dnsmasq.d/."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from scooby.load import envfile
from scooby.validate import manifests

DNSMASQ_DIR = "server/etc/dnsmasq.d"
# Debian's dnsmasq reads every file in /etc/dnsmasq.d but these (/etc/default/dnsmasq).
DNSMASQ_IGNORED = (".dpkg-dist", ".dpkg-old", ".dpkg-new", "~")


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
