"""The typed, immutable cluster: the only thing stages after `load` read."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import MappingProxyType
from typing import Literal

MANIFESTS = "server/var/lib/rancher/k3s/server/manifests"  # in the repo


@dataclass(frozen=True)
class Source:
    """The file a record came from and the line of each key in it (absent key: defaulted)."""

    path: str
    lines: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def line(self, key: str) -> int | None:
        return self.lines.get(key)


@dataclass(frozen=True)
class Interface:
    device: str
    address: IPv4Interface  # the master's address with the network's prefix
    domain: str

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip

    @property
    def network(self) -> IPv4Network:
        return self.address.network


@dataclass(frozen=True)
class Base:
    kind: Literal["debian", "raspios"]
    image_href: str
    image_sha256: str  # bare hex, lower case; "" when unset
    suite: str
    mirror: str
    updates_mirror: str  # "": the same as `mirror`
    security_mirror: str
    # LC_EXTRA_PACKAGES: installed into the master's base only; sorted, each once, so that
    # the same set is the same base (cache key, deploy record) however it is written.
    extra_packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class K3s:
    version: str
    sha256: str  # k3s-arm64, bare hex; "" when unset
    airgap_sha256: str
    cluster_cidr: IPv4Network = IPv4Network("10.42.0.0/16")  # K3S's defaults
    service_cidr: IPv4Network = IPv4Network("10.43.0.0/16")
    node_port_range: tuple[int, int] = (30000, 32767)
    servicelb: Literal["auto", "on", "off"] = "auto"


@dataclass(frozen=True)
class OpenPort:
    """A port the external network may reach on the master (LC_EXTERNAL_OPEN_PORTS)."""

    port: int
    proto: Literal["tcp", "udp"]


@dataclass(frozen=True)
class Master:
    hostname: str
    dns: tuple[IPv4Address, ...]
    external: Interface
    gateway: IPv4Address
    internal: Interface
    base: Base
    k3s: K3s
    source: Source
    open_ports: tuple[OpenPort, ...] = ()
    update_url: str = ""  # LC_UPDATE_URL: the release scooby-update.timer pulls ("": off)


@dataclass(frozen=True)
class Agent:
    name: str
    mac: str  # lower case, colon separated
    ip: IPv4Address
    rancher_partuuid: str  # lower case
    swap_partuuid: str  # lower case; "" when none
    pxe_id: str
    k3s_args: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class Secrets:
    """From `.env` (or the environment in CI). Never rendered into a served or published file."""

    default_user: str
    ssh_auth_key: str = field(repr=False)
    github_token: str = field(repr=False)
    source: Source


@dataclass(frozen=True)
class Cluster:
    repo: Path
    master: Master
    agents: tuple[Agent, ...]  # sorted by name
    secrets: Secrets
    server_files: tuple[str, ...]  # repo-relative paths under server/, sorted
    # What later stages need of the repository itself, so none of them reads it again:
    version: str = ""  # `git describe` of the repo (util.git): the image's SCOOBY_VERSION
    config_digest: str = ""  # sha256 over config, agents/, server/ (load.digest); not .env

    def agent(self, name: str) -> Agent:
        return next(a for a in self.agents if a.name == name)
