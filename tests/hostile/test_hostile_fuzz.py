"""Hypothesis against every loader (config, .env, agent files, manifests, the server/ tree,
a release's SHA256SUMS) and against render with random server/ trees.

For every input: no exception but ScoobyError, every message one line of bounded length
with no planted secret, and render touches nothing outside --out. In-process calls keep
2,000 examples per loader well inside CI's time (figures: docs/security.md).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hostile import GITHUB_TOKEN, PRIVATE_KEY, SECRETS, WILLOW, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scooby.core.errors import Diagnostic, ScoobyError
from scooby.core.model import MANIFESTS
from scooby.load import files, reader, schema
from scooby.release import artifacts
from scooby.render import renderer
from scooby.validate import manifests, rules

EXAMPLES = int(os.environ.get("SCOOBY_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a hang is caught by the per-example bound below, not by timing noise
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
MEMORY = 3 << 30  # bytes of resident memory the whole suite may reach

# Pieces a careless or hostile user types: separators, quotes, control characters,
# secrets, and values each format reads differently.
NASTY = [
    "\n", "\r", "\r\n", "\x00", "\x1b", "\t", "\x7f", "\u2028", "\ufeff", "\udcff"[:0],
    "=", "'", '"', "\\", "$", "`", "#", " ", "export ", "../", "/", "*", "&a", "*a",
    "null", "yes", "0x10", "lo", "..", "-token=x", "127.0.0.1", "0.0.0.0", "224.0.0.1",
    GITHUB_TOKEN, PRIVATE_KEY, "A" * 5000,
]  # fmt: skip
KEYS = [*schema.all_keys(), "LC_NOPE", "AGENT_X", "export LC_HOSTNAME", "", "1BAD", "a b"]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
piece = st.one_of(text, st.sampled_from(NASTY))
value = st.lists(piece, max_size=4).map("".join)
line = st.one_of(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["=", " = ", '="', "='", ":"]), value).map(
        lambda t: "".join(t)
    ),
    value,
)
env_text = st.lists(line, max_size=12).map("\n".join)
raw = st.one_of(env_text.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=300))


def _diagnostics_ok(found: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
    for d in found:
        s = str(d)
        assert "\n" not in s and "\r" not in s, s
        assert len(s) < 2000, len(s)
        for secret in SECRETS:
            assert secret not in s, s
        s.encode("utf-8")  # prints on any terminal


def _memory_ok() -> None:
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < MEMORY


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for all examples: a git checkout on a tag, as users have (load
    describes it: one `git describe` per load, not the three an untagged one costs)."""
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    (root / "agents").mkdir(parents=True)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    subprocess.run([*git, "tag", "v1.0.0"], check=True)
    return root


def _reset(repo: Path, keep: tuple[str, ...] = (".git",)) -> None:
    for child in repo.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (repo / "agents").mkdir(exist_ok=True)


def _load_and_rules(repo: Path) -> None:
    loaded = reader.load(repo, environ={})
    _diagnostics_ok(loaded.diagnostics)
    _diagnostics_ok(rules.check(loaded, repo))


@FUZZ
@given(data=raw)
def test_config_loader(repo: Path, data: bytes) -> None:
    _reset(repo)
    (repo / "config").write_bytes(data)
    (repo / "agents/willow.agent").write_text(WILLOW)
    _load_and_rules(repo)
    _memory_ok()


@FUZZ
@given(data=raw)
def test_env_loader(repo: Path, data: bytes) -> None:
    _reset(repo)
    (repo / "config").write_text("")
    (repo / ".env").write_bytes(data)
    loaded = reader.load(repo, environ={})  # rules add only git's word on .env
    _diagnostics_ok(loaded.diagnostics)
    _memory_ok()


agent_name = st.one_of(
    st.sampled_from(["willow", "null", "yes", "0x10", "a" * 64, "x\ny", "UPPER", "-a", "a."]),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=20,
    ),
)


@FUZZ
@given(data=raw, name=agent_name, base=st.booleans())
def test_agent_loader(repo: Path, data: bytes, name: str, base: bool) -> None:
    _reset(repo)
    (repo / "config").write_text("")
    if base:  # next to a good agent: duplicates, shared addresses
        (repo / "agents/willow.agent").write_text(WILLOW)
    (repo / "agents" / f"{name}.agent").write_bytes(data)
    _load_and_rules(repo)
    _memory_ok()


# --- manifests: YAML and JSON, structured and not ------------------------------------------------

scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), value)
tree = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS + ["spec", "metadata", "name"]), children, max_size=4),
    ),
    max_leaves=20,
)
kinds = st.sampled_from(
    [("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("helm.cattle.io/v1", "HelmChart"),
     ("metallb.io/v1beta1", "IPAddressPool"), ("x.example/v1", "Thing"), ("v1", "Nope")]
)  # fmt: skip


def _manifest(kind: tuple[str, str], body: object, name: object) -> str:
    doc = {"apiVersion": kind[0], "kind": kind[1], "metadata": {"name": name}, "spec": body}
    return yaml.safe_dump(doc, allow_unicode=True)


alias_bomb = st.integers(1, 12).map(
    lambda n: (
        "a0: &a0 [x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]\n" for i in range(1, n))
    )
)
manifest_text = st.one_of(
    st.builds(_manifest, kinds, tree, scalar),
    env_text,
    alias_bomb,
    st.integers(1, 300).map(lambda n: "[" * n + "]" * n),
    st.lists(
        st.sampled_from(
            [
                "---",
                "- a",
                "a: *b",
                "&x [1]",
                "{",
                "}",
                "? a",
                "!!python/object:os.system x",
                "a: |",
                "  - b",
            ]
        ),
        max_size=10,
    ).map("\n".join),
)


