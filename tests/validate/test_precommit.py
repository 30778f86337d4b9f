"""pre-commit: a fork's commit with a broken agent is refused with `scooby validate`'s words,
and another repository can reuse the hooks (`pre-commit try-repo`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, WILLOW, write_repo

BROKEN = WILLOW.replace("192.168.64.65", "192.168.64.300")
EXPECTED = "agents/willow.agent:2: error: AGENT_IP: '192.168.64.300' is not an IPv4 address"


def git(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A private pre-commit cache and a git identity; no user or system git config."""
    return {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Willow",
        "GIT_AUTHOR_EMAIL": "willow@sunnydale.invalid",
        "GIT_COMMITTER_NAME": "Willow",
        "GIT_COMMITTER_EMAIL": "willow@sunnydale.invalid",
    }


def fork(tmp_path: Path, env: dict[str, str], agent: str) -> Path:
    repo = write_repo(tmp_path / "fork", {"config": "", "agents/willow.agent": agent})
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    assert git(repo, "init", "-q", "-b", "main", env=env).returncode == 0
    return repo


def test_a_commit_with_a_broken_agent_is_refused_with_validates_message(tmp_path, env):
    repo = fork(tmp_path, env, BROKEN)
    validate = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
    )
    assert validate.returncode == 1
    assert validate.stderr.splitlines()[0] == EXPECTED

    install = subprocess.run(
        ["pre-commit", "install"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    git(repo, "add", ".", env=env)
    commit = git(repo, "commit", "-m", "add willow", env=env)
    assert commit.returncode == 1
    output = commit.stdout + commit.stderr
    assert "scooby validate (config, .env, agents/, server/)" in output
    for line in validate.stderr.splitlines():
        assert line in output
    assert git(repo, "rev-parse", "--verify", "HEAD", env=env).returncode != 0, "nothing landed"

    (repo / "agents/willow.agent").write_text(WILLOW)
    git(repo, "add", ".", env=env)
    fixed = git(repo, "commit", "-m", "add willow", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_another_repository_reuses_the_hooks_with_try_repo(tmp_path, env):
    """pre-commit builds a virtualenv from a clone of this repository and installs Scooby
    with its dependencies from the package index pip is configured with (PyPI)."""
    scooby = tmp_path / "scooby"
    # a clone holds what is committed: the hook definition users would get
    assert git(tmp_path, "clone", "-q", str(ROOT), str(scooby), env=env).returncode == 0
    repo = fork(tmp_path, env, BROKEN)
    git(repo, "add", ".", env=env)
    run = subprocess.run(
        ["pre-commit", "try-repo", str(scooby), "scooby-validate", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert EXPECTED in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


# --- the hook entries themselves ------------------------------------------------------------


def hook(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)


def test_syntax_hook_reports_yaml_and_json_errors_with_their_line(tmp_path):
    write_repo(
        tmp_path,
        {
            "ok.yaml": "a: !Ref b\n---\nc: [1, 2]\n",  # custom tags and documents are fine
            "ok.json": '{"a": [1]}',
            "bad.yaml": "a: 1\nb: [\n",
            # a missing value: every Python places it on line 3 (a trailing comma moved from
            # line 3 to line 2 in Python 3.13, whose message names the comma itself)
            "bad.json": '{\n  "a": 1,\n  "b": ]\n}\n',
        },
    )
    run = hook("scooby.validate.syntax", "ok.yaml", "ok.json", "bad.yaml", "bad.json", cwd=tmp_path)
    assert run.returncode == 1
    yaml_error, json_error = run.stderr.splitlines()
    assert yaml_error == "bad.yaml:3: error: YAML syntax error: did not find expected node content"
    assert json_error.startswith("bad.json:3: error: not valid JSON: ")  # wording: Python's
    assert hook("scooby.validate.syntax", "ok.yaml", "ok.json", cwd=tmp_path).returncode == 0


def test_manifests_hook_checks_pools_against_the_repos_config(tmp_path):
    pool = (
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\n"
        "spec:\n  addresses: [10.0.0.100-10.0.0.120]\n"
    )
    manifests = "server/var/lib/rancher/k3s/server/manifests"
    write_repo(tmp_path, {"config": "", f"{manifests}/pool.yaml": pool})
    run = hook("scooby.validate.manifests", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith(f"{manifests}/pool.yaml:6: error: IPAddressPool/p: ")
    (tmp_path / "config").write_text(
        "LC_EXTERNAL_NET=10.0.0.0/24\nLC_EXTERNAL_IP=10.0.0.2\nLC_EXTERNAL_GW=10.0.0.1\n"
    )
    assert hook("scooby.validate.manifests", cwd=tmp_path).returncode == 0
