"""K3S's own rules for its manifests folder, as its deploy controller applies it.

- Each file becomes an AddOn named after the file's name up to its first dot, so two files
  with that name in different subfolders replace each other, and the name must be a valid
  Kubernetes name.
- Dotfiles are skipped; `NAME.skip` makes K3S skip `NAME`.
- K3S's packaged manifests (traefik.yaml, ...) are rewritten at every start.
- `kind: List` is expanded into its items.
- A HelmChart's `valuesContent` is YAML in a string, parsed only at install.

Sources: k3s-io/k3s pkg/deploy/controller.go; docs.k3s.io/installation/packaged-components.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from scooby.core.errors import Diagnostic, error, warning
from scooby.core.model import MANIFESTS

if TYPE_CHECKING:
    from scooby.validate.manifests import Document


# K3S's packaged AddOns: their manifests are rewritten at every K3S start.
PACKAGED = (
    "ccm",
    "coredns",
    "local-storage",
    "metrics-server",
    "rolebindings",
    "runtimes",
    "traefik",
)
# An AddOn's name is the file's name up to its first dot, and must be an RFC 1123 subdomain.
ADDON_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SKIP = ".skip"


def addon(path: Path) -> str:
    return path.name.split(".", 1)[0]


def deploy_rules(repo: Path, paths: list[Path]) -> tuple[list[Diagnostic], list[Path]]:
    """K3S's file rules; and the files K3S will apply (dotfiles and skipped ones left out)."""
    out: list[Diagnostic] = []
    folder = repo / MANIFESTS
    skips = {p.name[: -len(SKIP)]: p for p in folder.rglob(f"*{SKIP}") if p.is_file()}
    applied: list[Path] = []
    seen: dict[str, str] = {}
    names = {p.name for p in paths}
    for name, skip in sorted(skips.items()):
        if name not in names and addon(Path(name)) not in PACKAGED:
            out.append(
                warning(
                    skip.relative_to(repo).as_posix(),
                    None,
                    f"K3S skips a manifest named {name!r}, and there is none: this skips nothing",
                )
            )
    for path in paths:
        rel = path.relative_to(repo).as_posix()
        if path.name.startswith("."):
            out.append(
                warning(rel, None, "K3S skips files whose name starts with a dot: never applied")
            )
            continue
        if path.name in skips:
            continue  # NAME.skip: K3S ignores it, on purpose
        name = addon(path)
        if name in PACKAGED:
            out.append(
                error(
                    rel,
                    None,
                    f"K3S rewrites its packaged {name!r} manifest at every start, replacing this "
                    f"file: name yours differently (and add {name}.yaml{SKIP} to stop K3S "
                    "deploying its own, or change it with a HelmChartConfig)",
                )
            )
            continue
        if not ADDON_NAME.fullmatch(name) or len(name) > 253:
            out.append(
                error(
                    rel,
                    None,
                    f"K3S names this file's AddOn {name!r} (the name up to its first dot), which "
                    "is not a lower-case RFC 1123 name (a-z, 0-9, '-'): K3S would refuse it",
                )
            )
            continue
        if name in seen:
            out.append(
                error(
                    rel,
                    None,
                    f"K3S tracks this file as AddOn {name!r}, as it does {seen[name]}: each "
                    "would replace what the other applied; rename one",
                )
            )
            continue
        seen[name] = rel
        applied.append(path)
    return out, applied


def expanded(docs: Iterator[Document]) -> Iterator[Document]:
    """Each document, with a `kind: List`'s items in its place (K3S applies them one by one)."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    from scooby.validate.manifests import Document

    for doc in docs:
        data = doc.data
        if not (
            isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1"
        ):
            yield doc
            continue
        items_node = None
        if isinstance(doc.node, MappingNode):
            for key, value in doc.node.value:
                if isinstance(key, ScalarNode) and key.value == "items":
                    items_node = value
        items = data.get("items")
        if not isinstance(items, list) or not isinstance(items_node, SequenceNode):
            yield doc  # reported as a List without items
            continue
        for item, node in zip(items, items_node.value, strict=True):
            yield Document(node, item, node.start_mark.line + 1)


def values_content(doc: Document, rel: str, key: str) -> list[Diagnostic]:
    """A HelmChart's `spec.valuesContent` is YAML in a string: Helm parses it at install."""
    import yaml

    from scooby.validate.manifests import line_of
    from scooby.validate.yaml_limits import loader as _loader

    spec = doc.data.get("spec")
    text = spec.get("valuesContent") if isinstance(spec, dict) else None
    if not isinstance(text, str):
        return []
    line = line_of(doc, ["spec", "valuesContent"])
    content = [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]
    if all(s in ("---", "...") for s in content):
        return []  # no values at all (the original README's `...`): Helm's defaults
    try:
        yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        # A block scalar's text starts on the line after `valuesContent: |`.
        at = line + 1 + mark.line if mark is not None else line
        return [error(rel, at, f"spec.valuesContent: not valid YAML: {problem}", key)]
    return []
