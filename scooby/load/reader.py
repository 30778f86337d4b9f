"""Load `config`, `.env`, `agents/*.agent` and `server/**` into one typed `Cluster`.

Every file is parsed with its line numbers kept and checked against its schema; problems
are collected, not raised one at a time, so the user sees them all in one run. An agent
file with problems is left out of the cluster (and reported); cross-file rules run later,
in `scooby.validate`, on whatever loaded cleanly.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import MappingProxyType

from scooby.core.errors import Diagnostic, ScoobyError, error, errors_only
from scooby.core.model import (
    Agent,
    Base,
    Cluster,
    Interface,
    K3s,
    Master,
    OpenPort,
    Secrets,
    Source,
)
from scooby.load import digest, envfile, schema
from scooby.load.files import (  # noqa: F401 (CONFIG, SERVER, ...: read by validate and render)
    AGENT_SUFFIX,
    AGENTS,
    AGENTS_IGNORED,
    CONFIG,
    ENV,
    SERVER,
    SERVER_IGNORED,
    agent_files,
    server_files,
    stray_agent_files,
)
from scooby.util import git


@dataclass(frozen=True)
class Loaded:
    cluster: Cluster | None  # None when `config` or `.env` could not be loaded
    diagnostics: tuple[Diagnostic, ...]
    # `config` as written, defaults filled in: the cross-file rules need the declared
    # networks (LC_EXTERNAL_NET, ...), which the typed Master folds into its interfaces.
    config: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # What did load, even when the cluster as a whole did not (say `.env` is broken), so
    # the cross-file rules still report everything in one run.
    master: Master | None = None
    agents: tuple[Agent, ...] = ()  # sorted by name


def load(repo: Path, environ: dict[str, str] | None = None) -> Loaded:
    repo = repo.resolve()
    environ = dict(os.environ) if environ is None else environ
    problems: list[Diagnostic] = []
    config: dict[str, str] = {}
    master = _load_master(repo, problems, config)
    secrets = _load_secrets(repo, environ, problems)
    agents = _load_agents(repo, problems)
    found = server_files(repo)
    cluster = None
    agents = sorted(agents, key=lambda a: a.name)
    if master is not None and secrets is not None:
        cluster = Cluster(
            repo,
            master,
            tuple(agents),
            secrets,
            found,
            version=git.describe(repo),
            config_digest=digest.config_digest(repo),
        )
    return Loaded(cluster, tuple(problems), MappingProxyType(config), master, tuple(agents))


def written(repo: Path, rel: str) -> dict[str, str]:
    """A KEY=VALUE file (`config`, `.env`) as written, no defaults; {} when absent. Never
    fails: its problems are `scooby validate`'s to report. For the tools that need a value
    without a whole Cluster (the manifests hook, release's upload secrets)."""
    path = repo / rel
    if not path.is_file():
        return {}
    parsed, _ = envfile.load(path, repo)
    return parsed.values()


def load_or_raise(repo: Path, environ: dict[str, str] | None = None) -> Cluster:
    loaded = load(repo, environ)
    if errors_only(list(loaded.diagnostics)) or loaded.cluster is None:
        raise ScoobyError(list(loaded.diagnostics))
    return loaded.cluster


def _read(
    repo: Path, rel: str, kind: str, problems: list[Diagnostic]
) -> tuple[dict[str, str], Source] | None:
    """Parse and schema-check one file; the values with schema defaults filled in."""
    path = repo / rel
    if path.exists():
        parsed, found = envfile.load(path, repo)
        if not parsed.readable:  # missing-key errors would only repeat "not a text file"
            problems.extend(found)
            return None
        values, lines = parsed.values(), parsed.lines()
    else:
        found, values, lines = [], {}, {}
    found += schema.check(kind, values, rel, lines)
    problems.extend(found)
    if errors_only(found):
        return None
    return {**schema.defaults(kind), **values}, Source(rel, MappingProxyType(lines))


def _load_master(
    repo: Path, problems: list[Diagnostic], config: dict[str, str] | None = None
) -> Master | None:
    read = _read(repo, CONFIG, "config", problems)
    if read is None:
        return None
    v, src = read
    if config is not None:
        config.update(v)
    ext_net, int_net = v["LC_EXTERNAL_NET"], v["LC_INTERNAL_NET"]
    base_kind = v["LC_BASE"] or ("raspios" if v["LC_IMAGE_HREF"] else "debian")
    if base_kind == "raspios" and not (v["LC_IMAGE_HREF"] and v["LC_IMAGE_SHA"]):
        key = "LC_IMAGE_SHA" if v["LC_IMAGE_HREF"] else "LC_IMAGE_HREF"
        problems.append(
            error(
                src.path,
                src.line(key) or src.line("LC_BASE"),
                "the raspios base needs both LC_IMAGE_HREF and LC_IMAGE_SHA",
                key,
            )
        )
        return None
    dns = tuple(IPv4Address(d) for d in (v["LC_PRIMARY_DNS"], v["LC_SECONDARY_DNS"]) if d)
    return Master(
        hostname=v["LC_HOSTNAME"],
        dns=dns,
        external=Interface(
            v["LC_EXTERNAL_DEVICE"],
            IPv4Interface(f"{v['LC_EXTERNAL_IP']}/{ext_net.split('/')[1]}"),
            v["LC_EXTERNAL_DOMAIN"],
        ),
        gateway=IPv4Address(v["LC_EXTERNAL_GW"]),
        internal=Interface(
            v["LC_INTERNAL_DEVICE"],
            IPv4Interface(f"{v['LC_INTERNAL_IP']}/{int_net.split('/')[1]}"),
            v["LC_INTERNAL_DOMAIN"],
        ),
        base=Base(
            base_kind,
            v["LC_IMAGE_HREF"],
            _hex(v["LC_IMAGE_SHA"]),
            v["LC_DEBIAN_SUITE"],
            v["LC_DEBIAN_MIRROR"],
            v["LC_DEBIAN_UPDATES_MIRROR"],
            v["LC_DEBIAN_SECURITY_MIRROR"],
        ),
        k3s=K3s(
            v["LC_K3S_VERSION"],
            _hex(v["LC_K3S_SHA256"]),
            _hex(v["LC_K3S_AIRGAP_SHA256"]),
            IPv4Network(v["LC_K3S_CLUSTER_CIDR"]),
            IPv4Network(v["LC_K3S_SERVICE_CIDR"]),
            _port_range(v["LC_K3S_NODE_PORT_RANGE"]),
            v["LC_K3S_SERVICELB"],  # type: ignore[arg-type]  # the schema's enum
        ),
        source=src,
        open_ports=_open_ports(v["LC_EXTERNAL_OPEN_PORTS"]),
    )


def _port_range(text: str) -> tuple[int, int]:
    """`FIRST-LAST` (the schema's pattern) -> (FIRST, LAST)."""
    first, last = text.split("-")
    return int(first), int(last)


def _open_ports(text: str) -> tuple[OpenPort, ...]:
    """`25565/tcp 53/udp` (the schema's pattern) -> sorted, without repeats."""
    ports = {
        OpenPort(int(port), proto) for port, _, proto in (w.partition("/") for w in text.split())
    }  # type: ignore[arg-type]
    return tuple(sorted(ports, key=lambda o: (o.port, o.proto)))


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:").lower()


def _load_secrets(
    repo: Path, environ: dict[str, str], problems: list[Diagnostic]
) -> Secrets | None:
    read = _read(repo, ENV, "env", problems)
    if read is None:
        return None
    v, src = read
    # In CI the same names arrive as repository secrets in the environment; they win.
    env_keys = {k: environ[k] for k in schema.properties("env") if environ.get(k)}
    env_problems = schema.check("env", env_keys, "(environment)", {})
    problems.extend(env_problems)
    if errors_only(env_problems):
        return None
    v.update(env_keys)
    return Secrets(v["LC_DEFAULT_USER"], v["LC_SSH_AUTH_KEY"], v["LC_PACKER_GITHUB_API_TOKEN"], src)


def _load_agents(repo: Path, problems: list[Diagnostic]) -> list[Agent]:
    agents = []
    for path in agent_files(repo):
        rel = path.relative_to(repo).as_posix()
        name = path.name.removesuffix(AGENT_SUFFIX)
        if not schema.FORMATS["hostname"][0](name):
            problems.append(
                error(
                    rel,
                    None,
                    f"file name {name!r} is not a valid agent hostname: "
                    f"use {schema.FORMATS['hostname'][1]}",
                )
            )
            continue
        read = _read(repo, rel, "agent", problems)
        if read is None:
            continue
        v, src = read
        try:
            args = tuple(shlex.split(v["AGENT_K3S_ARGS"]))
        except ValueError as exc:
            problems.append(
                error(
                    rel,
                    src.line("AGENT_K3S_ARGS"),
                    f"does not parse as shell words: {exc}",
                    "AGENT_K3S_ARGS",
                )
            )
            continue
        agents.append(
            Agent(
                name=name,
                mac=v["AGENT_ETHERNET"].lower(),
                ip=IPv4Address(v["AGENT_IP"]),
                rancher_partuuid=v["AGENT_RANCHER_PART_UUID"].lower(),
                swap_partuuid=v["AGENT_SWAP_PART_UUID"].lower(),
                pxe_id=v["AGENT_PXE_ID"],
                k3s_args=args,
                source=src,
            )
        )
    return agents
