"""The deploy plan: which changes go live and which need a reboot, from two real renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WILLOW, write_repo

from scooby.core import layout
from scooby.deploy.plan import describe, live_action, plan
from scooby.load import load_or_raise
from scooby.render import render
from scooby.render.record import record

XANDER = (
    WILLOW.replace("81:1a:52", "81:1a:53").replace(".65", ".66").replace("c6811a52", "c6811a53")
)


def state(tmp: Path, name: str, files: dict[str, str]) -> dict:
    repo = write_repo(tmp / name, files)
    cluster = load_or_raise(repo, environ={})
    return record(cluster, render(cluster, tmp / f"{name}-out").out)


@pytest.fixture
def v1(tmp_path: Path) -> dict:
    return state(tmp_path, "v1", {"config": "", "agents/willow.agent": WILLOW})


def test_the_same_repository_plans_nothing(tmp_path, v1):
    again = state(tmp_path, "again", {"config": "", "agents/willow.agent": WILLOW})
    p = plan(v1, again)
    assert p.empty
    assert describe(p, "buffy") == ["buffy is up to date: nothing to deploy"]


def test_a_new_agent_goes_live(tmp_path, v1):
    v2 = state(
        tmp_path, "v2", {"config": "", "agents/willow.agent": WILLOW, "agents/xander.agent": XANDER}
    )
    p = plan(v1, v2)
    assert p.agents_added == ["xander"] and not p.agents_removed and not p.reboot
    assert f"{layout.TFTP_ROOT}/c6811a53/cmdline.txt" in p.write
    assert f"{layout.HTTP_ROOT}/xander/user-data" in p.write
    assert any(w.startswith(f"{layout.AGENT_LAYERS}/xander/") for w in p.write)
    assert {"/etc/fstab", "/etc/exports.d/scooby.exports", "/etc/dnsmasq.d/scooby.conf"} <= set(
        p.write
    )
    assert p.actions[:3] == ["daemon-reload", "dnsmasq", "exportfs"]
    text = "\n".join(describe(p, "buffy"))
    assert "live, no reboot" in text and "agent + xander" in text


def test_a_removed_agent_takes_its_files_along(tmp_path, v1):
    v0 = state(tmp_path, "v0", {"config": ""})
    p = plan(v1, v0)
    assert p.agents_removed == ["willow"] and not p.reboot
    assert f"{layout.TFTP_ROOT}/c6811a52/cmdline.txt" in p.remove
    assert f"{layout.HTTP_ROOT}/willow/meta-data" in p.remove
    assert "agent - willow" in "\n".join(describe(p, "buffy"))


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hi\n"


def test_a_manifest_change_is_live_with_nothing_to_reload(tmp_path, v1):
    manifest = "server/var/lib/rancher/k3s/server/manifests/hello.yaml"
    v2 = state(
        tmp_path,
        "v2",
        {
            "config": "",
            "agents/willow.agent": WILLOW,
            manifest: NAMESPACE,
        },
    )
    p = plan(v1, v2)
    assert p.write == ["/var/lib/rancher/k3s/server/manifests/hello.yaml"]
    assert p.actions == [] and not p.reboot


def test_the_k3s_version_needs_a_reboot(tmp_path, v1):
    v2 = dict(v1, release=dict(v1["release"], k3s="v9.9.9+k3s1"))
    p = plan(v1, v2)
    assert p.reboot and p.reboot[0].startswith("release k3s: ")
    assert "REBOOT (A/B)" in describe(p, "buffy")[0]


def test_a_master_flashed_before_the_data_partition_needs_a_new_image(tmp_path, v1):
    """Its record has no `layout`: the new fstab would mount a partition it does not have,
    so nothing goes live (a deploy is refused until A/B exists) and the plan says why."""
    old = dict(v1, release={k: v for k, v in v1["release"].items() if k != "layout"})
    p = plan(old, v1)
    assert p.reboot == [f"release layout: - -> {layout.IMAGE_LAYOUT}"]
    assert "REBOOT (A/B)" in describe(p, "buffy")[0]


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/etc/dnsmasq.d/scooby.conf", "dnsmasq"),
        ("/etc/fstab", "daemon-reload"),
        ("/etc/systemd/system/scooby-k3s-token.service", "daemon-reload"),
        (f"{layout.TFTP_ROOT}/c6811a52/config.txt", ""),
        ("/boot/firmware/cmdline.txt", None),
        ("/etc/systemd/system/k3s.service", None),
        ("/etc/fstab.d/x", None),
        ("/etc/ssh/sshd_config.d/scooby.conf", None),
    ],
)
def test_live_or_reboot(path, action):
    assert live_action(path) == action
