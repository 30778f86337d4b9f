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
from scooby.core.redact import shown
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
    # Agent files with problems, each field that failed its schema set to None: left out of
    # the cluster, but the cross-file rules still check their good fields in the same run.
    partial: tuple[Agent, ...] = ()
    config_source: Source | None = None  # where `config` values came from (lines)


def load(repo: Path, environ: dict[str, str] | None = None) -> Loaded:
    repo = repo.resolve()
    environ = dict(os.environ) if environ is None else environ
    problems: list[Diagnostic] = []
    config: dict[str, str] = {}
    sources: list[Source] = []
    master = _load_master(repo, problems, config, sources)
    secrets = _load_secrets(repo, environ, problems)
    partial: list[Agent] = []
    agents = _load_agents(repo, problems, partial)
    found = server_files(repo, problems)
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
    return Loaded(
        cluster,
        tuple(problems),
        MappingProxyType(config),
        master,
        tuple(agents),
        tuple(sorted(partial, key=lambda a: a.name)),
        sources[0] if sources else None,
    )


def written(repo: Path, rel: str) -> dict[str, str]:
    """A KEY=VALUE file (`config`, `.env`) as written, no defaults; {} when absent. Never
    fails: its problems are `scooby validate`'s to report. For the tools that need a value
    without a whole Cluster (the manifests hook, release's upload secrets)."""
    path = repo / rel
    if not path.is_file():
        return {}
    parsed, _ = envfile.load(path, repo, secret=rel == ENV)  # .env: may be a link
    return parsed.values()


def load_or_raise(repo: Path, environ: dict[str, str] | None = None) -> Cluster:
    loaded = load(repo, environ)
    if errors_only(list(loaded.diagnostics)) or loaded.cluster is None:
        raise ScoobyError(list(loaded.diagnostics))
    return loaded.cluster


def _read(
    repo: Path, rel: str, kind: str, problems: list[Diagnostic], partial: list | None = None
) -> tuple[dict[str, str], Source] | None:
    """Parse and schema-check one file; the values with schema defaults filled in.

    On a problem: None, and into `partial` (if given) the values that did pass, keys
    that failed left out, so later rules can still check the rest of the file."""
    path = repo / rel
    if os.path.lexists(path):
        parsed, found = envfile.load(path, repo, secret=kind == "env")
        if not parsed.readable:  # missing-key errors would only repeat "not a text file"
            problems.extend(found)
            return None
        values, lines = parsed.values(), parsed.lines()
    else:
        found, values, lines = [], {}, {}
    checked = schema.check(kind, values, rel, lines)
    found += checked
    problems.extend(found)
    src = Source(rel, MappingProxyType(lines))
    if errors_only(found):
        if partial is not None:
            bad = {d.key for d in checked}
            good = {k: v for k, v in values.items() if k not in bad}
            defaults = {k: d for k, d in schema.defaults(kind).items() if k not in bad}
            partial.append(({**defaults, **good}, src))
        return None
    return {**schema.defaults(kind), **values}, src


def _load_master(
    repo: Path,
    problems: list[Diagnostic],
    config: dict[str, str] | None = None,
    sources: list[Source] | None = None,
) -> Master | None:
    partial: list = []
    read = _read(repo, CONFIG, "config", problems, partial)
    if read is None:
        if partial and config is not None:  # the good keys, for the cross-file rules
            v, src = partial[0]
            config.update(v)
            if sources is not None:
                sources.append(src)
        return None
    v, src = read
    if config is not None:
        config.update(v)
    if sources is not None:
        sources.append(src)
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
            tuple(sorted(set(v["LC_EXTRA_PACKAGES"].split()))),
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
        update_url=v["LC_UPDATE_URL"],
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


def _agent(name: str, v: dict[str, str], src: Source, problems: list[Diagnostic]) -> Agent | None:
    """An Agent from schema-checked values; a key missing from `v` (it failed) gives None."""
    args: tuple[str, ...] | None = None
    if "AGENT_K3S_ARGS" in v:
        try:
            args = tuple(shlex.split(v["AGENT_K3S_ARGS"]))
        except ValueError as exc:
            problems.append(
                error(
                    src.path,
                    src.line("AGENT_K3S_ARGS"),
                    f"does not parse as shell words: {exc}",
                    "AGENT_K3S_ARGS",
                )
            )
    low = lambda k: v[k].lower() if k in v else None  # noqa: E731
    return Agent(
        name=name,
        mac=low("AGENT_ETHERNET"),
        ip=IPv4Address(v["AGENT_IP"]) if "AGENT_IP" in v else None,
        rancher_partuuid=low("AGENT_RANCHER_PART_UUID"),
        swap_partuuid=low("AGENT_SWAP_PART_UUID"),
        pxe_id=v.get("AGENT_PXE_ID"),
        k3s_args=args,
        source=src,
    )  # type: ignore[arg-type]


def _load_agents(
    repo: Path, problems: list[Diagnostic], partial: list[Agent] | None = None
) -> list[Agent]:
    agents = []
    if (repo / AGENTS).is_symlink():
        problems.append(error(AGENTS, None, "must be a folder, not a link"))
    for path in agent_files(repo):
        rel = path.relative_to(repo).as_posix()
        name = path.name.removesuffix(AGENT_SUFFIX)
        if not schema.FORMATS["hostname"][0](name):
            problems.append(
                error(
                    rel,
                    None,
                    f"file name {shown(name)} is not a valid agent hostname: "
                    f"use {schema.FORMATS['hostname'][1]}",
                )
            )
            continue
        halves: list = []
        read = _read(repo, rel, "agent", problems, halves)
        if read is None:
            if halves and partial is not None:
                partial.append(_agent(name, *halves[0], []))
            continue
        before = len(problems)
        agent = _agent(name, *read, problems)
        if len(problems) > before:  # its K3S arguments do not parse
            if partial is not None:
                partial.append(agent)
            continue
        agents.append(agent)
    return agents
