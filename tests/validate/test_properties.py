"""Arbitrary bytes and shapes into every loader: a clean diagnostic or success, never a crash.

And the CLI as a user runs it: exit 0 (clean), 1 (problems), 2 (usage), never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from conftest import WILLOW, write_repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scooby.core.errors import Diagnostic
from scooby.core.model import MANIFESTS
from scooby.load import envfile, schema
from scooby.load import reader as load
from scooby.validate import manifests, syntax
from scooby.validate.validator import validate

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like the files users write: keys, '=', quotes, comments, odd bytes.
ENV_ALPHABET = st.sampled_from(
    list("AGENT_LC=#'\"\\ $`\t\r\n-:./0123456789abcdefxyz") + ["export ", "\x00", "é"]
)
env_text = st.lists(ENV_ALPHABET, max_size=120).map("".join)
keys = st.sampled_from(schema.all_keys() + ["FOO", "AGENT_IPP", "", "1A", "A B"])
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "192.168.64.65",
            "192.168.64.0/24",
            "0.0.0.0/0",
            "255.255.255.255",
            "b8:27:eb:81:1a:52",
            "01:00:5e:00:00:01",
            "c6811a52",
            "10000000c6811a52",
            "4f1c2d3e-02",
            "--server x",
            "'unclosed",
            "eth0",
            "buffy",
        ]
    ),
)
env_files = st.dictionaries(keys, values, max_size=8).map(
    lambda d: "".join(f"{k}={_quote(v)}\n" for k, v in d.items())
)


def _quote(v: str) -> str:
    return "'" + v.replace("'", "") + "'"


def _check(diagnostics) -> None:
    for d in diagnostics:
        assert isinstance(d, Diagnostic)
        assert d.severity in ("error", "warning")
        assert "\n" not in str(d) and "\r" not in str(d)  # one line per problem


@SETTINGS
@given(st.binary(max_size=300))
def test_envfile_decodes_any_bytes(data):
    text, problems = envfile.decode(data, "config")
    _check(problems)
    if text is not None:
        parsed, problems = envfile.parse(text, "config")
        _check(problems)
        for entry in parsed.entries:
            assert 1 <= entry.line <= text.count("\n") + 1


@SETTINGS
@given(env_text)
def test_envfile_parses_any_text(text):
    parsed, problems = envfile.parse(text, "agents/x.agent")
    _check(problems)
    assert len({e.key for e in parsed.entries}) == len(parsed.entries)


def _repo(files: dict[str, bytes]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="scooby-prop-"))
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@SETTINGS
@given(
    config=st.one_of(st.binary(max_size=200), env_files.map(str.encode)),
    dotenv=st.one_of(st.binary(max_size=100), env_files.map(str.encode)),
    agent=st.one_of(st.binary(max_size=200), env_files.map(str.encode)),
    name=st.sampled_from(["willow", "Willow", "ted", "buffy", "a_b", "-x", "x" * 70]),
)
def test_load_and_validate_take_any_files(config, dotenv, agent, name):
    repo = _repo(
        {
            "config": config,
            ".env": dotenv,
            f"agents/{name}.agent": agent,
            "agents/xander.agent": WILLOW.encode(),
            f"agents/{name}": agent,
            "server/etc/x.conf": config + agent,
        }
    )
    loaded = load.load(repo, environ={})
    _check(loaded.diagnostics)
    cluster, diagnostics = validate(repo, environ={})
    _check(diagnostics)
    paths = {"config", ".env", f"agents/{name}.agent", "agents/xander.agent", f"agents/{name}"}
    paths.add("server/etc/x.conf")
    assert {d.path for d in diagnostics} <= paths | {"(environment)"}


@SETTINGS
@given(st.dictionaries(keys, values, max_size=10))
def test_validate_takes_any_agent_shape(values_):
    text = "".join(f"{k}={_quote(v)}\n" for k, v in values_.items() if k and " " not in k)
    repo = _repo(
        {"config": b"", "agents/willow.agent": WILLOW.encode(), "agents/x.agent": text.encode()}
    )
    _check(validate(repo, environ={})[1])


# --- manifests ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)
kinds = st.sampled_from(
    [
        ("v1", "Namespace"),
        ("apps/v1", "Deployment"),
        ("helm.cattle.io/v1", "HelmChart"),
        ("helm.cattle.io/v1", "HelmChartConfig"),
        ("metallb.io/v1beta1", "IPAddressPool"),
        ("metallb.io/v1beta1", "L2Advertisement"),
        ("example.com/v1", "Thing"),
        ("apps/v1", "Deploymnet"),
        ("v1", "../../etc/passwd"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ]
)
documents = st.builds(
    lambda kind, metadata, spec, extra: {
        "apiVersion": kind[0],
        "kind": kind[1],
        "metadata": metadata,
        "spec": spec,
        **extra,
    },
    kinds,
    st.one_of(json_like, st.fixed_dictionaries({"name": st.text(max_size=8)})),
    st.one_of(
        json_like,
        st.fixed_dictionaries({"addresses": st.lists(st.one_of(values, json_like), max_size=3)}),
    ),
    st.dictionaries(st.text(max_size=6), json_like, max_size=2),
)


def _check_manifest(data: bytes, name: str) -> None:
    repo = _repo({"config": b"", f"{MANIFESTS}/{name}": data})
    diagnostics = manifests.check(repo)
    _check(diagnostics)
    assert {d.path for d in diagnostics} <= {f"{MANIFESTS}/{name}"}


@SETTINGS
@given(st.lists(documents, min_size=1, max_size=3))
def test_manifests_take_any_document_shape(docs):
    _check_manifest(yaml.safe_dump_all(docs).encode(), "m.yaml")


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["m.yaml", "m.yml", "m.json"]))
def test_manifests_take_any_bytes(data, name):
    _check_manifest(data, name)


@SETTINGS
@given(st.lists(st.sampled_from(list("{}[]:-,'\"&*!|> \n\t#abc1") + ["---\n", "? "]), max_size=80))
def test_manifests_and_syntax_take_any_yaml_ish_text(chars):
    text = "".join(chars).encode()
    _check_manifest(text, "m.yaml")
    path = _repo({"x.yaml": text}) / "x.yaml"
    _check(syntax.check(path, "x.yaml"))


# --- the CLI --------------------------------------------------------------------------------


def scooby(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scooby", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_exit_0_on_a_clean_repo(repo):
    run = scooby("validate", "--repo", str(repo))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.splitlines()[0].startswith("master   buffy")
    assert "  willow           192.168.64.65   b8:27:eb:81:1a:52  pxe c6811a52" in run.stdout


def test_cli_exit_1_with_every_problem_and_no_traceback(tmp_path):
    repo = write_repo(
        tmp_path / "r",
        {
            "config": "LC_EXTERNAL_IP=1.2.3\n\x00",
            "agents/willow.agent": "\xff",
            f"{MANIFESTS}/x.yaml": "kind: [",
        },
    )
    (repo / "agents/willow.agent").write_bytes(b"AGENT_IP=\xff\n")
    run = scooby("validate", "--repo", str(repo))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        "agents/willow.agent:1: error: not valid UTF-8 text",
        "config:2: error: contains a NUL byte: not a text file",
        f"{MANIFESTS}/x.yaml:2: error: YAML syntax error: did not find expected node content",
        "3 error(s), 0 warning(s)",
    ]


def test_cli_exit_2_on_usage_errors(tmp_path):
    for args in (
        ["validate", "--repo", str(tmp_path / "missing")],
        ["validate", "--no-such-option"],
        ["validate", "--explain", "NOPE"],
        ["no-such-command"],
    ):
        run = scooby(*args)
        assert run.returncode == 2, args
        assert "Traceback" not in run.stderr


def test_cli_defaults_to_the_current_directory(repo):
    assert scooby("validate", cwd=repo).returncode == 0
    (repo / "agents/willow.agent").write_text(WILLOW.replace("c6811a52", "10000000c6811a52"))
    run = scooby("validate", cwd=repo)
    assert run.returncode == 1
    assert "use its last 8 digits, 'c6811a52'" in run.stderr
