"""`scooby render` on the original's example cluster: golden files, determinism, coverage,
secrets, the contents the network depends on, and server/ overrides.

The goldens under tests/golden/example/ are the whole render of tests/data/example-repo;
after changing a template, review the diff of `pytest tests/test_render.py --update-golden`.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import EXAMPLE, GOLDEN

from scooby import cli
from scooby.core import layout
from scooby.core.errors import ScoobyError
from scooby.core.model import Cluster
from scooby.core.paths import TEMPLATES_DIR
from scooby.render import outdir
from scooby.render import renderer as render
from scooby.validate import validator as validate


def example(repo: Path = EXAMPLE) -> Cluster:
    cluster, diagnostics = validate.validate(repo, environ={})  # .env only, not this shell's
    assert cluster is not None, diagnostics
    return cluster


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under root: its bytes and whether it is executable."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render.render(example(), tmp_path_factory.mktemp("render") / "out").out


def test_golden(out: Path, update_golden: bool) -> None:
    if update_golden:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(out, GOLDEN)
    got, want = tree(out), tree(GOLDEN)
    assert sorted(got) == sorted(want), "files added or missing: --update-golden, then review"
    for rel in got:
        assert got[rel] == want[rel], f"{rel} differs from tests/golden/example/{rel}"


def test_two_renders_are_byte_identical(out: Path, tmp_path: Path) -> None:
    again = render.render(example(), tmp_path / "again").out
    assert tree(again) == tree(out)


def test_every_template_is_rendered(out: Path) -> None:
    cluster = example()
    outputs = set(tree(out))
    for template in sorted(TEMPLATES_DIR.rglob("*")):
        rel = template.relative_to(TEMPLATES_DIR).as_posix()
        section = rel.split("/")[0]
        if (
            template.is_dir()
            or template.name == ".gitkeep"
            or section not in ("boot", "master", "agent")
        ):
            continue
        name = rel.split("/", 1)[1].removesuffix(".j2")
        if section == "agent":
            wanted = {f"agents/{a.name}/{name}" for a in cluster.agents}
        elif "{{" in name:
            env = render.environment(TEMPLATES_DIR)
            ctx = render.context(cluster)
            wanted = {
                f"{section}/" + env.from_string(name).render({**ctx, "agent": a})
                for a in cluster.agents
            }
        else:
            wanted = {f"{section}/{name}"}
        assert wanted <= outputs, f"templates/{rel} rendered nothing at {sorted(wanted - outputs)}"


def test_rendered_files_keep_the_templates_executable_bit(out: Path) -> None:
    for template in TEMPLATES_DIR.glob("master/**/*.j2"):
        if "{{" in template.as_posix():
            continue
        rel = template.relative_to(TEMPLATES_DIR / "master").as_posix().removesuffix(".j2")
        executable = bool(template.stat().st_mode & 0o111)
        assert bool((out / "master" / rel).stat().st_mode & 0o111) == executable, rel


# -- nothing secret where TFTP or HTTP serve it ---------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password hash": re.compile(rb"\$(1|2[aby]|5|6|y|gy|7)\$[./A-Za-z0-9$=,]{8,}"),
    "K3S token": re.compile(rb"K10[0-9a-f]{20,}|\btoken\s*[:=]\s*\S{8,}", re.IGNORECASE),
    "node-token path contents": re.compile(rb"server:[0-9a-f]{16,}"),
}


def served(out: Path) -> list[Path]:
    """What TFTP (TFTP_ROOT) and lighttpd (HTTP_ROOT) hand to anyone on the internal net."""
    roots = [
        out / "master" / layout.TFTP_ROOT.lstrip("/"),
        out / "master" / layout.HTTP_ROOT.lstrip("/"),
    ]
    return [p for r in roots for p in sorted(r.rglob("*")) if p.is_file()]


def test_served_files_exist_for_every_agent(out: Path) -> None:
    cluster = example()
    rels = {p.relative_to(out / "master").as_posix() for p in served(out)}
    for agent in cluster.agents:
        assert f"{layout.TFTP_ROOT.lstrip('/')}/{agent.pxe_id}/cmdline.txt" in rels
        assert f"{layout.HTTP_ROOT.lstrip('/')}/{agent.name}/user-data" in rels


def test_no_secret_in_a_served_file(out: Path) -> None:
    cluster = example()
    values = [cluster.secrets.github_token.encode()]
    assert values[0], "the example's .env must carry a token for this test to mean anything"
    files = served(out)
    assert files
    for path in files:
        data = path.read_bytes()
        rel = path.relative_to(out)
        for value in values:
            assert value not in data, f"{rel} carries a secret from .env"
        for what, pattern in SECRET_PATTERNS.items():
            assert not pattern.search(data), f"{rel} looks like it holds a {what}"


def test_the_secret_patterns_do_find_secrets() -> None:
    samples = {
        "private key": b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "password hash": b"spike:$6$rounds=4096$abcdefgh$0123456789abcdef",
        "K3S token": b"token: K10" + b"ab" * 20 + b"::server:" + b"cd" * 16,
    }
    for what, sample in samples.items():
        assert SECRET_PATTERNS[what].search(sample), what


# -- what the network services depend on ----------------------------------------------------


def _lines(out: Path, rel: str) -> list[str]:
    return (out / rel).read_text().splitlines()


def test_dnsmasq_has_static_leases_only_and_the_pi_boot_service(out: Path) -> None:
    cluster = example()
    conf = _lines(out, "master/etc/dnsmasq.d/scooby.conf")
    assert f"interface={cluster.master.internal.device}" in conf
    ranges = [line for line in conf if line.startswith("dhcp-range=")]
    assert ranges == ["dhcp-range=set:scooby,192.168.64.0,static,255.255.255.0,infinite"]
    hosts = [line for line in conf if line.startswith("dhcp-host=")]
    assert len(hosts) == len(cluster.agents)
    for agent in cluster.agents:
        assert f"dhcp-host={agent.mac},set:scooby-agent,{agent.ip},{agent.name},infinite" in hosts
    assert 'pxe-service=tag:scooby,0,"Raspberry Pi Boot   "' in conf
    assert f"tftp-root={layout.TFTP_ROOT}" in conf
    assert 'dhcp-option=tag:scooby,option:tftp-server,"192.168.64.1"' in conf


def test_gateway_only_on_the_external_device(out: Path) -> None:
    external = _lines(out, "master/etc/systemd/network/10-scooby-external.network")
    internal = _lines(out, "master/etc/systemd/network/20-scooby-internal.network")
    assert "Gateway=192.168.1.1" in external and "Name=eth0" in external
    assert not [line for line in internal if line.startswith("Gateway")]
    assert "Address=192.168.64.1/24" in internal and "Name=eth1" in internal


def test_resolv_conf_and_networkd_enabled(out: Path) -> None:
    assert _lines(out, "master/etc/resolv.conf")[-2:] == ["nameserver 1.0.0.1", "search sunnydale"]
    wants = _lines(out, "master/etc/systemd/system/multi-user.target.d/scooby-network.conf")
    assert "Wants=systemd-networkd.service" in wants


def test_hosts_names_every_node(out: Path) -> None:
    hosts = _lines(out, "master/etc/hosts")
    assert "192.168.64.1\tbuffy.sunnydale buffy" in hosts
    for agent in example().agents:
        assert f"{agent.ip}\t{agent.name}.sunnydale {agent.name}" in hosts


def test_one_export_per_agent_with_a_stable_unique_fsid(out: Path) -> None:
    cluster = example()
    exports = [
        line for line in _lines(out, "master/etc/exports.d/scooby.exports") if line[:1] == "/"
    ]
    assert len(exports) == len(cluster.agents)
    fsids = set()
    for agent, line in zip(cluster.agents, exports, strict=True):
        path, client = line.split()
        assert path == f"{layout.AGENT_MOUNTS}/{agent.name}"
        options = set(client.removeprefix(f"{agent.ip}(").removesuffix(")").split(","))
        assert {"rw", "sync", "no_subtree_check", "no_root_squash"} <= options
        (fsid,) = [o for o in options if o.startswith("fsid=")]
        fsids.add(fsid)
        assert fsid == f"fsid={render.nfs_fsid(agent.name)}"
    assert len(fsids) == len(cluster.agents)
    # Stable: the fsid depends on nothing but the name.
    assert render.nfs_fsid("willow") == "592535bd-c69a-57b4-be2b-388585e4053b"


def test_fstab_mounts_root_boot_base_and_one_overlay_per_agent(out: Path) -> None:
    cluster = example()
    rows = [line.split() for line in _lines(out, "master/etc/fstab") if line and line[0] != "#"]
    by_mount = {row[1]: row for row in rows}
    assert by_mount["/"][0] == f"PARTUUID={layout.partuuid('buffy', layout.ROOT_PARTITION)}"
    assert by_mount["/boot/firmware"][:3] == [
        f"PARTUUID={layout.partuuid('buffy', layout.BOOT_PARTITION)}",
        "/boot/firmware",
        "vfat",
    ]
    # The state: the data partition (p4), and each state folder bound from it.
    assert by_mount[layout.DATA_MOUNT][:3] == [
        f"PARTUUID={layout.partuuid('buffy', layout.DATA_PARTITION)}",
        layout.DATA_MOUNT,
        "ext4",
    ]
    for on_master, name in layout.DATA_BINDS:
        row = by_mount[on_master]
        assert row[0] == f"{layout.DATA_MOUNT}/{name}" and row[2] == "none"
        assert {"bind", f"x-systemd.requires-mounts-for={layout.DATA_MOUNT}"} <= set(
            row[3].split(",")
        )
    assert by_mount[layout.AGENT_BASE][:3] == [
        layout.AGENT_BASE_IMAGE,
        layout.AGENT_BASE,
        "squashfs",
    ]
    for agent in cluster.agents:
        row = by_mount[f"{layout.AGENT_MOUNTS}/{agent.name}"]
        options = row[3].split(",")
        assert (
            f"lowerdir={layout.AGENT_LAYERS}/{agent.name}:{layout.AGENT_SHARED}:{layout.AGENT_BASE}"
            in options
        )
        assert f"upperdir={layout.AGENT_UPPERS}/{agent.name}" in options
        assert f"workdir={layout.AGENT_WORKDIRS}/{agent.name}" in options
        assert {"index=on", "nfs_export=on", f"x-systemd.requires={layout.AGENT_BASE}"} <= set(
            options
        )
        # The upper, work and layer dirs are on the data partition's bind mount, which the
        # overlay's options alone do not make systemd wait for.
        assert f"x-systemd.requires-mounts-for={layout.AGENT_UPPERS}/{agent.name}" in options
    # What the agents boot comes with the root slot; what they and deploys write is state.
    for path in (layout.AGENT_BASE_IMAGE, layout.AGENT_BASE, layout.AGENT_SHARED):
        assert not any(path.startswith(on_master + "/") for on_master, _ in layout.DATA_BINDS)
    for path in (layout.AGENT_UPPERS, layout.AGENT_WORKDIRS, layout.AGENT_LAYERS):
        assert path.startswith("/var/lib/scooby/") and ("/var/lib/scooby", "scooby") in (
            layout.DATA_BINDS
        )


def test_lighttpd_serves_each_seed_to_its_agent_only(out: Path) -> None:
    conf = (out / "master/etc/lighttpd/lighttpd.conf").read_text()
    assert 'server.bind = "192.168.64.1"' in conf
    assert f"server.port = {layout.HTTP_PORT}" in conf
    assert f'server.document-root = "{layout.HTTP_ROOT}"' in conf
    assert 'url.access-deny = ( "" )' in conf
    for agent in example().agents:
        block = f'$HTTP["remote-ip"] == "{agent.ip}" {{\n  $HTTP["url"] =~ "^/{agent.name}/"'
        assert block in conf


def test_iptables_keeps_the_cluster_services_off_the_external_side(out: Path) -> None:
    rules = _lines(out, "master/etc/iptables/rules.v4")
    assert ":INPUT DROP [0:0]" in rules and ":FORWARD DROP [0:0]" in rules
    external_accepts = [r for r in rules if r.startswith("-A INPUT -i eth0") and "ACCEPT" in r]
    assert external_accepts == [
        "-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT",
        "-A INPUT -i eth0 -p tcp -m tcp --dport 6443 -j ACCEPT",
        # the example's server/etc/dnsmasq.d serves DHCP on the external network
        "-A INPUT -i eth0 -p udp -m udp --sport 68 --dport 67 -j ACCEPT",
    ]
    # No rule without an interface opens a port to everyone (besides replies and ICMP).
    for rule in rules:
        if rule.startswith("-A INPUT") and "ACCEPT" in rule:
            assert " -i " in rule or "ESTABLISHED" in rule or "-p icmp" in rule, rule
    assert "-A FORWARD -i eth1 -o eth0 -s 192.168.64.0/24 -j ACCEPT" in rules
    assert "-A POSTROUTING -o eth0 -j MASQUERADE" in rules
    assert "net.ipv4.ip_forward = 1" in _lines(out, "master/etc/sysctl.d/60-scooby.conf")
    rules6 = _lines(out, "master/etc/iptables/rules.v6")
    assert ":INPUT DROP [0:0]" in rules6 and ":FORWARD DROP [0:0]" in rules6


# -- server/ overrides and the command -------------------------------------------------------


def test_a_server_file_replacing_a_generated_one_is_reported(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "server/etc/hosts").write_text("127.0.0.1 localhost\n")
    result = render.render(example(repo), tmp_path / "out")
    (warning,) = result.diagnostics
    assert warning.severity == "warning" and warning.path == "server/etc/hosts"
    assert "/etc/hosts" in warning.message and "templates/master/etc/hosts" in warning.message
    assert (result.out / "master/etc/hosts").read_text() == "127.0.0.1 localhost\n"  # yours wins


def test_scooby_render_renders_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["render", "--repo", str(EXAMPLE), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "rendered" in printed and "checked" in printed
    assert (tmp_path / "out/master/etc/dnsmasq.d/scooby.conf").is_file()


def test_a_rendered_file_its_daemon_rejects_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "server/etc/dnsmasq.d/20-typo.conf").write_text("dhcp-rnage=1.2.3.4\n")
    assert cli.main(["render", "--repo", str(repo), "--out", str(tmp_path / "out")]) == 1
    assert "master/etc/dnsmasq.d/20-typo.conf:1: error: dnsmasq --test" in capsys.readouterr().err
    assert (
        cli.main(["render", "--repo", str(repo), "--out", str(tmp_path / "out"), "--no-check"]) == 0
    )


def test_fsids_never_collide_across_many_names() -> None:
    names = [f"agent{n}" for n in range(5000)]
    assert len({render.nfs_fsid(n) for n in names}) == len(names)


def test_the_fsid_check_reports_a_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for uuid5 that collides (no real pair of names is known to): the check holds.
    monkeypatch.setattr(render, "nfs_fsid", lambda name: "same")
    with pytest.raises(ScoobyError, match="fsid collides"):
        render.render(example(), Path("/nonexistent/never-written"))


def test_internal_addresses_are_in_the_internal_network() -> None:
    cluster = example()
    for agent in cluster.agents:
        assert agent.ip in cluster.master.internal.network
    assert ipaddress.IPv4Address("192.168.64.1") == cluster.master.internal.ip


@pytest.mark.parametrize("exchange", ["renameat2", "three renames"])
def test_rendering_again_reuses_only_its_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: str
) -> None:
    """Each render is complete and exact, whatever the workspace beside OUT held before."""
    if exchange == "three renames":  # file systems without RENAME_EXCHANGE
        monkeypatch.setattr(outdir, "exchange", lambda a, b: False)
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    target = tmp_path / "out"
    reference = tree(render.render(example(repo), tmp_path / "reference").out)
    render.render(example(repo), target)
    (target / "stale-file").write_text("from an older render\n")
    (target / "master/etc/hosts").unlink()
    (target / "master/etc/hosts").mkdir()  # a directory where a file belongs
    (target / "agents/willow/etc/hostname").chmod(0o600)
    for _ in range(3):  # the tampered tree becomes the workspace, then OUT again
        result = render.render(example(repo), target)
        assert tree(target) == reference
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".out.next",
            "out",
            "reference",
            "repo",
        ]
    assert oct((target / "agents/willow/etc/hostname").stat().st_mode & 0o777) == "0o644"
    assert list(result.files) == sorted(reference)

    # An agent removed, and a server/ file added and removed: nothing of either stays.
    (repo / "agents/giles.agent").unlink()
    (repo / "server/etc/hosts").write_text("127.0.0.1 localhost\n")
    for _ in range(2):
        result = render.render(example(repo), target)
        assert not (target / "agents/giles").exists()
        assert [d.path for d in result.diagnostics] == ["server/etc/hosts"]
    (repo / "server/etc/hosts").unlink()
    for _ in range(2):
        result = render.render(example(repo), target)
        assert result.diagnostics == ()
        assert (target / "master/etc/hosts").read_bytes() != b"127.0.0.1 localhost\n"


def test_the_join_token_lives_where_neither_tftp_nor_http_reach() -> None:
    """The token is made at first boot (not rendered): its places must be outside both roots."""
    served_roots = (layout.TFTP_ROOT, layout.HTTP_ROOT)
    for name in ("willow", "xander"):
        places = (
            layout.K3S_AGENT_TOKEN_MASTER,
            f"{layout.AGENT_LAYERS}/{name}{layout.K3S_AGENT_TOKEN}",
            f"{layout.AGENT_MOUNTS}/{name}{layout.K3S_AGENT_TOKEN}",
        )
        for place in places:
            assert not any(Path(place).is_relative_to(root) for root in served_roots), place
    # and lighttpd follows no symlink out of its root
    conf = (GOLDEN / "master/etc/lighttpd/lighttpd.conf").read_text()
    assert 'server.follow-symlink = "disable"' in conf
