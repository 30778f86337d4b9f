"""Cross-file rules: what no per-file schema can say.

Each rule is a small function returning diagnostics; `check` runs them all on whatever
loaded cleanly. A message always points at the line the user wrote (or, for a defaulted
key, at the file), and a clash between two files names the other file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import Agent, Master, Source
from scooby.load import envfile, reader

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

# Things that must never be committed. Each pattern is specific enough not to fire on
# ordinary shell or YAML (a bare `$1$HOME` is not a crypt hash: the salt/hash shape is).
SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a private key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    ("a K3S join token", re.compile(r"\bK10[0-9a-f]{64}::[A-Za-z0-9._-]+:[A-Za-z0-9]{8,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(
            r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("a GitHub token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b")),
    (
        "a password hash",
        re.compile(
            r"\$(?:1|5|6)\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}"
            r"|\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"
            r"|\$(?:y|gy|7)\$[./A-Za-z0-9]+\$[./A-Za-z0-9]*\$[./A-Za-z0-9]{43}"
        ),
    ),
)
SECRET_SCAN_LIMIT = 1 << 20  # bytes; larger files under server/ are binaries or archives
# `KEY=value`, `key = value` or YAML's `key: value`: the KEY a secret is assigned to.
_KEY_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]{0,63})\s*(?:=|:(?=\s|$))")


def check(loaded: reader.Loaded, repo: Path) -> list[Diagnostic]:
    repo = repo.resolve()
    out = list(stray_agent_files(repo))
    out += secrets(repo)
    if loaded.master is not None and loaded.config:
        out += networks(loaded.master.source, loaded.config)
        out += agents(loaded.master, loaded.agents, loaded.config)
    return out


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
    if v["LC_EXTERNAL_GW"] == v["LC_EXTERNAL_IP"]:
        line, key = _where(src, "LC_EXTERNAL_GW", "LC_EXTERNAL_IP")
        out.append(
            error(src.path, line, "the gateway cannot be the master's own external address", key)
        )
    ext, internal = IPv4Network(v["LC_EXTERNAL_NET"]), IPv4Network(v["LC_INTERNAL_NET"])
    if ext.overlaps(internal):
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
    if v["LC_EXTERNAL_DEVICE"] == v["LC_INTERNAL_DEVICE"]:
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


def agents(master: Master, loaded: tuple[Agent, ...], v: Mapping[str, str]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    net = IPv4Network(v["LC_INTERNAL_NET"])
    for a in loaded:
        out += _agent_address(a, net, master.internal.ip, master.source)
        out += _agent_name(a, master.hostname, master.source)
        out += _agent_mac(a)
        out += _agent_partitions(a)
        out += _agent_k3s_args(a)
    out += _unique(loaded, "AGENT_IP", lambda a: str(a.ip))
    out += _unique(loaded, "AGENT_ETHERNET", lambda a: a.mac)
    out += _unique(loaded, "AGENT_PXE_ID", lambda a: a.pxe_id)
    # Two keys cloned with dd share PARTUUIDs: legal, but usually a copy-paste slip.
    out += _unique(loaded, "AGENT_RANCHER_PART_UUID", lambda a: a.rancher_partuuid, warning)
    return out


def _agent_address(
    a: Agent, net: IPv4Network, master_ip: IPv4Address, master_src: Source
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
    elif a.ip == master_ip:
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
    if a.swap_partuuid and a.swap_partuuid == a.rancher_partuuid:
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
    for word in a.k3s_args:
        flag = word.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            yield error(
                a.source.path,
                a.source.line("AGENT_K3S_ARGS"),
                f"sets {flag}, which Scooby manages: {MANAGED_FLAGS[flag]}",
                "AGENT_K3S_ARGS",
            )


def _unique(agents: Iterable[Agent], key: str, value, severity=error) -> Iterator[Diagnostic]:
    first: dict[str, Agent] = {}
    for a in sorted(agents, key=lambda a: a.source.path):
        seen = first.setdefault(value(a), a)
        if seen is not a:
            yield severity(
                a.source.path,
                a.source.line(key),
                f"{value(a)} is already used by {_at(seen.source, key)}",
                key,
            )


# --- agents/: files that look like agents but are never read --------------------------------


def stray_agent_files(repo: Path) -> Iterator[Diagnostic]:
    for path in reader.stray_agent_files(repo):
        rel = path.relative_to(repo).as_posix()
        parsed = _parse_quietly(path, rel)
        keys = [e for e in parsed if e.key.startswith("AGENT_")]
        if keys:
            yield error(
                rel,
                keys[0].line,
                f"this file holds agent settings but is not read: only *.agent files are; "
                f"rename it to {rel}.agent",
                keys[0].key,
            )


def _parse_quietly(path: Path, rel: str) -> tuple[envfile.Entry, ...]:
    try:
        data = path.read_bytes()[:SECRET_SCAN_LIMIT]
    except OSError:
        return ()
    text, _ = envfile.decode(data, rel)
    if text is None:
        return ()
    return envfile.parse(text, rel)[0].entries


# --- secrets in committed files --------------------------------------------------------------


def committed_files(repo: Path) -> Iterator[Path]:
    """`config`, everything in agents/ and under server/: what the user commits."""
    if (repo / reader.CONFIG).is_file():
        yield repo / reader.CONFIG
    for folder in (reader.AGENTS, reader.SERVER):
        base = repo / folder
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())


def secrets(repo: Path) -> list[Diagnostic]:
    out = []
    for path in committed_files(repo):
        rel = path.relative_to(repo).as_posix()
        out += scan_text(_text(path), rel)
    return out


def _text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(SECRET_SCAN_LIMIT)
    except OSError:
        return ""
    if b"\x00" in data:
        return ""  # a binary: nothing a person typed
    return data.decode("utf-8", errors="replace")


def scan_text(text: str, rel: str) -> list[Diagnostic]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in SECRETS:
            if pattern.search(line):
                assignment = _KEY_ASSIGNMENT.match(line)
                out.append(
                    error(
                        rel,
                        number,
                        f"looks like {what}: secrets never go in committed files; "
                        "put them in .env (git-ignored) or a CI repository secret",
                        assignment.group(1) if assignment else None,
                    )
                )
                break
    return out
