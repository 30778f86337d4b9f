"""The original README's examples, verbatim, laid out as a repository: they validate clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import ROOT

from scooby.validate.validator import validate

ORIGINAL = ROOT / "examples" / "original"


def test_the_originals_examples_validate_clean():
    cluster, diagnostics = validate(ORIGINAL, environ={})
    assert [str(d) for d in diagnostics] == []
    assert [a.name for a in cluster.agents] == ["ted", "willow"]
    assert cluster.agent("ted").k3s_args == ("--node-label", "smarter-device-manager=enabled")
    assert cluster.master.base.kind == "raspios"  # the original's config sets LC_IMAGE_HREF


def test_the_examples_are_all_there():
    files = sorted(p.relative_to(ORIGINAL).as_posix() for p in ORIGINAL.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "agents/ted.agent",
        "agents/willow.agent",
        "config",
        "server/etc/dnsmasq.d/10-external-dhcp.conf",
        "server/etc/udev/rules.d/10-modeswitch.rules",
        "server/var/lib/rancher/k3s/server/manifests/metallb.yml",
        "server/var/lib/rancher/k3s/server/manifests/pihole.yml",
    ]


def test_pihole_keeps_the_originals_literal_ellipsis():
    text = (ORIGINAL / "server/var/lib/rancher/k3s/server/manifests/pihole.yml").read_text()
    assert text.endswith("  valuesContent: |-\n    ...\n")


def test_ted_named_as_the_original_readme_names_it_is_reported(tmp_path):
    repo = tmp_path / "fork"
    shutil.copytree(ORIGINAL, repo)
    (repo / "agents/ted.agent").rename(repo / "agents/ted")
    run = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "agents/ted:1: error: AGENT_ETHERNET: this file holds agent settings but is not read: "
        "only *.agent files are; rename it to agents/ted.agent",
        "1 error(s), 0 warning(s)",
    ]
    assert "Traceback" not in run.stderr


def test_the_template_repository_itself_validates(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(ROOT)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("master   buffy  external eth0 192.168.1.64/24")
