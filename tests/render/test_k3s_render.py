"""What render writes for K3S (docs/k3s.md): the join, the clock, local kubelet state, the
start-up order, the options. The token script runs for real; the firewall has its own file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, write_repo

from scooby.core import layout
from scooby.load.reader import load_or_raise
from scooby.render.renderer import render

AGENTS = ("cordy", "giles", "willow", "xander")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("k3s-render")
    repo = tmp / "repo"
    shutil.copytree(ROOT / "tests/data/example-repo", repo)
    write_repo(
        repo, {"config": 'LC_K3S_NODE_PORT_RANGE=25000-32767\nLC_EXTERNAL_OPEN_PORTS="25565/tcp"\n'}
    )
    return render(load_or_raise(repo, environ={}), tmp / "out").out


def _read(out: Path, rel: str) -> str:
    return (out / rel).read_text()


# --- options -----------------------------------------------------------------------------------


def test_server_config_has_the_networks_the_node_port_range_and_servicelb_off(out):
    text = _read(out, "master/etc/rancher/k3s/config.yaml")
    cfg = yaml.safe_load(text)
    assert cfg["cluster-cidr"] == "10.42.0.0/16" and cfg["service-cidr"] == "10.43.0.0/16"
    assert cfg["service-node-port-range"] == "25000-32767"
    assert cfg["disable"] == ["servicelb"]  # the example's manifests hold MetalLB
    assert "# ServiceLB off: MetalLB is in the manifests" in text


def test_servicelb_stays_without_metallb(tmp_path):
    repo = write_repo(
        tmp_path / "repo",
        {
            "config": "",
            "agents/willow.agent": (
                ROOT / "tests/data/example-repo/agents/willow.agent"
            ).read_text(),
        },
    )
    cfg = yaml.safe_load(
        _read(
            render(load_or_raise(repo, environ={}), tmp_path / "out").out,
            "master/etc/rancher/k3s/config.yaml",
        )
    )
    assert "disable" not in cfg


def test_firewall_opens_the_chosen_ports_the_pool_and_external_dhcp(out):
    rules = _read(out, "master/etc/iptables/rules.v4")
    assert "-A SCOOBY-EXTERNAL -d 192.168.1.64/32 -p tcp -m tcp --dport 25565 -j RETURN" in rules
    assert "-A SCOOBY-EXTERNAL -m iprange --dst-range 192.168.1.65-192.168.1.127 -j RETURN" in rules
    assert (
        "-A SCOOBY-EXTERNAL -p udp -m udp --sport 68 --dport 67 -j RETURN" in rules
    )  # README's DHCP
    assert "-A INPUT -i eth0 -p udp -m udp --sport 68 --dport 67 -j ACCEPT" in rules
    assert rules.rstrip().endswith("COMMIT")


# --- time ------------------------------------------------------------------------------------


def test_master_serves_ntp_and_dnsmasq_hands_it_out(out):
    assert "allow 192.168.64.0/24\n" in _read(out, "master/etc/chrony/conf.d/scooby.conf")
    assert "dhcp-option=tag:scooby,option:ntp-server,192.168.64.1\n" in _read(
        out, "master/etc/dnsmasq.d/scooby.conf"
    )
    for name in AGENTS:
        conf = _read(out, f"agents/{name}/etc/systemd/timesyncd.conf.d/scooby.conf")
        assert "NTP=192.168.64.1\n" in conf


def test_k3s_waits_for_the_clock_bounded(out):
    unit = _read(out, "master/etc/systemd/system/k3s.service")
    assert re.search(r"^After=.*scooby-time-wait\.service", unit, re.M)
    wait = _read(out, "master/etc/systemd/system/scooby-time-wait.service")
    assert f"TimeoutStartSec={layout.TIME_WAIT_MASTER + 30}" in wait
    agent = _read(out, "agents/willow/etc/systemd/system/k3s-agent.service")
    assert re.search(r"^After=.*scooby-time-wait\.service", agent, re.M)


def _run_wait(script: Path, limit_to: int, env_path: str) -> subprocess.CompletedProcess:
    text = script.read_text()
    text = re.sub(r"^limit=\d+$", f"limit={limit_to}", text, flags=re.M)
    fast = script.with_name(script.name + ".fast")
    fast.write_text(text.replace("/usr/local/sbin/scooby-say", "echo"))
    return subprocess.run(["sh", str(fast)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": env_path})  # fmt: skip


def test_master_time_wait_gives_up_with_a_console_warning(out, tmp_path):
    # A chronyc stand-in that reports chrony's own clock (`local`), never an upstream source.
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "chronyc").write_text(
        "#!/bin/sh\necho '7F7F0101,LOCL,10,1.0,0,0,0,0,0,0,0,0,0,0,Normal'\n"
    )
    (bin_ / "chronyc").chmod(0o755)
    run = _run_wait(out / "master/usr/local/sbin/scooby-time-wait", 2, f"{bin_}:/usr/bin:/bin")
    assert run.returncode == 0
    assert "SCOOBY WARNING: no NTP answer after 2s" in run.stdout
    (bin_ / "chronyc").write_text(
        "#!/bin/sh\necho 'C0A80101,192.168.1.1,2,1.0,0,0,0,0,0,0,0,0,0,0,Normal'\n"
    )
    run = _run_wait(out / "master/usr/local/sbin/scooby-time-wait", 2, f"{bin_}:/usr/bin:/bin")
    assert "clock synchronised" in run.stdout and "WARNING" not in run.stdout


def test_master_keeps_its_clock_across_reboots(out):
    packages = (ROOT / "templates/base/packages/master.txt").read_text().split()
    assert {"chrony", "fake-hwclock"} <= set(packages)
    assert "Wants=scooby-fake-hwclock.timer" in _read(
        out, "master/etc/systemd/system/multi-user.target.d/scooby.conf"
    )
    assert "ExecStart=/sbin/fake-hwclock save" in _read(
        out, "master/etc/systemd/system/scooby-fake-hwclock.service"
    )


# --- storage and start-up order ---------------------------------------------------------------


def test_agent_kubelet_state_is_on_the_local_disk_and_required(out):
    for name in AGENTS:
        fstab = _read(out, f"agents/{name}/etc/fstab")
        for target, source in layout.AGENT_LOCAL_BINDS:
            assert source.startswith("/var/lib/rancher/")
            assert (
                f"{source}\t{target}\tnone\tbind,nofail,x-systemd.requires=scooby-local-dirs.service\t0\t0"
                in fstab
            )
        unit = _read(out, f"agents/{name}/etc/systemd/system/k3s-agent.service")
        assert (
            "RequiresMountsFor=/var/lib/rancher /var/lib/kubelet /var/log/pods /var/lib/cni"
            " /etc/rancher/node\n" in unit
        )
        assert "Requires=scooby-pod-guard.service" in unit
        # K3S's node password (/etc/rancher/node/password) lives on the local disk, so that a
        # reset of the agent's upper dir (a new base, docs/day2.md 4.5) keeps it; one copied
        # there from the NFS root once, for an agent from before, before the bind hides it.
        local = _read(out, f"agents/{name}/etc/systemd/system/scooby-local-dirs.service")
        assert " /var/lib/rancher/scooby-local/node\n" in local
        assert (
            "ExecStart=/bin/sh -c 'test -e /var/lib/rancher/scooby-local/node/password || "
            "test ! -f /etc/rancher/node/password || cp -p /etc/rancher/node/password "
            "/var/lib/rancher/scooby-local/node/password'\n" in local
        )


def test_k3s_waits_for_the_internal_device(out):
    unit = _read(out, "master/etc/systemd/system/k3s.service")
    assert (
        f"systemd-networkd-wait-online --interface=eth1:no-carrier --timeout={layout.INTERNAL_WAIT}"
        in unit
    )


def test_agent_waits_and_retries_for_a_first_boot_install(out, tmp_path):
    unit = _read(out, "agents/willow/etc/systemd/system/k3s-agent.service")
    assert "ExecCondition=/usr/local/sbin/scooby-k3s-wait condition" in unit
    assert "ExecStartPre=/usr/local/sbin/scooby-k3s-wait\n" in unit
    assert "Restart=always" in unit and f"ConditionPathExists={layout.K3S_BINARY}" not in unit
    script = (out / "agents/willow/usr/local/sbin/scooby-k3s-wait").read_text()
    k3s, mode = tmp_path / "k3s", tmp_path / "mode"
    script = script.replace(repr(layout.K3S_BINARY)[1:-1], str(k3s)).replace(
        layout.K3S_MODE_FILE, str(mode)
    )
    script = re.sub(r"-ge \d+", "-ge 5", script)
    (tmp_path / "wait").write_text(script)

    def run(*args):
        return subprocess.run(
            ["sh", str(tmp_path / "wait"), *args], capture_output=True, text=True, timeout=30
        ).returncode

    mode.write_text("none\n")
    assert run("condition") == 1  # K3S_MODE=none: skipped, not failed
    mode.write_text("first-boot\n")
    assert run("condition") == 0
    assert run() == 1  # no binary yet: fail, so systemd restarts the unit
    k3s.write_text("#!/bin/sh\n")
    k3s.chmod(0o755)
    assert run() == 0


# --- the join ---------------------------------------------------------------------------------


def _private_var_lib(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs scooby-test /var/lib && sh "$0"', script],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("openssl"), reason="needs root and openssl"
)
def test_token_script_makes_the_ca_first_and_each_agent_a_secure_token(out, tmp_path):
    tls = layout.K3S_TLS
    script = tmp_path / "run"
    script.write_text(
        "set -e\n"
        f"sh {out}/master/usr/local/sbin/scooby-k3s-token\n"
        f"sh {out}/master/usr/local/sbin/scooby-k3s-token\n"  # a second boot changes nothing
        f"echo ROOT $(openssl x509 -in {tls}/root-ca.pem -outform DER"
        " | sha256sum | cut -d' ' -f1)\n"
        f"echo PASSWORD $(cat {layout.K3S_AGENT_TOKEN_MASTER})\n"
        f"for f in {layout.AGENT_LAYERS}/*{layout.K3S_AGENT_TOKEN}; do\n"
        "  echo TOKEN $(cat $f) $(stat -c %a $f)\ndone\n"
        f"for f in server-ca client-ca request-header-ca etcd/peer-ca etcd/server-ca; do\n"
        f"  test -s {tls}/$f.key\n"
        f"  openssl verify -CAfile {tls}/root-ca.pem -untrusted {tls}/$f.crt {tls}/$f.crt\n"
        "done\n"
        f"test -s {tls}/service.key && echo SERVICE-KEY\n"
    )
    run = _private_var_lib(str(script))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    (root,) = [s.split()[1] for s in lines if s.startswith("ROOT ")]
    (password,) = [s.split()[1] for s in lines if s.startswith("PASSWORD ")]
    tokens = [s.split()[1:] for s in lines if s.startswith("TOKEN ")]
    assert len(tokens) == len(AGENTS)
    assert all(t == [f"K10{root}::node:{password}", "600"] for t in tokens)
    assert sum("made the cluster CA" in s for s in lines) == 1
    assert sum(": OK" in s for s in lines) == 5 and "SERVICE-KEY" in lines
    assert sum("has the join token" in s for s in lines) == len(AGENTS)  # second run: none
