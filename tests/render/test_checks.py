"""The daemons' own checkers over rendered trees: the example and a 250-agent cluster pass,
and a file each daemon would reject is reported at its OUT-relative path and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLE, big_repo

from scooby.core.model import Cluster
from scooby.render import checks
from scooby.render import renderer as render
from scooby.render.systemd_check import unit_files
from scooby.validate import validator as validate


def cluster_of(repo: Path) -> Cluster:
    cluster, diagnostics = validate.validate(repo, environ={})
    assert cluster is not None, diagnostics
    return cluster


@pytest.fixture(scope="module")
def example_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render.render(cluster_of(EXAMPLE), tmp_path_factory.mktemp("ex") / "out").out


def test_the_example_passes_every_checker(example_out: Path) -> None:
    assert checks.problems(example_out) == []


def test_250_agents_pass_every_checker(tmp_path: Path) -> None:
    cluster = cluster_of(big_repo(tmp_path / "repo", 250))
    assert len(cluster.agents) == 250
    out = render.render(cluster, tmp_path / "out").out
    assert checks.problems(out) == []
    exports = (out / "master/etc/exports.d/scooby.exports").read_text()
    assert exports.count("fsid=") == 250


def test_checks_find_files_that_would_be_checked(example_out: Path) -> None:
    """Each checker has something to check in the example (or it would pass vacuously)."""
    master = example_out / "master"
    assert list((master / "etc/dnsmasq.d").glob("*.conf"))
    assert (master / "etc/lighttpd/lighttpd.conf").is_file()
    assert (master / "etc/iptables/rules.v4").is_file()
    assert [p for p in example_out.rglob("*") if p.is_file() and checks._is_cloud_config(p)]
    assert unit_files(master)
    assert list((master / "etc/ssh/sshd_config.d").glob("*.conf"))
    assert list((master / "etc/exports.d").glob("*.exports"))


# (file, text appended or (old, new) replaced, the tool named, the line reported or None)
BREAKAGES = {
    "dnsmasq": ("master/etc/dnsmasq.d/scooby.conf", "dhcp-hostt=aa:bb\n", "dnsmasq --test", -1),
    "lighttpd": (
        "master/etc/lighttpd/lighttpd.conf",
        '$HTTP["url"] =~ "^/x" {\n  url.access-deny = (\n}\n',
        "lighttpd -tt",
        -1,
    ),
    "iptables-legacy": (
        "master/etc/iptables/rules.v4",
        ("-j MASQUERADE", "-j MASQUERAD"),  # the nft backend accepts this one
        "xtables-legacy-multi iptables-restore --test",
        "MASQUERAD",
    ),
    "iptables-both": (
        "master/etc/iptables/rules.v4",
        ("--dport 22 ", "--dprt 22 "),
        "iptables-nft-restore --test",
        "--dprt",
    ),
    "cloud-init": ("boot/user-data", "runcmd: 5\n", "cloud-init schema", "runcmd"),
    # cloud.cfg.d is base configuration: its base-only keys (datasource_list, network) pass
    # on every cloud-init, and what is left is checked as strictly as user data
    "cloud-init-base": (
        "master/etc/cloud/cloud.cfg.d/90_scooby.cfg",
        "runcmd: 5\n",
        "cloud-init schema",
        "runcmd",
    ),
    "systemd": (
        "master/etc/systemd/system/scooby-firstboot.service",
        "FooBar=1\n",
        "systemd-analyze verify",
        -1,
    ),
    "exportfs": (
        "master/etc/exports.d/scooby.exports",
        "/mnt/x 192.168.64.9(rw,no_subtree_check,bogus_opt)\n",
        "exportfs",
        -1,
    ),
    "sshd": (
        "master/etc/ssh/sshd_config.d/scooby.conf",
        "PermitRootLogin maybe\n",
        "sshd -t",
        -1,
    ),
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_a_rejected_file_is_reported_at_its_path_and_line(
    example_out: Path, tmp_path: Path, what: str
) -> None:
    rel, change, tool, where = BREAKAGES[what]
    out = tmp_path / "out"
    shutil.copytree(example_out, out, symlinks=True)
    path = out / rel
    text = path.read_text()
    if isinstance(change, tuple):
        assert change[0] in text
        text = text.replace(change[0], change[1], 1)
    else:
        text += change
    path.write_text(text)
    lines = text.splitlines()
    line = len(lines) if where == -1 else next(i + 1 for i, s in enumerate(lines) if where in s)
    found = [str(d) for d in checks.problems(out)]
    assert any(f.startswith(f"{rel}:{line}: error: {tool}") for f in found), found
    with pytest.raises(checks.ScoobyError):
        checks.check(out)


def test_identical_agent_units_are_reported_for_every_agent(
    example_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(example_out, out, symlinks=True)
    units = [
        u
        for agent in sorted((out / "agents").iterdir())
        for u in unit_files(agent)
        if u.name.endswith(".service")
    ]
    if not units:
        pytest.fail("the agents' layers carry no systemd service to check")
    name = units[0].relative_to(out / "agents" / units[0].relative_to(out / "agents").parts[0])
    for agent in (out / "agents").iterdir():
        with (agent / name).open("a") as f:
            f.write("FooBar=1\n")
    found = [d.path for d in checks.problems(out)]
    for agent in (out / "agents").iterdir():
        assert f"agents/{agent.name}/{name.as_posix()}" in found


def test_rebase_moves_only_whole_on_master_paths(tmp_path: Path) -> None:
    text = (
        "tftp-root=/srv/tftp\n"
        "/srv/tftp/x /srv/tftpx\n"
        "lowerdir=/var/lib/a:/var/lib/ab,x\n"
        'doc = "/srv/tftp"\n'
    )
    got = checks.rebase(text, tmp_path, ["/srv/tftp", "/var/lib/a"])
    assert got == (
        f"tftp-root={tmp_path}/srv/tftp\n"
        f"{tmp_path}/srv/tftp/x /srv/tftpx\n"
        f"lowerdir={tmp_path}/var/lib/a:/var/lib/ab,x\n"
        f'doc = "{tmp_path}/srv/tftp"\n'
    )


def test_a_missing_checker_is_an_error_not_a_pass(
    example_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        checks.shutil, "which", lambda tool: None if tool == "dnsmasq" else real_which(tool)
    )
    found = [str(d) for d in checks._dnsmasq(example_out, Path("/nonexistent"))]
    assert found and "`dnsmasq` is not installed" in found[0]


def test_without_root_exportfs_is_a_warning_not_a_failure(
    example_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks.os, "geteuid", lambda: 1000)
    (found,) = checks._exportfs(example_out, Path("/nonexistent"))
    assert found.severity == "warning" and "needs root" in found.message


def test_a_master_without_agents_passes_every_checker(tmp_path: Path) -> None:
    """The template repository itself has no agents yet: `nox -s render` must pass on it."""
    cluster = cluster_of(big_repo(tmp_path / "repo", 0))
    out = render.render(cluster, tmp_path / "out").out
    assert checks.problems(out) == []
    assert "overlay" not in (out / "master/etc/fstab").read_text()


def test_another_network_shape_passes_every_checker(tmp_path: Path) -> None:
    """No internal domain, an external one, two DNS servers, other device names (two USB
    adapters: net.ifnames=0 makes every name ethN), a /16."""
    repo = big_repo(tmp_path / "repo", 3)
    (repo / "config").write_text(
        "LC_HOSTNAME=sunnydale-high\n"
        "LC_PRIMARY_DNS=9.9.9.9\n"
        "LC_SECONDARY_DNS=1.0.0.1\n"
        "LC_EXTERNAL_DEVICE=eth2\n"
        "LC_EXTERNAL_IP=10.20.0.5\n"
        "LC_EXTERNAL_NET=10.20.0.0/24\n"
        "LC_EXTERNAL_GW=10.20.0.1\n"
        "LC_EXTERNAL_DOMAIN=example.org\n"
        "LC_INTERNAL_DEVICE=eth3\n"
        "LC_INTERNAL_IP=192.168.0.1\n"
        "LC_INTERNAL_NET=192.168.0.0/16\n"
        "LC_INTERNAL_DOMAIN=\n"
    )
    for agent in (repo / "agents").iterdir():
        agent.write_text(agent.read_text().replace("192.168.64.", "192.168.7."))
    out = render.render(cluster_of(repo), tmp_path / "out").out
    assert checks.problems(out) == []
    master = out / "master/etc"
    assert "192.168.7.2\tnode000" in (master / "hosts").read_text().splitlines()
    assert (
        "dhcp-range=set:scooby,192.168.0.0,static,255.255.0.0,infinite"
        in (master / "dnsmasq.d/scooby.conf").read_text()
    )
    assert "search example.org" in (master / "resolv.conf").read_text()
    assert "-A POSTROUTING -o eth2 -j MASQUERADE" in (master / "iptables/rules.v4").read_text()
