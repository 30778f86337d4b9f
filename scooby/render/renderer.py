"""`scooby render`: the validated Cluster through templates/** into plain files.

    OUT/boot/          the master's FAT boot partition
    OUT/master/        merged over the master's root (paths are the on-master paths)
    OUT/agents/NAME/   each agent's private layer (placed at layout.AGENT_LAYERS/NAME)

templates/boot/** and templates/master/** render once; templates/agent/** once per agent,
with `agent` in the context. A template whose path holds `{{ ... }}` (e.g.
`master/srv/tftp/{{ agent.pxe_id }}/cmdline.txt.j2`) renders once per agent, path included.
A template's executable bit carries to its output; `.j2` is dropped from names. Output is
byte-for-byte deterministic: sorted walks, no clocks. The
user's server/** is copied over OUT/master last, verbatim; where it replaces a generated
file a warning names both. OUT is written beside itself and swapped in whole, so an error
or interrupt never leaves a half-rendered tree. `scooby render` then hands the tree to the
daemons' own checkers (scooby.render.checks) unless --no-check is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scooby.core import layout
from scooby.core.errors import Diagnostic, ScoobyError, error, warning
from scooby.core.model import Cluster
from scooby.core.paths import TEMPLATES_DIR
from scooby.load.envfile import read_bytes
from scooby.load.files import SERVER_FILE_LIMIT
from scooby.load.reader import SERVER
from scooby.render import outdir
from scooby.util import templates
from scooby.validate.k3s import facts as k3s_facts

SECTIONS = ("boot", "master")  # rendered once; "agent" is rendered per agent
# NFS export fsids are UUIDs derived from the agent's name: stable when agents come and go.
FSID_NAMESPACE = uuid.UUID("5c00b7e5-4e46-5344-8000-736361626f6f")


@dataclass(frozen=True)
class Rendered:
    out: Path
    files: tuple[str, ...]  # OUT-relative paths, sorted
    diagnostics: tuple[Diagnostic, ...]  # warnings (server/ overriding generated files)


def environment(root: Path):
    """util.templates' environment with render's own filter, `nfs_fsid`."""
    return templates.environment(root, {"nfs_fsid": nfs_fsid})


def nfs_fsid(name: str) -> str:
    """The NFS export fsid of an agent: a UUID from its name alone, so it never moves."""
    return str(uuid.uuid5(FSID_NAMESPACE, name))


def _check_fsids(cluster: Cluster) -> None:
    """Two agents must never share an fsid (NFS would mix up their file handles)."""
    seen: dict[str, str] = {}
    for agent in cluster.agents:
        other = seen.setdefault(nfs_fsid(agent.name), agent.name)
        if other != agent.name:
            raise ScoobyError(
                error(agent.source.path, None, f"NFS fsid collides with agent {other!r}")
            )


def context(cluster: Cluster) -> dict[str, Any]:
    # What the user's server/ files decide for K3S and the firewall (ServiceLB, MetalLB's
    # LoadBalancer ranges, DHCP on the external network): read as validate reads them.
    k3s = k3s_facts(cluster.master, cluster.repo)
    return {
        "cluster": cluster,
        "master": cluster.master,
        "agents": cluster.agents,
        "secrets": cluster.secrets,
        "layout": layout,
        "k3s": k3s,
        "firewall": {
            "open_ports": cluster.master.open_ports,
            "lb_ranges": k3s.lb_ranges,
            "external_dhcp": k3s.external_dhcp,
        },
    }


Checker = Callable[[Path], list[Diagnostic]]


def render(
    cluster: Cluster, out: Path, templates: Path | None = None, check: Checker | None = None
) -> Rendered:
    """Render into `out`, swapped in whole once complete (and, with `check`, checked).

    The tree is built in a workspace beside `out` (`.NAME.next`): the previous render but
    one, which the swap leaves there. Files that did not change are not rewritten and
    nothing is deleted and recreated, which matters where creating and removing thousands
    of small files is slow (a 250-agent render on a virtual disk). `check` (the daemons'
    checkers) runs on the workspace: a tree it rejects is never swapped in.
    """
    templates = templates or TEMPLATES_DIR
    _check_fsids(cluster)
    out = out.resolve()
    outdir.refuse_inputs(cluster.repo, out)
    work = out.with_name(f".{out.name}.next")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with outdir.locked(out):
            for folder in (out, work, outdir.aside(out)):
                outdir.refuse_unowned(folder)
            return _render_locked(cluster, out, work, templates, check)
    except OSError as exc:
        outdir.discard(work)  # a full disk stays full with a half-written workspace on it
        where = exc.filename or out
        raise ScoobyError(error("", None, f"cannot write {where}: {exc.strerror or exc}")) from None


def _render_locked(
    cluster: Cluster, out: Path, work: Path, templates: Path, check: Checker | None
) -> Rendered:
    env = environment(templates)
    if not work.is_dir():
        work.mkdir()
    _mark(work)
    writer = _Writer(work)
    try:
        ctx = context(cluster)
        for section in SECTIONS:
            _render_tree(_templates(env, templates, section), writer, section, ctx)
        agent_templates = _templates(env, templates, "agent")
        writer.mkdir("agents")
        for agent in cluster.agents:
            _render_tree(agent_templates, writer, f"agents/{agent.name}", {**ctx, "agent": agent})
        writer.close()
        generated = set(writer.written)
        diagnostics = _merge_server(cluster, work, generated)
        files = generated | {_server_target(rel) for rel in cluster.server_files} | {outdir.MARKER}
        _prune(work, files)
        if check is not None:
            diagnostics += check(work)  # raises ScoobyError on a rejected tree: no swap
        outdir.swap_in(work, out)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()  # no thread may still be writing when the error propagates
        raise
    return Rendered(out, tuple(sorted(files)), tuple(diagnostics))


def _mark(folder: Path) -> None:
    marker = folder / outdir.MARKER
    if not marker.is_file() or marker.is_symlink():
        _write_file(marker, outdir.MARKER_TEXT.encode(), 0o644)


@dataclass(frozen=True)
class _Template:
    template: Any  # jinja2.Template of the content
    name: str  # the output path under its section, ".j2" dropped
    path: Any  # jinja2.Template of `name` when it holds `{{ ... }}`, else None
    mode: int


def _templates(env, templates: Path, section: str) -> list[_Template]:
    """A section's templates, compiled once (an agent section is rendered 250 times)."""
    src_root = templates / section
    if not src_root.is_dir():
        return []
    found = []
    for src in sorted(src_root.rglob("*")):
        if src.is_dir() or src.name == ".gitkeep":
            continue
        name = src.relative_to(src_root).as_posix().removesuffix(".j2")
        found.append(
            _Template(
                env.get_template(src.relative_to(templates).as_posix()),
                name,
                env.from_string(name) if "{{" in name else None,
                0o755 if src.stat().st_mode & 0o111 else 0o644,
            )
        )
    return found


