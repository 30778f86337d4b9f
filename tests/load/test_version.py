"""scooby.util.git (describe) and scooby.load.digest on real temporary git repositories:
tagged, untagged, dirty, absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import WILLOW, git, write_repo

from scooby.load import digest
from scooby.util import git as version


@pytest.fixture
def gitrepo(tmp_path: Path) -> Path:
    repo = write_repo(
        tmp_path / "repo",
        {"config": "LC_HOSTNAME=scooby\n", "agents/willow.agent": WILLOW, ".env": "A=1\n"},
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "config", "agents")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_untagged_counts_commits_and_names_the_commit(gitrepo: Path) -> None:
    short = git(gitrepo, "rev-parse", "--short=7", "HEAD")
    assert version.describe(gitrepo) == f"0.0.0-1-g{short}"


def test_on_a_tag_the_version_is_the_tag(gitrepo: Path) -> None:
    git(gitrepo, "tag", "-a", "v1.2.3", "-m", "v1.2.3")
    assert version.describe(gitrepo) == "v1.2.3"


def test_lightweight_tags_count_too(gitrepo: Path) -> None:
    git(gitrepo, "tag", "v0.9.0")
    assert version.describe(gitrepo) == "v0.9.0"


def test_after_a_tag_describe_style(gitrepo: Path) -> None:
    git(gitrepo, "tag", "-a", "v1.2.3", "-m", "v1.2.3")
    (gitrepo / "config").write_text("LC_HOSTNAME=other\n")
    git(gitrepo, "commit", "-q", "-am", "two")
    short = git(gitrepo, "rev-parse", "--short=7", "HEAD")
    assert version.describe(gitrepo) == f"v1.2.3-1-g{short}"


def test_tags_that_are_not_versions_are_ignored(gitrepo: Path) -> None:
    git(gitrepo, "tag", "backup")
    assert re.fullmatch(r"0\.0\.0-1-g[0-9a-f]{7}", version.describe(gitrepo))


def test_dirty_tracked_file_marks_the_version(gitrepo: Path) -> None:
    git(gitrepo, "tag", "v1.0.0")
    (gitrepo / "config").write_text("LC_HOSTNAME=changed\n")
    assert version.describe(gitrepo) == "v1.0.0-dirty"


def test_dirty_without_tag(gitrepo: Path) -> None:
    (gitrepo / "config").write_text("LC_HOSTNAME=changed\n")
    assert re.fullmatch(r"0\.0\.0-1-g[0-9a-f]{7}-dirty", version.describe(gitrepo))


def test_no_git_repository_falls_back(tmp_path: Path) -> None:
    assert version.describe(tmp_path) == version.UNKNOWN
    assert version.describe(tmp_path / "missing") == version.UNKNOWN
    assert version.commit(tmp_path) == ""


def test_repository_without_commits_falls_back(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    assert version.describe(tmp_path) == version.UNKNOWN


def test_git_missing_from_path_falls_back(gitrepo: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(gitrepo / "no-such-bin"))
    assert version.describe(gitrepo) == version.UNKNOWN


def test_commit_is_the_full_hash(gitrepo: Path) -> None:
    assert version.commit(gitrepo) == git(gitrepo, "rev-parse", "HEAD")


def test_config_digest_ignores_env_and_is_stable(gitrepo: Path, tmp_path: Path) -> None:
    before = digest.config_digest(gitrepo)
    (gitrepo / ".env").write_text("LC_SSH_AUTH_KEY=secret\n")
    assert digest.config_digest(gitrepo) == before
    # The same inputs elsewhere (another machine, another path) hash the same.
    copy = write_repo(
        tmp_path / "elsewhere",
        {"config": "LC_HOSTNAME=scooby\n", "agents/willow.agent": WILLOW},
    )
    assert digest.config_digest(copy) == before
    assert re.fullmatch(r"[0-9a-f]{64}", before)


def test_config_digest_follows_each_input(gitrepo: Path) -> None:
    seen = {digest.config_digest(gitrepo)}
    (gitrepo / "agents/willow.agent").write_text(WILLOW.replace("65", "66"))
    seen.add(digest.config_digest(gitrepo))
    manifest = gitrepo / "server/var/lib/rancher/k3s/server/manifests/a.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("kind: x\n")
    seen.add(digest.config_digest(gitrepo))
    manifest.rename(manifest.with_name("b.yaml"))  # same content, another name
    seen.add(digest.config_digest(gitrepo))
    (gitrepo / "agents/README.md").write_text("docs are not inputs\n")
    assert digest.config_digest(gitrepo) in seen
    assert len(seen) == 4


def test_inputs_list_never_holds_env(gitrepo: Path) -> None:
    assert digest.inputs(gitrepo) == ["agents/willow.agent", "config"]
