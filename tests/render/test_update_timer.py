"""LC_UPDATE_URL: the master's scooby-update.timer, shipped in every image and started only
when the setting names a release (docs/day2.md, 4.6). The units are judged by systemd-analyze
verify, as the master's other units are (test_render_nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WILLOW, write_repo
from test_render_nodes import _verify

from scooby.core import layout
from scooby.load import schema
from scooby.load.reader import load_or_raise
from scooby.render.renderer import render

URL = "https://releases.example.org/scooby/latest/download/scooby-deploy.tar.gz"
UNITS = ["scooby-update.timer", "scooby-update.service", "scooby-update-pending.service"]
UNITS += ["timers.target", "multi-user.target"]


def rendered(tmp: Path, config: str) -> Path:
    repo = write_repo(tmp / "repo", {"config": config, "agents/willow.agent": WILLOW})
    return render(load_or_raise(repo, environ={}), tmp / "out").out / "master"


def units(master: Path) -> Path:
    return master / "etc/systemd/system"


def test_off_by_default(tmp_path):
    master = rendered(tmp_path, "")
    assert (units(master) / "scooby-update.timer").is_file()  # shipped
    assert "Wants=" not in (units(master) / "timers.target.d/scooby-update.conf").read_text()
    service = (units(master) / "scooby-update.service").read_text()
    assert layout.SCOOBY_UPDATE not in service and "LC_UPDATE_URL is empty" in service
    _verify(tmp_path, master, UNITS)


def test_a_url_starts_the_timer_and_pulls_it(tmp_path):
    master = rendered(tmp_path, f"LC_UPDATE_URL={URL}\n")
    assert (
        "Wants=scooby-update.timer\n"
        in (units(master) / "timers.target.d/scooby-update.conf").read_text()
    )
    service = (units(master) / "scooby-update.service").read_text()
    assert f"\nExecStart={layout.SCOOBY_UPDATE} {URL}\n" in service
    assert f"ConditionPathExists=!{layout.SLOT_TRIAL_MARK}\n" in service  # not on a trial
    pending = (units(master) / "scooby-update-pending.service").read_text()
    assert f"ExecStart={layout.SCOOBY_UPDATE} --pending\n" in pending
    assert "After=multi-user.target scooby-ready.service scooby-health.service\n" in pending
    _verify(tmp_path, master, UNITS)


def test_a_percent_in_the_url_is_escaped_for_systemd(tmp_path):
    master = rendered(tmp_path, "LC_UPDATE_URL=https://h/a%20b/scooby-deploy.tar.gz\n")
    service = (units(master) / "scooby-update.service").read_text()
    assert "https://h/a%%20b/scooby-deploy.tar.gz\n" in service


@pytest.mark.parametrize(
    "url", ["http://h/scooby-deploy.tar.gz", "file:///x", "https://h/a b", "https://h/$(id)"]
)
def test_only_an_https_url_a_unit_can_hold(url):
    (problem,) = schema.check("config", {"LC_UPDATE_URL": url}, "config", {})
    assert problem.key == "LC_UPDATE_URL" and problem.severity == "error"
    assert schema.check("config", {"LC_UPDATE_URL": URL}, "config", {}) == []
    assert schema.check("config", {"LC_UPDATE_URL": ""}, "config", {}) == []