class _Writer:
    """Writes rendered files under one root (the workspace), rewriting only what changed.

    Rendering is CPU work; writing thousands of small files is waiting on the file system.
    So each top-level tree (boot, master, every agent) is written by a small thread pool
    while the next one renders.
    """

    THREADS = 4

    def __init__(self, root: Path):
        from concurrent.futures import ThreadPoolExecutor

        self.root = root
        self.written: list[str] = []
        self._pool = ThreadPoolExecutor(self.THREADS)
        self._pending: list = []

    def mkdir(self, dest: str) -> None:
        _make_dirs(self.root, self.root / dest)

    def write_tree(self, dest: str, files: list[tuple[str, str, int]]) -> None:
        """Queue one tree's files: (path under dest, text, mode)."""
        self.written += [f"{dest}/{name}" for name, _, _ in files]
        self._pending.append(self._pool.submit(_write_tree, self.root, dest, files))

    def close(self) -> None:
        """Wait for every write; the first failure is raised."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _write_tree(root: Path, dest: str, files: list[tuple[str, str, int]]) -> None:
    made: set[Path] = set()
    _make_dirs(root, root / dest)
    for name, text, mode in files:
        target = root / dest / name
        if target.parent not in made:
            _make_dirs(root, target.parent)
            made.add(target.parent)
        _write_file(target, text.encode("utf-8"), mode)


def _write_file(target: Path, data: bytes, mode: int) -> None:
    """`target` holds `data` with `mode` afterwards; untouched if it already did."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == len(data):
        if target.read_bytes() == data:
            if stat.S_IMODE(st.st_mode) != mode:
                target.chmod(mode)
            return
    elif st is not None and stat.S_ISDIR(st.st_mode):
        shutil.rmtree(target)
    elif st is not None and not stat.S_ISREG(st.st_mode):
        target.unlink()  # a link or anything else: never write through it
    target.write_bytes(data)
    target.chmod(mode)