@FUZZ
@given(data=manifest_text, suffix=st.sampled_from([".yaml", ".yml", ".json"]))
def test_manifest_loader(repo: Path, data: str, suffix: str) -> None:
    path = repo / f"m{suffix}"
    path.write_text(data, "utf-8", errors="surrogatepass")
    context = manifests._Context.from_config(schema.defaults("config"))
    _diagnostics_ok(manifests.check_file(path, f"{MANIFESTS}/m{suffix}", context))
    _memory_ok()


# --- the server/ tree: files, folders, links, FIFOs, odd names ------------------------------------

entry_name = st.one_of(
    st.sampled_from(
        [
            "etc",
            "tmp",
            "root",
            "iptables",
            "hosts",
            "a\nb",
            "README.md",
            ".gitkeep",
            "x" * 255,
            ".."[:1],
        ]
    ),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=12,
    ),
)
entry = st.tuples(
    st.lists(entry_name, min_size=1, max_size=3),
    st.sampled_from(["file", "exec", "dir", "link-out", "link-in", "dangling", "fifo", "secret"]),
)


def _build_server(repo: Path, entries: list) -> None:
    server = repo / "server"
    server.mkdir(exist_ok=True)
    for parts, kind in entries:
        if any(p in (".", "..") for p in parts):
            continue
        path = server.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(path):
                continue
            if kind in ("file", "exec", "secret"):
                path.write_text(f"token = {GITHUB_TOKEN}\n" if kind == "secret" else "x\n")
                path.chmod(0o755 if kind == "exec" else 0o644)
            elif kind == "dir":
                path.mkdir()
            elif kind == "link-out":
                path.symlink_to("/proc/self/environ")
            elif kind == "link-in":
                path.symlink_to("../config")
            elif kind == "dangling":
                path.symlink_to("nowhere")
            else:
                os.mkfifo(path)
        except OSError:
            continue  # a name the file system refuses (too long, a file where a folder is)


@FUZZ
@given(entries=st.lists(entry, max_size=6))
def test_server_tree_loader(repo: Path, entries: list) -> None:
    _reset(repo)
    (repo / "config").write_text("")
    _build_server(repo, entries)
    problems: list[Diagnostic] = []
    found = files.server_files(repo, problems)
    _diagnostics_ok(problems)
    for rel in found:  # only regular files, never through a link
        path = repo / rel
        assert path.is_file() and not path.is_symlink(), rel
    _memory_ok()


# --- a release's SHA256SUMS and release.json ---------------------------------------------------

sums_line = st.one_of(
    st.tuples(
        st.sampled_from(["0" * 64, "z" * 64, ""]), st.sampled_from(["  ", " ", "\t"]), piece
    ).map(lambda t: "".join(t)),
    value,
)


@FUZZ
@given(
    sums=st.lists(sums_line, max_size=6).map("\n".join),
    manifest=st.one_of(value, st.just('{"version": "v1.0.0"}')),
)
def test_release_sums_loader(
    tmp_path_factory: pytest.TempPathFactory, sums: str, manifest: str
) -> None:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "SHA256SUMS").write_text(sums, "utf-8", errors="surrogatepass")
    (dist / "release.json").write_text(manifest, "utf-8", errors="surrogatepass")
    try:
        made = artifacts.from_dist(dist)
    except ScoobyError as err:
        _diagnostics_ok(err.diagnostics)
    else:
        for a in made.artifacts:
            assert a.path.parent == dist, a.path
    _memory_ok()


# --- render with random server/ trees ----------------------------------------------------------


@settings(FUZZ, max_examples=max(50, EXAMPLES // 20))
@given(entries=st.lists(entry, max_size=5))
def test_render_with_random_server_trees(
    tmp_path_factory: pytest.TempPathFactory, entries: list
) -> None:
    root = tmp_path_factory.mktemp("render")
    repo = root / "repo"
    (repo / "agents").mkdir(parents=True)
    (repo / "config").write_text("")
    (repo / "agents/willow.agent").write_text(WILLOW)
    _build_server(repo, entries)
    before = snapshot(root, skip=("out", ".out.next", ".out.swap"))
    loaded = reader.load(repo, environ={})
    _diagnostics_ok(loaded.diagnostics)
    if loaded.cluster is not None and not [d for d in loaded.diagnostics if d.severity == "error"]:
        for _ in range(2):  # a second render reuses the first's workspace
            try:
                renderer.render(loaded.cluster, root / "out")
            except ScoobyError as err:
                _diagnostics_ok(err.diagnostics)
    assert snapshot(root, skip=("out", ".out.next", ".out.swap")) == before
    _memory_ok()
