"""Kubernetes manifests under `server/var/lib/rancher/k3s/server/manifests/`.

k3s applies every `.yaml`, `.yml` and `.json` file there at boot; a typo surfaces only as
a log line on the master. Here each document is checked offline: core kinds against the
Kubernetes schemas that the kubernetes-validate package ships (the K3S minor's, strict),
k3s's and MetalLB's CRDs against the schemas vendored in `schemas/vendor/`, and MetalLB
address pools against the master's external network. Every message carries the line of
the offending field.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any

from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import MANIFESTS
from scooby.core.redact import shown
from scooby.load import envfile, reader, schema
from scooby.validate import k8s_schemas, syntax, yaml_limits
from scooby.validate.addons import SKIP, deploy_rules, expanded, values_content

SUFFIXES = (".yaml", ".yml", ".json")
# (apiVersion, kind) -> vendored schema in schemas/vendor/ (see SOURCES.md there)
VENDORED = {
    ("helm.cattle.io/v1", "HelmChart"): "helmchart_v1.json",
    ("helm.cattle.io/v1", "HelmChartConfig"): "helmchartconfig_v1.json",
    ("metallb.io/v1beta1", "IPAddressPool"): "ipaddresspool_v1beta1.json",
    ("metallb.io/v1beta1", "L2Advertisement"): "l2advertisement_v1beta1.json",
}
METALLB_POOL = ("metallb.io/v1beta1", "IPAddressPool")
HELMCHART = ("helm.cattle.io/v1", "HelmChart")
MAX_ERRORS_PER_DOCUMENT = 10  # beyond this the first ones are the ones to fix


def _folder(repo: Path) -> Path | None:
    """The manifests folder, unless a link on the way leads out of server/ (load refuses
    links in server/; nothing is read through one meanwhile)."""
    folder = repo / MANIFESTS
    if not folder.is_dir():
        return None
    path = repo
    for part in Path(MANIFESTS).parts:
        path = path / part
        if path.is_symlink():
            return None
    return folder


def files(repo: Path) -> list[Path]:
    folder = _folder(repo)
    if folder is None:
        return []
    return sorted(
        p for p in folder.rglob("*") if p.suffix in SUFFIXES and not (p.is_dir() or p.is_symlink())
    )


def ignored_files(repo: Path) -> list[Path]:
    """Files in the manifests folder that k3s will not apply (a misnamed `app.yml.txt`)."""
    folder = _folder(repo)
    if folder is None:
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix not in SUFFIXES
        and p.suffix != SKIP
        and not p.name.startswith(".")
        and p.name != "README.md"
    )


def check(repo: Path, config: Mapping[str, str] | None = None) -> list[Diagnostic]:
    """Every problem in every manifest; `config` (with defaults) gives the K3S version
    and the external network, or the schema defaults when config did not load."""
    repo = repo.resolve()
    paths = files(repo)
    out = [
        warning(
            p.relative_to(repo).as_posix(),
            None,
            f"k3s applies only {', '.join(SUFFIXES)} files from the manifests folder; "
            "this one is ignored",
        )
        for p in ignored_files(repo)
    ]
    if not paths:
        return out
    rules, applied = deploy_rules(repo, paths)
    out += rules
    settings = {**schema.defaults("config"), **(config or {})}
    context = _Context.from_config(settings)
    for path in applied:
        out += check_file(path, path.relative_to(repo).as_posix(), context)
    return out


@dataclass(frozen=True)
class _Context:
    k8s_minor: str  # e.g. "1.31"
    external_net: IPv4Network | None
    master_ip: IPv4Address | None
    gateway: IPv4Address | None

    @classmethod
    def from_config(cls, v: Mapping[str, str]) -> _Context:
        m = re.match(r"^v?(\d+)\.(\d+)", v.get("LC_K3S_VERSION", ""))
        minor = f"{m[1]}.{m[2]}" if m else "1.31"
        try:
            net = IPv4Network(v["LC_EXTERNAL_NET"])
            ip, gw = IPv4Address(v["LC_EXTERNAL_IP"]), IPv4Address(v["LC_EXTERNAL_GW"])
        except (KeyError, ValueError):
            net = ip = gw = None
        return cls(minor, net, ip, gw)


def check_file(path: Path, rel: str, context: _Context) -> list[Diagnostic]:
    text, out = envfile.read_text(path, rel)
    if text is None:
        return out
    if rel.endswith(".json") and (problems := syntax.json_problems(text, rel)):
        return problems
    for doc in expanded(documents(text, rel, out)):
        try:
            out += check_document(doc, rel, context)
        except RecursionError:
            out.append(error(rel, doc.line, "nested too deeply to check"))
    return out


@dataclass(frozen=True)
class Document:
    node: Any  # the yaml node, for field lines
    data: Any
    line: int


def documents(text: str, rel: str, problems: list[Diagnostic]) -> Iterator[Document]:
    """Each non-empty YAML document with its node; a syntax error ends the file."""
    import yaml

    try:
        depth, line = yaml_limits.nesting(text)
        if depth > yaml_limits.MAX_DEPTH:
            deep = yaml_limits.MAX_DEPTH
            problems.append(error(rel, line, f"nested more than {deep} levels deep"))
            return
    except yaml.YAMLError:
        pass  # the loader below reports it, with its line
    loader = yaml_limits.loader()(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if (size := yaml_limits.expanded_size(node)) > yaml_limits.MAX_NODES:
                problems.append(
                    error(
                        rel,
                        node.start_mark.line + 1,
                        f"expands to more than {yaml_limits.MAX_NODES:,} values "
                        "through YAML aliases "
                        f"(at least {size:,}): not checked",
                    )
                )
                continue
            data = loader.construct_document(node)
            if data is not None:
                yield Document(node, data, node.start_mark.line + 1)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.append(error(rel, line, f"YAML syntax error: {problem}"))
    except RecursionError:
        problems.append(error(rel, None, "YAML nested too deeply"))
    finally:
        loader.dispose()


def line_of(doc: Document, path: Iterator[Any] | list[Any]) -> int:
    """The line of the field at `path` (keys and list indexes), or of its closest parent."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    node, line = doc.node, doc.line
    for part in path:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                break
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_document(doc: Document, rel: str, context: _Context) -> list[Diagnostic]:
    data = doc.data
    if not isinstance(data, dict):
        return [error(rel, doc.line, "a manifest must be a mapping with apiVersion and kind")]
    api, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str) or not api or not kind:
        missing = "apiVersion" if not isinstance(api, str) or not api else "kind"
        return [error(rel, line_of(doc, [missing]), f"{missing}: required, a string")]
    key = _name(data, kind)
    out: list[Diagnostic] = []
    metadata = data.get("metadata")
    if kind != "List" and not (isinstance(metadata, dict) and metadata.get("name")):
        out.append(error(rel, line_of(doc, ["metadata"]), "metadata.name: required", key))
    if (api, kind) in VENDORED:
        validator = k8s_schemas.vendored(VENDORED[api, kind])
    else:
        found = k8s_schemas.core(context.k8s_minor, api, kind)
        if isinstance(found, str):
            return out + [_unknown_kind(rel, doc, key, api, kind, found, context.k8s_minor)]
        validator = found
    out += _schema_errors(validator, doc, rel, key)
    if (api, kind) == HELMCHART and not out:
        out += values_content(doc, rel, key)
    if (api, kind) == METALLB_POOL and not out:
        out += _pool(doc, rel, key, context)
    return out


