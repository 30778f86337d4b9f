"""Cross-file rules: what no per-file schema can say.

Each rule is a small function returning diagnostics; `check` runs them all on whatever
loaded cleanly. A message always points at the line the user wrote (or, for a defaulted
key, at the file), and a clash between two files names the other file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import Agent, Source
from scooby.core.redact import shown
from scooby.load import reader
from scooby.validate import repo_files

# k3s agent flags Scooby sets itself from config and the agent file; a user's value would
# fight Scooby's (a second --server, a node-ip outside the internal net, ...).
MANAGED_FLAGS = {
    "--server": "Scooby points every agent at the master",
    "-s": "Scooby points every agent at the master",
    "--token": "Scooby hands each agent the cluster token",
    "-t": "Scooby hands each agent the cluster token",
    "--token-file": "Scooby hands each agent the cluster token",
    "--node-ip": "set AGENT_IP instead",
    "-i": "set AGENT_IP instead",
    "--node-name": "the agent's name is its file name",
    "--with-node-id": "the agent's name is its file name",
    "--flannel-iface": "Scooby sets the agents' cluster interface",
    "--data-dir": "Scooby keeps K3S data on the AGENT_RANCHER_PART_UUID partition",
    "-d": "Scooby keeps K3S data on the AGENT_RANCHER_PART_UUID partition",
    "--config": "Scooby writes the agent's K3S config file",
    "-c": "Scooby writes the agent's K3S config file",
}

# k3s's command line (urfave/cli over Go's flag package) reads `-token=x` as `--token=x`:
# flags are compared by name, whatever their dashes.
MANAGED_NAMES = {flag.lstrip("-"): why for flag, why in MANAGED_FLAGS.items()}
# lighttpd's 4,096-condition limit (its config parser's): the seed server's per-agent
# conditions reach it at 2,048 agents; Scooby caps well below, with room for a user's own.
MAX_AGENTS = 1000


def check(loaded: reader.Loaded, repo: Path) -> list[Diagnostic]:
    repo = repo.resolve()
    out = list(repo_files.stray_agent_files(repo))
    out += repo_files.secrets(repo)
    out += repo_files.executing(repo)
    out += repo_files.tracked_env(repo)
    src = loaded.config_source or (loaded.master.source if loaded.master else None)
    if src is not None and loaded.config:
        out += networks(src, loaded.config)
        out += agents(src, (*loaded.agents, *loaded.partial), loaded.config)
    return out


def _has(v: Mapping[str, str], *keys: str) -> bool:
    """Every key passed its schema (a key that failed is left out of a partial config)."""
    return all(k in v for k in keys)


# --- config: the master's two networks ---------------------------------------------------


def _where(src: Source, *keys: str) -> tuple[int | None, str]:
    """The first of `keys` the user wrote (the one to fix), else the first key (defaulted)."""
    for key in keys:
        if src.line(key) is not None:
            return src.line(key), key
    return None, keys[0]


def _at(src: Source, key: str) -> str:
    line = src.line(key)
    return f"{src.path}:{line}" if line is not None else f"{src.path} (default)"


def _inside(
    src: Source, v: Mapping[str, str], ip_key: str, net_key: str, what: str
) -> Iterator[Diagnostic]:
    if not _has(v, ip_key, net_key):
        return
    ip, net = IPv4Address(v[ip_key]), IPv4Network(v[net_key])
    line, key = _where(src, ip_key, net_key)
    if ip not in net:
        yield error(
            src.path, line, f"{what} {ip} is not inside {net_key}={net} ({_at(src, net_key)})", key
        )
    elif net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        kind = "network" if ip == net.network_address else "broadcast"
        yield error(src.path, line, f"{what} {ip} is the {kind} address of {net}", key)


def networks(src: Source, v: Mapping[str, str]) -> list[Diagnostic]:
    out = list(_inside(src, v, "LC_EXTERNAL_IP", "LC_EXTERNAL_NET", "the master's address"))
    out += _inside(src, v, "LC_EXTERNAL_GW", "LC_EXTERNAL_NET", "the gateway")
    out += _inside(src, v, "LC_INTERNAL_IP", "LC_INTERNAL_NET", "the master's address")
    out += _special_networks(src, v)
    out += _dns(src, v)
    if _has(v, "LC_EXTERNAL_GW", "LC_EXTERNAL_IP") and v["LC_EXTERNAL_GW"] == v["LC_EXTERNAL_IP"]:
        line, key = _where(src, "LC_EXTERNAL_GW", "LC_EXTERNAL_IP")
        out.append(
            error(src.path, line, "the gateway cannot be the master's own external address", key)
        )
    both = _has(v, "LC_EXTERNAL_NET", "LC_INTERNAL_NET")
    if both and IPv4Network(v["LC_EXTERNAL_NET"]).overlaps(IPv4Network(v["LC_INTERNAL_NET"])):
        line, key = _where(src, "LC_INTERNAL_NET", "LC_EXTERNAL_NET")
        other = "LC_EXTERNAL_NET" if key == "LC_INTERNAL_NET" else "LC_INTERNAL_NET"
        out.append(
            error(
                src.path,
                line,
                f"{v[key]} overlaps {other}={v[other]} ({_at(src, other)}): "
                "the internal and external networks must be disjoint",
                key,
            )
        )
    devices = _has(v, "LC_EXTERNAL_DEVICE", "LC_INTERNAL_DEVICE")
    if devices and v["LC_EXTERNAL_DEVICE"] == v["LC_INTERNAL_DEVICE"]:
        line, key = _where(src, "LC_INTERNAL_DEVICE", "LC_EXTERNAL_DEVICE")
        other = "LC_EXTERNAL_DEVICE" if key == "LC_INTERNAL_DEVICE" else "LC_INTERNAL_DEVICE"
        out.append(
            error(
                src.path,
                line,
                f"{v[key]} is also {other} ({_at(src, other)}): "
                "the master needs two different network devices",
                key,
            )
        )
    return out


# --- agents: addresses, duplicates, partitions, K3S arguments ------------------------------


# Ranges no network the master serves or reaches can use: loopback, "this network",
# multicast and the reserved 240/4 (RFC 6890's special-purpose registry).
SPECIAL_NETWORKS = {
    IPv4Network("127.0.0.0/8"): "loopback (127/8, the host itself)",
    IPv4Network("0.0.0.0/8"): "'this network' (0/8)",
    IPv4Network("224.0.0.0/4"): "multicast (224/4)",
    IPv4Network("240.0.0.0/4"): "reserved (240/4)",
}


def _special_networks(src: Source, v: Mapping[str, str]) -> Iterator[Diagnostic]:
    for key in ("LC_EXTERNAL_NET", "LC_INTERNAL_NET"):
        if not _has(v, key):
            continue
        net = IPv4Network(v[key])
        for special, what in SPECIAL_NETWORKS.items():
            if net.overlaps(special):
                yield error(src.path, src.line(key), f"{net} overlaps {what}", key)
                break


def _dns(src: Source, v: Mapping[str, str]) -> Iterator[Diagnostic]:
    """A DNS server the master and its agents can ask: not a special address, not the
    master itself (its dnsmasq forwards to these: itself would be a loop)."""
    own = {v[k]: k for k in ("LC_EXTERNAL_IP", "LC_INTERNAL_IP") if _has(v, k)}
    for key in ("LC_PRIMARY_DNS", "LC_SECONDARY_DNS"):
        if not _has(v, key) or not v[key]:
            continue
        ip = IPv4Address(v[key])
        why = None
        if ip.is_unspecified:
            why = "is 'no address' (0.0.0.0)"
        elif ip.is_loopback:
            why = "is a loopback address: on the master and on each agent it means itself"
        elif ip.is_multicast:
            why = "is a multicast address"
        elif ip == IPv4Address("255.255.255.255") or ip.is_reserved:
            why = "is a broadcast or reserved address"
        elif v[key] in own:
            why = f"is the master's own {own[v[key]]} ({_at(src, own[v[key]])}): a forwarding loop"
        if why:
            yield error(src.path, src.line(key), f"{ip} {why}; give an upstream DNS server", key)


def agents(master_src: Source, loaded: tuple[Agent, ...], v: Mapping[str, str]) -> list[Diagnostic]:
    """`loaded`: clean agents and partial ones (a field that failed its schema is None)."""
    out: list[Diagnostic] = []
    net = IPv4Network(v["LC_INTERNAL_NET"]) if _has(v, "LC_INTERNAL_NET") else None
    master_ip = IPv4Address(v["LC_INTERNAL_IP"]) if _has(v, "LC_INTERNAL_IP") else None
    for a in loaded:
        if a.ip is not None and net is not None:
            out += _agent_address(a, net, master_ip, master_src)
        if _has(v, "LC_HOSTNAME"):
            out += _agent_name(a, v["LC_HOSTNAME"], master_src)
        if a.mac is not None:
            out += _agent_mac(a)
        out += _agent_partitions(a)
        out += _agent_k3s_args(a)
    out += _unique(loaded, "AGENT_IP", lambda a: a.ip and str(a.ip))
    out += _unique(loaded, "AGENT_ETHERNET", lambda a: a.mac)
    out += _unique(loaded, "AGENT_PXE_ID", lambda a: a.pxe_id)
    # Two keys cloned with dd share PARTUUIDs: legal, but usually a copy-paste slip.
    out += _unique(loaded, "AGENT_RANCHER_PART_UUID", lambda a: a.rancher_partuuid, warning)
    if len(loaded) > MAX_AGENTS:
        out.append(
            error(
                reader.AGENTS,
                None,
                f"{len(loaded):,} agents; Scooby serves at most {MAX_AGENTS:,} from one master "
                "(lighttpd's 4,096-condition limit, and one master's DHCP, TFTP and NFS)",
            )
        )
    return out


def _agent_address(
    a: Agent, net: IPv4Network, master_ip: IPv4Address | None, master_src: Source
) -> Iterator[Diagnostic]:
    line = a.source.line("AGENT_IP")
    if a.ip not in net:
        yield error(
            a.source.path,
            line,
            f"{a.ip} is not inside the internal network "
            f"LC_INTERNAL_NET={net} ({_at(master_src, 'LC_INTERNAL_NET')})",
            "AGENT_IP",
        )
    elif net.prefixlen <= 30 and a.ip in (net.network_address, net.broadcast_address):
        kind = "network" if a.ip == net.network_address else "broadcast"
        yield error(a.source.path, line, f"{a.ip} is the {kind} address of {net}", "AGENT_IP")
    elif master_ip is not None and a.ip == master_ip:
        yield error(
            a.source.path,
            line,
            f"{a.ip} is the master's LC_INTERNAL_IP ({_at(master_src, 'LC_INTERNAL_IP')})",
            "AGENT_IP",
        )


def _agent_name(a: Agent, master: str, master_src: Source) -> Iterator[Diagnostic]:
    if a.name == master:
        yield error(
            a.source.path,
            None,
            f"agent name {a.name!r} is the master's LC_HOSTNAME "
            f"({_at(master_src, 'LC_HOSTNAME')}): rename the file",
        )


def _agent_mac(a: Agent) -> Iterator[Diagnostic]:
    first = int(a.mac.split(":")[0], 16)
    if first & 1:
        yield error(
            a.source.path,
            a.source.line("AGENT_ETHERNET"),
            f"{a.mac} is a multicast address; a network card's MAC is unicast "
            "(the first byte is even)",
            "AGENT_ETHERNET",
        )
    elif a.mac == "00:00:00:00:00:00":
        yield error(
            a.source.path, a.source.line("AGENT_ETHERNET"), "is all zeros", "AGENT_ETHERNET"
        )


def _agent_partitions(a: Agent) -> Iterator[Diagnostic]:
    if a.swap_partuuid and a.rancher_partuuid and a.swap_partuuid == a.rancher_partuuid:
        line, key = _where(a.source, "AGENT_SWAP_PART_UUID")
        yield error(
            a.source.path,
            line,
            "same partition as AGENT_RANCHER_PART_UUID "
            f"({_at(a.source, 'AGENT_RANCHER_PART_UUID')}): "
            "swap and /var/lib/rancher need two partitions",
            key,
        )


def _agent_k3s_args(a: Agent) -> Iterator[Diagnostic]:
    for word in a.k3s_args or ():
        flag = word.split("=", 1)[0]
        name = flag.lstrip("-")
        if flag.startswith("-") and name in MANAGED_NAMES:
            yield error(
                a.source.path,
                a.source.line("AGENT_K3S_ARGS"),
                f"sets {flag if len(flag) <= 40 else shown(flag)}, which Scooby manages: "
                f"{MANAGED_NAMES[name]}",
                "AGENT_K3S_ARGS",
            )


def _unique(agents: Iterable[Agent], key: str, value, severity=error) -> Iterator[Diagnostic]:
    first: dict[str, Agent] = {}
    for a in sorted(agents, key=lambda a: a.source.path):
        if value(a) is None:  # failed its schema: reported already
            continue
        seen = first.setdefault(value(a), a)
        if seen is not a:
            yield severity(
                a.source.path,
                a.source.line(key),
                f"{value(a)} is already used by {_at(seen.source, key)}",
                key,
            )