def _make_dirs(root: Path, path: Path) -> None:
    """mkdir -p inside root, replacing any file (or link) where a directory must be."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_dir() and not current.is_symlink():
            continue
        if current.is_symlink() or current.exists():
            current.unlink()
        current.mkdir()
        current.chmod(0o755)  # whatever the umask: the image's folders are 0755


def _prune(root: Path, keep: set[str]) -> None:
    """Remove from the workspace every file that is not in this render, and emptied dirs."""
    for folder, dirs, names in os.walk(root, topdown=False):
        here = Path(folder)
        for name in names:
            path = here / name
            if path.relative_to(root).as_posix() not in keep:
                path.unlink()
        for name in dirs:
            path = here / name
            if path.is_symlink():
                path.unlink()
            elif not any(path.iterdir()) and path.relative_to(root).as_posix() not in _DIRS_KEPT:
                path.rmdir()


_DIRS_KEPT = {"boot", "master", "agents"}  # always present, even when empty


def _render_tree(found: list[_Template], writer: _Writer, dest: str, ctx: dict[str, Any]) -> None:
    files = []
    for t in found:
        per_agent = t.path is not None and "agent" not in ctx
        for c in [{**ctx, "agent": a} for a in ctx["agents"]] if per_agent else [ctx]:
            name = t.path.render(c) if t.path is not None else t.name
            files.append((name, t.template.render(c), t.mode))
    writer.write_tree(dest, files)


def _server_target(rel: str) -> str:
    return f"master/{Path(rel).relative_to(SERVER).as_posix()}"


def _collisions(cluster: Cluster, generated: set[str]) -> list[Diagnostic]:
    """server/ files that would delete generated files: a file where Scooby writes a folder
    (`server/etc/iptables` over etc/iptables/rules.v4), or a folder where it writes a file."""
    folders: dict[str, str] = {}
    for path in sorted(generated):
        parts = path.split("/")
        for i in range(1, len(parts)):
            folders.setdefault("/".join(parts[:i]), path)
    found = []
    for rel in cluster.server_files:
        target = _server_target(rel)
        parts = target.split("/")
        parents = ["/".join(parts[:i]) for i in range(2, len(parts))]
        if target in folders:
            example = folders[target].removeprefix("master")
            found.append(
                error(
                    rel,
                    None,
                    f"is a file where Scooby generates the folder {target.removeprefix('master')}"
                    f" (with {example}): it would delete those files; put yours inside it",
                )
            )
        elif clash := next((p for p in parents if p in generated), None):
            found.append(
                error(
                    rel,
                    None,
                    "needs a folder where Scooby generates the file "
                    f"{clash.removeprefix('master')}",
                )
            )
    return found


def _merge_server(cluster: Cluster, root: Path, generated: set[str]) -> list[Diagnostic]:
    """Copy server/** over the master tree; warn where a generated file is replaced."""
    if clashes := _collisions(cluster, generated):
        raise ScoobyError(clashes)
    found = []
    for rel in cluster.server_files:
        src = cluster.repo / rel
        target = _server_target(rel)
        if target in generated:
            on_master = target.removeprefix("master")
            found.append(
                warning(
                    rel,
                    None,
                    f"replaces the file Scooby generates at {on_master} "
                    f"(from templates/master{on_master}); yours wins",
                )
            )
        _make_dirs(root, (root / target).parent)
        data, problems = read_bytes(src, rel, SERVER_FILE_LIMIT)
        if data is None:  # changed since load checked it
            raise ScoobyError(problems)
        _write_file(root / target, data, 0o755 if src.stat().st_mode & 0o111 else 0o644)
    return found