def _name(data: dict, kind: str) -> str:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind}/{name}" if isinstance(name, str) and name else kind


def _schema_errors(validator: Any, doc: Document, rel: str, key: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    errors = sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.path)))
    for err in errors:
        if len(out) > MAX_ERRORS_PER_DOCUMENT:
            break
        path = list(err.path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list(err.schema.get("properties", {}))
            for extra in sorted(map(str, set(map(str, err.instance)) - set(allowed))):
                if len(out) > MAX_ERRORS_PER_DOCUMENT:
                    break
                where = _dotted([*path, extra])
                close = difflib.get_close_matches(extra, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                out.append(
                    error(rel, line_of(doc, [*path, extra]), f"{where}: unknown field{hint}", key)
                )
            continue
        where = _dotted(path) or "(document)"
        out.append(error(rel, line_of(doc, path), f"{where}: {_short(err.message)}", key))
    if len(out) > MAX_ERRORS_PER_DOCUMENT:
        out = out[:MAX_ERRORS_PER_DOCUMENT]
        out.append(
            error(rel, doc.line, "more problems in this document not shown: fix these first", key)
        )
    return out


def _short(message: str, limit: int = 200) -> str:
    """jsonschema's message quotes the offending value: never a huge one."""
    return message if len(message) <= limit else f"{message[: limit - 3]}..."


def _unknown_kind(
    rel: str, doc: Document, key: str, api: str, kind: str, filename: str, minor: str
) -> Diagnostic:
    version = k8s_schemas.k8s_version(minor)
    line = line_of(doc, ["kind"])
    kinds = k8s_schemas.core_kinds(minor, api)
    if kinds is not None:
        close = difflib.get_close_matches(kind.lower(), kinds, n=1, cutoff=0.6)
        hint = f" (did you mean {k8s_schemas.kind_name(minor, api, close[0])}?)" if close else ""
        return error(
            rel, line, f"Kubernetes {version} has no kind {kind!r} in {api}{hint}", key or kind
        )
    return warning(
        rel,
        line,
        f"no schema for {kind} ({api}) among Kubernetes {version}'s kinds or Scooby's vendored "
        "CRDs: not checked",
        key,
    )


# --- MetalLB: the pool must sit on the external network, clear of the master -------------------


def _pool(doc: Document, rel: str, key: str, context: _Context) -> list[Diagnostic]:
    if context.external_net is None:
        return []
    out = []
    for i, entry in enumerate(doc.data["spec"]["addresses"]):
        line = line_of(doc, ["spec", "addresses", i])
        where = f"spec.addresses[{i}]"
        span = _span(entry)
        if span is None:
            out.append(
                error(rel, line, f"{where}: {shown(entry)} is not a CIDR or a start-end range", key)
            )
            continue
        if span[0].version != 4:
            continue  # the master's networks are IPv4; an IPv6 pool cannot clash with them
        start, end = span
        if start > end:
            out.append(error(rel, line, f"{where}: {entry!r} starts after it ends", key))
            continue
        net = context.external_net
        if start not in net or end not in net:
            out.append(
                error(
                    rel,
                    line,
                    f"{where}: {entry!r} lies outside the external network {net} "
                    "(LC_EXTERNAL_NET): MetalLB answers ARP on the master's external side",
                    key,
                )
            )
            continue
        for what, ip in (
            ("the master's external address (LC_EXTERNAL_IP)", context.master_ip),
            ("the gateway (LC_EXTERNAL_GW)", context.gateway),
        ):
            if ip is not None and start <= ip <= end:
                out.append(error(rel, line, f"{where}: {entry!r} contains {what} {ip}", key))
    return out


def _span(entry: Any):
    if not isinstance(entry, str):
        return None
    try:
        if "-" in entry:
            first, last = (ip_address(part.strip()) for part in entry.split("-", 1))
            if first.version != last.version:
                return None
            return first, last
        net = ip_network(entry.strip(), strict=False)
        return net.network_address, net.broadcast_address
    except ValueError:
        return None


# --- `python -m scooby.validate.manifests [--repo DIR]`: the scooby-manifests pre-commit hook ---


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m scooby.validate.manifests",
        description="check the Kubernetes manifests under " + MANIFESTS,
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), metavar="DIR")
    parser.add_argument("files", nargs="*", help="ignored: every manifest is checked")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    config = reader.written(repo, reader.CONFIG)
    found = sorted(set(check(repo, config)), key=lambda d: (d.path, d.line or 0))
    for d in found:
        print(d, file=sys.stderr)
    return 1 if any(d.severity == "error" for d in found) else 0


if __name__ == "__main__":
    raise SystemExit(main())
