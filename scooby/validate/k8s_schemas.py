"""Schemas for manifests: Scooby's vendored CRDs, and the core kinds' strict schemas that the
kubernetes-validate package ships (found without importing it: its import costs more than the
whole check)."""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from scooby.core.paths import SCHEMAS_DIR
from scooby.core.patterns import validator_class


@cache
def vendored(name: str) -> Any:
    from jsonschema import Draft202012Validator

    cls = validator_class(Draft202012Validator)  # `$` as JSON Schema means it
    return cls(json.loads((SCHEMAS_DIR / "vendor" / name).read_text("utf-8")))


@cache
def _k8s_dir(minor: str) -> Path:
    """kubernetes-validate's strict schemas for `minor`, or the nearest version it ships.

    Found without importing the package (its import costs more than the whole check)."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    shipped = {}
    for d in root.iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", d.name)
        if m:
            shipped[(int(m[1]), int(m[2]))] = d
    want = tuple(map(int, minor.split(".")))
    nearest = min(shipped, key=lambda v: (abs(v[0] - want[0]) * 1000 + abs(v[1] - want[1]), v))
    return shipped[nearest]


def k8s_version(minor: str) -> str:
    """The Kubernetes minor whose schemas check core kinds for K3S `minor`."""
    return re.sub(r"^v(\d+\.\d+).*", r"\1", _k8s_dir(minor).name)


@cache
def _k8s_files(minor: str) -> frozenset[str]:
    return frozenset(p.name for p in _k8s_dir(minor).iterdir())


@cache
def _k8s_registry(minor: str) -> Any:
    from referencing import Registry, Resource

    defs = json.loads((_k8s_dir(minor) / "_definitions.json").read_text("utf-8"))
    return Registry().with_resource(defs["$id"], Resource.from_contents(defs))


def _k8s_file(api: str, kind: str) -> str:
    # the package's naming: rbac.authorization.k8s.io/v1 ClusterRole -> clusterrole-rbac-v1.json
    slug = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
    return f"{kind.lower()}-{slug}.json"


@cache
def _core_validator(minor: str, filename: str) -> Any:
    from jsonschema import Draft202012Validator

    text = (_k8s_dir(minor) / filename).read_text("utf-8")
    cls = validator_class(Draft202012Validator)
    return cls(json.loads(text), registry=_k8s_registry(minor))


def core(minor: str, api: str, kind: str) -> Any:
    """A validator for a core kind, or the file name that was looked for."""
    filename = _k8s_file(api, kind)
    if filename not in _k8s_files(minor) or "/" in kind:
        return filename
    # the file name drops the group's domain: make sure the group really is Kubernetes'
    group = api.rpartition("/")[0]
    if group and "." in group and not group.endswith(".k8s.io"):
        return filename
    return _core_validator(minor, filename)


def core_kinds(minor: str, api: str) -> list[str] | None:
    """The kinds Kubernetes has in `api` (lower case), or None when `api` is not its own."""
    group = api.rpartition("/")[0]
    if "." in group and not group.endswith(".k8s.io"):
        return None
    suffix = "-" + _k8s_file(api, "x").split("-", 1)[1]
    kinds = sorted(f.removesuffix(suffix) for f in _k8s_files(minor) if f.endswith(suffix))
    return kinds or None


def kind_name(minor: str, api: str, lower: str) -> str:
    """The CamelCase kind a schema file describes (file names are lower case)."""
    text = (_k8s_dir(minor) / _k8s_file(api, lower)).read_text("utf-8")
    enum = json.loads(text).get("properties", {}).get("kind", {}).get("enum") or [lower]
    return enum[0]
