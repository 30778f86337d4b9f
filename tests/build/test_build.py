"""`scooby build` fails fast, before any slow stage, on bad input or missing K3S files."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import WILLOW, write_repo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the build needs root")


def build(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["scooby", "build", "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_invalid_repo_fails_before_any_stage(tmp_path: Path):
    repo = write_repo(
        tmp_path / "repo",
        {"config": "", "agents/willow.agent": WILLOW.replace("192.168.64.65", "10.0.0.300")},
    )
    done = build(repo, "--k3s=none")
    assert done.returncode == 1
    assert "agents/willow.agent:2: error: AGENT_IP" in done.stderr
    assert not (repo / ".cache" / "stages").exists() and not (repo / "images").exists()


def test_embed_without_k3s_files_fails_fast_naming_them(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {"config": "", "agents/willow.agent": WILLOW})
    start = time.monotonic()
    # No K3S site reachable: a closed port on loopback stands in for GitHub.
    done = build(repo, "--k3s=embed", SCOOBY_K3S_BASE_URL="http://127.0.0.1:9")
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - start < 60
    for text in ("k3s-arm64", "k3s-airgap-images-arm64.tar.zst", ".cache/downloads/k3s/"):
        assert text in done.stderr
    assert not (repo / ".cache" / "stages").exists() and not (repo / "images").exists()
