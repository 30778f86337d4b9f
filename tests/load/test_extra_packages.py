"""LC_EXTRA_PACKAGES: Debian packages for the master's base. Checked by name (Debian
Policy's syntax), installed into the master-base stage only, part of its cache key and of
the deploy record's `release` (a change is a new image, not a live change)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import WILLOW, write_repo

from scooby.build import cache, rootfs
from scooby.deploy.plan import describe, plan
from scooby.load import load_or_raise, schema
from scooby.render import render
from scooby.render.record import record, release

CONFIG = '# the master needs a few tools\nLC_EXTRA_PACKAGES="tree Htop g++ x"\n'


def test_a_bad_name_is_one_line_naming_it():
    (d,) = schema.check(
        "config", {"LC_EXTRA_PACKAGES": "tree Htop g++"}, "config", {"LC_EXTRA_PACKAGES": 2}
    )
    assert str(d) == (
        "config:2: error: LC_EXTRA_PACKAGES: 'tree Htop g++' is not a list of Debian package "
        "names separated by spaces (each: lower-case letters, digits, '+', '-' and '.', at "
        "least two characters, the first a letter or digit): 'Htop' is not a Debian package "
        "name"
    )
    (two,) = schema.check("config", {"LC_EXTRA_PACKAGES": "Htop x"}, "config", {})
    assert str(two).endswith(": 'Htop', 'x' are not Debian package names")


def test_validate_refuses_a_bad_name_with_its_line_and_exit_1(tmp_path: Path):
    repo = write_repo(tmp_path / "repo", {"config": CONFIG, "agents/willow.agent": WILLOW})
    run = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    first = run.stderr.splitlines()[0]
    assert first.startswith("config:2: error: LC_EXTRA_PACKAGES: 'tree Htop g++ x' is not ")
    assert first.endswith(": 'Htop', 'x' are not Debian package names")
    assert "Traceback" not in run.stderr


def _cluster(tmp_path: Path, name: str, packages: str | None):
    config = "" if packages is None else f'LC_EXTRA_PACKAGES="{packages}"\n'
    repo = write_repo(tmp_path / name, {"config": config, "agents/willow.agent": WILLOW})
    return load_or_raise(repo, environ={})


def test_the_base_holds_them_sorted_and_once(tmp_path: Path):
    cluster = _cluster(tmp_path, "r", " tree htop  tree ")
    assert cluster.master.base.extra_packages == ("htop", "tree")
    assert _cluster(tmp_path, "none", None).master.base.extra_packages == ()
    assert _cluster(tmp_path, "empty", "").master.base.extra_packages == ()


def test_they_are_part_of_the_master_base_key_only_when_set():
    state = {"http://x/dists/trixie/InRelease": {"main/binary-arm64/Packages.xz": "a"}}
    plain = rootfs.master_inputs("agentkey", state)
    # Without extra packages the inputs are those before the setting: cached bases match.
    before = {"agent-base": "agentkey", "archive": state, "packages": rootfs.packages("master")}
    assert plain == before
    assert rootfs.master_inputs("agentkey", state, ()) == plain
    tree = rootfs.master_inputs("agentkey", state, ("tree",))
    both = rootfs.master_inputs("agentkey", state, ("htop", "tree"))
    keys = {cache.key("master-base", i) for i in (plain, tree, both)}
    assert len(keys) == 3
    # The agent base's inputs know nothing of them: its key, and so its cache, stay.
    agent = rootfs.agent_inputs("trixie", ["deb http://x trixie main"])
    assert "extra-packages" not in agent and agent["packages"] == rootfs.packages("agent")


def test_the_master_base_installs_them_with_its_own_packages():
    assert rootfs.master_packages() == rootfs.packages("master")
    assert rootfs.master_packages(("htop", "tree")) == [*rootfs.packages("master"), "htop", "tree"]


def test_the_record_release_names_them_and_deploy_plans_a_new_image(tmp_path: Path):
    none, tree = _cluster(tmp_path, "v1", None), _cluster(tmp_path, "v2", "tree")
    assert "packages" not in release(none)  # as in every record before the setting
    assert release(tree)["packages"] == "tree"
    assert release(_cluster(tmp_path, "v3", "tree htop"))["packages"] == "htop tree"
    v1 = record(none, render(none, tmp_path / "v1-out").out)
    v2 = record(tree, render(tree, tmp_path / "v2-out").out)
    p = plan(v1, v2)
    assert p.reboot == ["release packages: - -> tree"] and not p.write
    assert describe(p, "buffy")[0] == "deploy to buffy: REBOOT (A/B)"
    assert plan(v2, v1).reboot == ["release packages: tree -> -"]


def test_validate_summary_names_them(tmp_path: Path):
    config = 'LC_EXTRA_PACKAGES="tree htop"\n'
    repo = write_repo(tmp_path / "repo", {"config": config, "agents/willow.agent": WILLOW})
    run = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "  extra packages htop tree" in run.stdout.splitlines()[1]
