"""What the master and each agent run, rendered from the original's example cluster.

Content rules (kernel command lines, fstab forms, seeds, SSH policy, banners, the join token
kept out of everything served) are asserted on the rendered files; the daemons' own
checkers (cloud-init schema, systemd-analyze verify, sshd -t, dash -n) judge them too, and
the first-boot token script runs for real in a private mount namespace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, WILLOW, write_repo

from scooby.core import layout
from scooby.load import schema
from scooby.load.reader import load_or_raise
from scooby.render import checks, cloudinit_base
from scooby.render.renderer import render

ORIGINAL = ROOT / "examples" / "original"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0c3Rrb3BrZXlmb3J0ZXN0aW5nb25seTEyMzQ1 giles@library"
GITHUB_TOKEN = "ghp_thisIsNotARealTokenButMustNeverBeRendered0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# An MBR-partitioned USB key (xxxxxxxx-NN) with a swap partition, beside the README's GPT ones;
# and K3S arguments that need systemd's quoting.
XANDER = """\
AGENT_ETHERNET=B8:27:EB:00:00:01
AGENT_IP=192.168.64.66
AGENT_RANCHER_PART_UUID=1A2B3C4D-01
AGENT_SWAP_PART_UUID=1a2b3c4d-02
AGENT_PXE_ID=a0000001
AGENT_K3S_ARGS='--node-label "room=the library" \
--kubelet-arg "eviction-hard=memory.available<5%" --node-taint "x=$y:NoSchedule"'
"""
SERVED = ("master/srv/tftp", f"master{layout.HTTP_ROOT}")


def _repo(tmp: Path, env: str | None) -> Path:
    repo = tmp / "repo"
    shutil.copytree(ORIGINAL, repo)
    files = {"agents/xander.agent": XANDER}
    if env is not None:
        files[".env"] = env
    return write_repo(repo, files)


def _render(tmp: Path, env: str | None) -> Path:
    cluster = load_or_raise(_repo(tmp, env), environ={})
    return render(cluster, tmp / "out").out


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """The example with a .env: user giles, an SSH key, and secrets that must stay out."""
    env = (
        f"LC_DEFAULT_USER=giles\nLC_SSH_AUTH_KEY={KEY}\n"
        f"LC_PACKER_GITHUB_API_TOKEN={GITHUB_TOKEN}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
    )
    return _render(tmp_path_factory.mktemp("with-key"), env)


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """The example with no .env at all: user spike, no SSH key."""
    return _render(tmp_path_factory.mktemp("no-env"), None)


def _read(out: Path, rel: str) -> str:
    return (out / rel).read_text()


def _cmdline(out: Path, rel: str) -> list[str]:
    text = _read(out, rel)
    assert text.count("\n") == 1 and text.endswith("\n"), "cmdline.txt is one line"
    return text.split()


AGENTS = {"ted": "9686533c", "willow": "c6811a52", "xander": "a0000001"}


# --- the master's boot partition -----------------------------------------------------------


def test_master_cmdline(out):
    words = _cmdline(out, "boot/cmdline.txt")
    root = layout.partuuid("buffy", layout.ROOT_PARTITION)
    assert f"root=PARTUUID={root}" in words
    for flag in ("rootwait", "console=serial0,115200", "console=tty1", "net.ifnames=0"):
        assert flag in words
    # Current Pi kernels: only cgroup_enable=memory; cgroup_memory=1 is no kernel parameter.
    assert "cgroup_enable=memory" in words
    assert not [w for w in words if w.startswith("cgroup_memory")]
    assert words.index("console=serial0,115200") < words.index("console=tty1")


def test_master_config_txt(out):
    lines = _read(out, "boot/config.txt").splitlines()
    # The example's base is Raspberry Pi OS: its own kernel8.img, its initramfs8 only where
    # the image has one, and its overlays.
    for line in (
        "arm_64bit=1",
        "auto_initramfs=1",
        "dtoverlay=disable-wifi",
        "dtoverlay=disable-bt",
    ):
        assert line in lines
    assert not [n for n in lines if n.startswith(("kernel=", "initramfs "))]
    assert "upstream_kernel=1" not in lines


def test_debian_base_uses_mainline_device_trees(tmp_path):
    repo = write_repo(tmp_path / "repo", {"config": "", "agents/willow.agent": XANDER})
    rendered = render(load_or_raise(repo, environ={}), tmp_path / "out").out
    for config in ("boot/config.txt", "master/srv/tftp/a0000001/config.txt"):
        lines = _read(rendered, config).splitlines()
        assert "upstream_kernel=1" in lines
        assert f"kernel={layout.KERNEL}" in lines
        assert f"initramfs {layout.INITRD} followkernel" in lines
        assert not [n for n in lines if n.startswith("dtoverlay=")]  # Debian ships none
    # The header UART is the mini-UART: ttyS1 under Debian's kernel (serial0 is Bluetooth's).
    for cmdline in ("boot/cmdline.txt", "master/srv/tftp/a0000001/cmdline.txt"):
        words = _read(rendered, cmdline).split()
        assert "console=ttyS1,115200" in words and "console=serial0,115200" not in words


def test_master_seed(out, bare):
    meta = yaml.safe_load(_read(out, "boot/meta-data"))
    assert meta["instance-id"].startswith("scooby-buffy-")
    assert meta["local-hostname"] == "buffy"
    # A different key or user is a different instance: cloud-init applies the seed again.
    assert yaml.safe_load(_read(bare, "boot/meta-data"))["instance-id"] != meta["instance-id"]
    user_data = _read(out, "boot/user-data")
    assert user_data.startswith("#cloud-config\n")
    data = yaml.safe_load(user_data)
    assert data["hostname"] == "buffy"
    assert [u["name"] for u in data["users"]] == ["giles"]
    assert data["users"][0]["lock_passwd"] is True
    # The root is a fixed-size slot: cloud-init grows nothing, scooby-firstboot grows the
    # data partition (its `grow`, run by scooby-firstboot.service).
    assert data["growpart"] == {"mode": "off"} and data["resize_rootfs"] is False
    assert data["ssh_deletekeys"] is False
    unit = _read(out, "master/etc/systemd/system/scooby-firstboot.service")
    assert "ExecStart=/usr/local/sbin/scooby-firstboot grow\n" in unit
    assert not data["package_update"] and not data["package_upgrade"]
    for forbidden in ("runcmd", "packages", "bootcmd", "write_files"):
        assert forbidden not in data  # first boot is systemd units, not downloads in cloud-init


def test_master_cloud_init_reads_only_the_boot_partition(out):
    cfg = yaml.safe_load(_read(out, "master/etc/cloud/cloud.cfg.d/90_scooby.cfg"))
    assert cfg["datasource_list"] == ["NoCloud", "None"]
    assert cfg["datasource"]["NoCloud"]["fs_label"] == layout.BOOT_LABEL
    assert cfg["network"] == {"config": "disabled"}


# --- first boot, users, SSH ----------------------------------------------------------------


def test_default_user_from_env(out, bare):
    assert "USER_NAME=giles\n" in _read(out, "master/usr/local/sbin/scooby-firstboot")
    assert "USER_NAME=spike\n" in _read(bare, "master/usr/local/sbin/scooby-firstboot")
    assert _read(out, "master/etc/scooby/sudoers").splitlines()[-1] == (
        "giles ALL=(ALL:ALL) NOPASSWD: ALL"
    )
    for agent in AGENTS:
        seed = yaml.safe_load(_read(out, f"master{layout.HTTP_ROOT}/{agent}/user-data"))
        assert [u["name"] for u in seed["users"]] == ["giles"]
        bare_seed = yaml.safe_load(_read(bare, f"master{layout.HTTP_ROOT}/{agent}/user-data"))
        assert [u["name"] for u in bare_seed["users"]] == ["spike"]


def test_key_only_ssh_with_a_key(out):
    for tree in ["master", *(f"agents/{a}" for a in AGENTS)]:
        assert _read(out, f"{tree}{layout.AUTHORIZED_KEYS}") == KEY + "\n"
        sshd = _read(out, f"{tree}/etc/ssh/sshd_config.d/scooby.conf").splitlines()
        for line in (
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "AuthenticationMethods publickey",
            "AllowUsers giles",
        ):
            assert line in sshd
    seed = yaml.safe_load(_read(out, f"master{layout.HTTP_ROOT}/willow/user-data"))
    assert seed["users"][0]["ssh_authorized_keys"] == [KEY]
    # Left to scooby.conf above: cloud-init must neither enable passwords nor restart sshd.
    assert "ssh_pwauth" not in seed
    assert seed["locale"] == layout.LOCALE
    for tree in ["master", *(f"agents/{a}" for a in AGENTS)]:
        assert f"LANG={layout.LOCALE}" in _read(out, f"{tree}/etc/default/locale").splitlines()


def test_no_ssh_at_all_without_a_key(bare):
    for tree in ["master", *(f"agents/{a}" for a in AGENTS)]:
        assert _read(bare, f"{tree}{layout.AUTHORIZED_KEYS}") == ""
        for unit in ("ssh.service", "ssh.socket"):
            dropin = _read(bare, f"{tree}/etc/systemd/system/{unit}.d/scooby.conf")
            assert f"ConditionFileNotEmpty={layout.AUTHORIZED_KEYS}" in dropin.splitlines()
    for agent in AGENTS:
        seed = yaml.safe_load(_read(bare, f"master{layout.HTTP_ROOT}/{agent}/user-data"))
        assert "ssh_authorized_keys" not in seed["users"][0]


def test_first_boot_units_are_wanted_without_symlinks(out):
    wants = _read(out, "master/etc/systemd/system/multi-user.target.d/scooby.conf")
    for unit in (
        "scooby-firstboot-identity.service",
        "scooby-firstboot.service",
        "scooby-k3s-token.service",
        "scooby-k3s-install.service",
        "k3s.service",
        "scooby-ready.service",
    ):
        assert unit in wants
        assert (out / "master/etc/systemd/system" / unit).is_file()
    identity = _read(out, "master/etc/systemd/system/scooby-firstboot-identity.service")
    assert f"ConditionPathExists=!{layout.FIRSTBOOT_DONE}" in identity
    assert "Before=ssh.service" in identity


# --- K3S -----------------------------------------------------------------------------------


def test_k3s_server_config(out):
    cfg = yaml.safe_load(_read(out, "master/etc/rancher/k3s/config.yaml"))
    assert cfg["node-ip"] == "192.168.64.1"
    assert cfg["node-external-ip"] == "192.168.1.64"
    assert cfg["flannel-iface"] == "eth1"
    assert cfg["advertise-address"] == "192.168.64.1"
    # The API answers on both networks (kubectl from the external side); iptables keeps the
    # rest of K3S (kubelet, flannel) internal.
    assert "bind-address" not in cfg
    rules = _read(out, "master/etc/iptables/rules.v4")
    assert "-A INPUT -i eth0 -p tcp -m tcp --dport 6443 -j ACCEPT" in rules
    assert cfg["agent-token-file"] == layout.K3S_AGENT_TOKEN_MASTER
    assert cfg["write-kubeconfig-mode"] == "0600"
    assert "token" not in cfg and "agent-token" not in cfg  # never a token at build time
    unit = _read(out, "master/etc/systemd/system/k3s.service").splitlines()
    assert f"ConditionPathExists={layout.K3S_BINARY}" in unit
    assert f"ExecStart={layout.K3S_BINARY} server" in unit


def test_first_boot_install_is_pinned_and_verified(out):
    script = _read(out, "master/usr/local/sbin/scooby-k3s-install")
    assert f"VERSION={schema.defaults('config')['LC_K3S_VERSION']}\n" in script
    assert "sha256sum --check" in script
    assert '[ "$mode" = first-boot ] || exit 0' in script
    assert "scooby-say" in script  # the loud console warning
    unit = _read(out, "master/etc/systemd/system/scooby-k3s-install.service")
    assert f"ConditionPathExists=!{layout.K3S_BINARY}" in unit


def _mount_unit(path: str) -> str:
    run = subprocess.run(
        ["systemd-escape", "--path", "--suffix=mount", path], capture_output=True, text=True
    )
    return run.stdout.strip()


def test_token_unit_runs_before_every_overlay_mount(out, tmp_path):
    unit = _read(out, "master/etc/systemd/system/scooby-k3s-token.service").splitlines()
    fstab = _read(out, "master/etc/fstab")
    for agent in AGENTS:
        mount = f"{layout.AGENT_MOUNTS}/{agent}"
        assert f"\t{mount}\toverlay\t" in fstab
        assert f"Before={_mount_unit(mount)}" in unit
    assert "Before=local-fs.target nfs-server.service k3s.service shutdown.target" in unit
    # A name with a dash is escaped as systemd does.
    repo = write_repo(tmp_path / "repo", {"config": "", "agents/big-bad.agent": XANDER})
    rendered = render(load_or_raise(repo, environ={}), tmp_path / "out").out
    unit = _read(rendered, "master/etc/systemd/system/scooby-k3s-token.service")
    assert f"Before={_mount_unit(layout.AGENT_MOUNTS + '/big-bad')}\n" in unit


def _in_private_var_lib(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a script with a private, empty /var/lib (tmpfs in a new mount namespace)."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs scooby-test /var/lib && "$@"', "sh", script, *args],
        capture_output=True,
        text=True,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_token_script_makes_one_token_for_every_agents_layer(out, tmp_path):
    script = tmp_path / "token-then-show"
    shutil.copy(out / "master/usr/local/sbin/scooby-k3s-token", tmp_path / "token")
    layers, token = layout.AGENT_LAYERS, layout.K3S_AGENT_TOKEN_MASTER
    # Run it twice, as on two boots; then show the token and each agent's copy with its mode.
    script.write_text(
        f"set -e\n{tmp_path}/token\n{tmp_path}/token\n"
        f"echo TOKEN $(cat {token}) $(stat -c %a {token})\n"
        f"for f in {layers}/*{layout.K3S_AGENT_TOKEN}; do\n"
        f'  echo COPY "$f" $(cat "$f") $(stat -c %a "$f")\ndone\n'
    )
    run = _in_private_var_lib("/bin/sh", str(script))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sum("made a new agent join token" in s for s in lines) == 1
    (tok,) = [s.split()[1:] for s in lines if s.startswith("TOKEN ")]
    assert re.fullmatch(r"[0-9a-f]{64}", tok[0]) and tok[1] == "600"
    copies = [s.split()[1:] for s in lines if s.startswith("COPY ")]
    assert sorted(c[0] for c in copies) == [
        f"{layers}/{a}{layout.K3S_AGENT_TOKEN}" for a in sorted(AGENTS)
    ]
    # Each agent gets the secure form of the same password (tests/render/test_k3s_render.py
    # checks the CA hash in it against the CA file).
    assert all(
        re.fullmatch(rf"K10[0-9a-f]{{64}}::node:{tok[0]}", c[1]) and c[2] == "600" for c in copies
    )
    # The second run rewrote nothing (a lower layer should not change needlessly).
    assert sum("has the join token" in s for s in lines) == len(AGENTS)


# --- agents --------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_agent_cmdline(out, agent):
    cluster_ip = "192.168.64.1"
    words = _cmdline(out, f"master/srv/tftp/{AGENTS[agent]}/cmdline.txt")
    assert "root=/dev/nfs" in words
    nfsroot = f"nfsroot={cluster_ip}:{layout.AGENT_MOUNTS}/{agent},tcp,vers=3,"
    assert nfsroot + layout.AGENT_ROOT_NFS_CACHE in words
    for flag in ("rw", "ip=dhcp", "rootwait", "cgroup_enable=memory", "net.ifnames=0"):
        assert flag in words
    # cloud-init ranks ip= above its config files: only this keeps it off the NFS root's eth0.
    assert "network-config=disabled" in words
    assert not [w for w in words if w.startswith("cgroup_memory")]
    # The original's Raspberry Pi OS base: nocloud-net, which every cloud-init accepts.
    (ds,) = [w for w in words if w.startswith("ds=")]
    assert ds == f"ds=nocloud-net;s=http://{cluster_ip}:{layout.HTTP_PORT}/{agent}/"
    config = _read(out, f"master/srv/tftp/{AGENTS[agent]}/config.txt").splitlines()
    assert "arm_64bit=1" in config and "auto_initramfs=1" in config  # Raspberry Pi OS


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_agent_seed(out, agent):
    meta = yaml.safe_load(_read(out, f"master{layout.HTTP_ROOT}/{agent}/meta-data"))
    assert meta["instance-id"].startswith(f"scooby-{agent}-")
    assert meta["local-hostname"] == agent
    seed = yaml.safe_load(_read(out, f"master{layout.HTTP_ROOT}/{agent}/user-data"))
    assert seed["hostname"] == agent
    assert "packages" not in seed and not seed["package_update"]
    assert _read(out, f"agents/{agent}/etc/hostname") == f"{agent}\n"
    cfg = yaml.safe_load(_read(out, f"agents/{agent}/etc/cloud/cloud.cfg.d/90_scooby.cfg"))
    assert cfg == {"datasource_list": ["NoCloud", "None"], "network": {"config": "disabled"}}
    # Every file cloud-init's NoCloud asks the seed for is there (a missing one costs 10 s of
    # retries): no vendor-data, and a network-config that leaves the network to the kernel.
    assert _read(out, f"master{layout.HTTP_ROOT}/{agent}/vendor-data") == ""
    network = yaml.safe_load(_read(out, f"master{layout.HTTP_ROOT}/{agent}/network-config"))
    assert network == {"config": "disabled"}


def _fstab(out: Path, agent: str) -> list[list[str]]:
    lines = _read(out, f"agents/{agent}/etc/fstab").splitlines()
    return [s.split() for s in lines if s.strip() and not s.startswith("#")]


@pytest.mark.parametrize(
    ("config", "ds"),
    [("", "nocloud"), ("LC_DEBIAN_SUITE=trixie\n", "nocloud"),
     ("LC_DEBIAN_SUITE=bookworm\n", "nocloud-net")],
)  # fmt: skip
def test_the_seed_datasource_is_named_for_the_suites_cloud_init(tmp_path, config, ds):
    """cloud-init 24.1+ (trixie: 25.1) fetches an HTTP seed for ds=nocloud and deprecates
    nocloud-net; bookworm's 22.4 fetches one only for nocloud-net."""
    repo = write_repo(tmp_path / "repo", {"config": config, "agents/willow.agent": WILLOW})
    out = render(load_or_raise(repo, environ={}), tmp_path / "out").out
    words = _cmdline(out, "master/srv/tftp/c6811a52/cmdline.txt")
    assert f"ds={ds};s=http://192.168.64.1:{layout.HTTP_PORT}/willow/" in words


def _rancher_rules(out: Path, agent: str) -> list[str]:
    text = _read(out, f"agents/{agent}/etc/udev/rules.d/61-scooby-rancher.rules")
    return [s for s in text.splitlines() if s.strip() and not s.startswith("#")]


def test_agent_fstab_gpt_form(out):
    entries = _fstab(out, "willow")
    assert entries[0] == ["proc", "/proc", "proc", "defaults", "0", "0"]
    assert entries[1][:3] == ["192.168.64.1:/mnt/scooby/agents/willow", "/", "nfs"]
    assert "vers=3" in entries[1][3].split(",")
    # The same cache options as nfsroot= on the command line: the boot's remount changes nothing.
    assert set(layout.AGENT_ROOT_NFS_CACHE.split(",")) <= set(entries[1][3].split(","))
    rancher = entries[2]
    assert rancher[:3] == [layout.RANCHER_DEVICE, "/var/lib/rancher", "ext4"]
    options = rancher[3].split(",")
    assert "nofail" in options and "x-systemd.device-timeout=90s" in options
    # no swap partition given, no swap line; then the kubelet's folders, bound from the disk
    assert [e[:3] for e in entries[3:]] == [
        [source, target, "none"] for target, source in layout.AGENT_LOCAL_BINDS
    ]


def test_the_rancher_disk_is_found_by_partuuid_or_file_system_uuid(out):
    """One udev link for the partition whose PARTUUID or ext4 UUID is the agent's value (the
    original's agent files held the file system UUID)."""
    uuid = "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1"
    link = layout.RANCHER_DEVICE.removeprefix("/dev/")
    common = 'ACTION!="remove", SUBSYSTEM=="block"'
    # A disk that appears after fstab's device timeout still gets mounted, and K3S started.
    late = 'ENV{SYSTEMD_WANTS}+="k3s-agent.service"'
    assert _rancher_rules(out, "willow") == [
        f'{common}, ENV{{ID_PART_ENTRY_UUID}}=="{uuid}", SYMLINK+="{link}", {late}',
        f'{common}, ENV{{ID_FS_UUID}}=="{uuid}", SYMLINK+="{link}", {late}',
    ]


def test_agent_fstab_mbr_form_and_swap(out):
    entries = _fstab(out, "xander")
    assert entries[2][:3] == [layout.RANCHER_DEVICE, "/var/lib/rancher", "ext4"]
    assert 'ENV{ID_PART_ENTRY_UUID}=="1a2b3c4d-01"' in _rancher_rules(out, "xander")[0]
    assert entries[3][:3] == ["PARTUUID=1a2b3c4d-02", "none", "swap"]


def test_agent_k3s_config(out):
    cfg = yaml.safe_load(_read(out, "agents/willow/etc/rancher/k3s/config.yaml"))
    assert cfg == {
        "server": "https://192.168.64.1:6443",
        "token-file": layout.K3S_AGENT_TOKEN,
        "node-name": "willow",
        "node-ip": "192.168.64.65",
        "flannel-iface": layout.AGENT_DEVICE,
    }


def _exec_start(out: Path, agent: str) -> str:
    unit = _read(out, f"agents/{agent}/etc/systemd/system/k3s-agent.service").splitlines()
    (line,) = [s for s in unit if s.startswith("ExecStart=")]
    return line


def test_agent_k3s_args_in_systemd_quoting(out):
    assert _exec_start(out, "willow") == f"ExecStart={layout.K3S_BINARY} agent"
    assert _exec_start(out, "ted") == (
        f'ExecStart={layout.K3S_BINARY} agent "--node-label" "smarter-device-manager=enabled"'
    )
    # `%` and `$` doubled so systemd expands neither; spaces kept inside one word.
    assert _exec_start(out, "xander") == (
        f'ExecStart={layout.K3S_BINARY} agent "--node-label" "room=the library" '
        '"--kubelet-arg" "eviction-hard=memory.available<5%%" '
        '"--node-taint" "x=$$y:NoSchedule"'
    )


def test_agent_k3s_unit(out):
    unit = _read(out, "agents/willow/etc/systemd/system/k3s-agent.service").splitlines()
    assert f"RequiresMountsFor={' '.join(layout.AGENT_LOCAL_MOUNTS)}" in unit
    # No ConditionPathExists on the binary: a first-boot install arrives later (scooby-k3s-wait)
    assert f"ConditionPathExists={layout.K3S_BINARY}" not in unit
    assert f"ConditionPathExists={layout.K3S_AGENT_TOKEN}" in unit
    assert "ExecStartPre=/usr/local/sbin/scooby-airgap-images" in unit
    assert "ExecStartPost=-/usr/local/sbin/scooby-online" in unit
    script = _read(out, "agents/willow/usr/local/sbin/scooby-airgap-images")
    assert f"SRC={layout.K3S_AIRGAP_SHARED}\n" in script
    assert f"DEST_DIR={layout.K3S_AIRGAP_DIR}\n" in script


# --- banners -------------------------------------------------------------------------------


def test_banners(out):
    ready = _read(out, "master/usr/local/sbin/scooby-ready")
    assert "BANNER='BUFFY WILL PATROL TONIGHT'\n" in ready
    assert '"$BANNER (without K3S)"' in ready
    for agent in AGENTS:
        online = _read(out, f"agents/{agent}/usr/local/sbin/scooby-online")
        assert f"BANNER='{agent.upper()} IS ONLINE'\n" in online
        assert '"$BANNER (without K3S)"' in online
        unit = _read(out, f"agents/{agent}/etc/systemd/system/scooby-online.service")
        assert f"ConditionPathExists=!{layout.K3S_BINARY}" in unit


def test_say_writes_to_the_active_consoles_and_wall(out):
    say = _read(out, "master/usr/local/sbin/scooby-say")
    assert "/sys/class/tty/console/active" in say and "wall" in say


# --- nothing secret where it is served -----------------------------------------------------


SECRET_PATTERNS = [
    re.compile(p)
    for p in (
        r"PRIVATE KEY",
        r"\$(1|2[aby]|5|6|y|gy|7)\$",  # crypt(3) password hashes
        r"K10[0-9a-f]{64}::",  # a K3S secure token
        r"\b[0-9a-f]{64}\b",  # a K3S short token as scooby-k3s-token makes them
        re.escape(GITHUB_TOKEN),
        re.escape(AWS_SECRET),
    )
]


def test_no_token_hash_or_private_key_in_served_or_boot_files(out):
    served = [p for s in SERVED for p in (out / s).rglob("*") if p.is_file()]
    boot = [p for p in (out / "boot").rglob("*") if p.is_file()]
    # per agent: TFTP cmdline.txt and config.txt; the seed's user-data, meta-data,
    # vendor-data and network-config
    assert len(served) == 6 * len(AGENTS) and len(boot) == 4
    for path in served + boot:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.relative_to(out)} matches {pattern.pattern}"


def test_secrets_from_env_are_rendered_nowhere(out):
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert GITHUB_TOKEN not in text and AWS_SECRET not in text, path
    # The join token does not exist before the master's first boot.
    assert not list(out.rglob("agent-token"))
    assert not list(out.rglob("k3s-agent-token"))


# --- the real checkers ---------------------------------------------------------------------


def test_cloud_init_schema_on_every_cloud_config(out, bare, tmp_path):
    files = [
        p
        for tree in (out, bare)
        for p in sorted(tree.rglob("*"))
        if p.is_file() and p.read_bytes().startswith(b"#cloud-config")
    ]
    assert len(files) == 2 * (1 + len(AGENTS) + 1 + len(AGENTS))
    for path in files:
        checked = path
        if cloudinit_base.is_base_config(str(path)):
            # base configuration: its base-only keys aside, cloud-init's own command checks
            # the rest as user data (the rule scooby.render.cloudinit_schema follows)
            config = yaml.safe_load(path.read_text())
            checked = tmp_path / f"{len(list(tmp_path.iterdir()))}.cfg"
            rest = cloudinit_base.user_data_part(config)
            checked.write_text("#cloud-config\n" + yaml.safe_dump(rest))
        run = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(checked)], capture_output=True, text=True
        )
        assert run.returncode == 0, f"{path}: {run.stdout}{run.stderr}"


def _verify_root(tmp: Path, tree: Path) -> Path:
    """A root for `systemd-analyze verify --root`: this host's units, the rendered tree, and
    stand-ins for the executables the image provides (k3s, sshd) but this host may lack."""
    root = tmp / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(tree, root, dirs_exist_ok=True)
    # /bin/kill: procps', which ssh.service's ExecReload runs (a minbase host lacks procps)
    # /bin/echo: coreutils', which scooby-update.service runs when LC_UPDATE_URL is empty
    image = ("/usr/sbin/sshd", "/sbin/fake-hwclock", "/bin/mkdir", "/bin/kill", "/bin/echo")
    image += ("/usr/lib/systemd/systemd-networkd-wait-online",)
    for exe in (layout.K3S_BINARY, *image):
        stand_in = root / exe.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    return root


def _verify(tmp: Path, tree: Path, units: list[str]) -> None:
    root = _verify_root(tmp, tree)
    run = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--recursive-errors=yes", "--man=no"]
        + units,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr


def test_systemd_verify_master_units(out, tmp_path):
    units = sorted(p.name for p in (out / "master/etc/systemd/system").glob("*.service"))
    # scooby-agent-uppers.service; scooby-update-pending.service and scooby-update.service
    assert len(units) == 13
    others = ["scooby-fake-hwclock.timer", "ssh.service", "ssh.socket", "multi-user.target"]
    others += ["scooby-health-deadline.timer", "timers.target"]  # a trial boot's deadline
    others += ["scooby-update.timer"]  # the pull of LC_UPDATE_URL (off here)
    _verify(tmp_path, out / "master", units + others)


@pytest.mark.parametrize("agent", ["ted", "xander"])
def test_systemd_verify_agent_units(out, tmp_path, agent):
    units = ["k3s-agent.service", "scooby-online.service", "ssh.service", "multi-user.target"]
    units += ["scooby-pod-guard.service", "scooby-time-wait.service", "scooby-local-dirs.service"]
    _verify(tmp_path, out / "agents" / agent, units)


def test_shell_scripts_parse_and_are_executable(out):
    scripts = sorted(
        p for tree in ("master", *(f"agents/{a}" for a in AGENTS))
        for p in (out / tree / "usr/local/sbin").iterdir()
    )  # fmt: skip
    assert len(scripts) == 10 + 6 * len(AGENTS)
    for path in scripts:
        assert os.access(path, os.X_OK), path
        # the master's side of a deploy, and of an A/B deploy
        if path.name in ("scooby-apply", "scooby-update", "scooby-slot"):
            assert path.read_text().startswith("#!/usr/bin/python3\n"), path
            compile(path.read_text(), str(path), "exec")
            continue
        assert path.read_text().startswith("#!/bin/sh\n"), path
        run = subprocess.run(["dash", "-n", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{path}: {run.stderr}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private /run")
def test_sshd_accepts_the_dropin(out, tmp_path):
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "sshd_config"
    dropin = out / "master/etc/ssh/sshd_config.d/scooby.conf"
    config.write_text(f"Include {dropin}\nHostKey {key}\n")
    # sshd -t wants its privilege separation directory, which only a running ssh.service makes.
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs scooby-test /run && mkdir /run/sshd && /usr/sbin/sshd -t -f "$1"',
         "sh", str(config)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_the_shared_checkers_pass(out, bare):
    """scooby.checks (every daemon's own checker) over the whole tree, with and without a key."""
    assert [str(d) for d in checks.problems(out) + checks.problems(bare)] == []


# --- a 250-agent cluster -------------------------------------------------------------------


def _big_repo(root: Path, count: int) -> Path:
    files = {"config": "LC_INTERNAL_IP=10.64.0.1\nLC_INTERNAL_NET=10.64.0.0/16\n"}
    for n in range(count):
        files[f"agents/node-{n:03d}.agent"] = (
            f"AGENT_ETHERNET=dc:a6:32:00:{n // 256:02x}:{n % 256:02x}\n"
            f"AGENT_IP=10.64.{1 + n // 200}.{1 + n % 200}\n"
            f"AGENT_RANCHER_PART_UUID={n:08x}-01\n"
            f"AGENT_PXE_ID={0xA0000000 + n:08x}\n"
        )
    return write_repo(root / "repo", files)


def test_250_agents(tmp_path):
    cluster = load_or_raise(_big_repo(tmp_path, 250), environ={})
    big = render(cluster, tmp_path / "out").out
    assert len(list((big / "master/srv/tftp").iterdir())) == 250
    unit = _read(big, "master/etc/systemd/system/scooby-k3s-token.service")
    assert unit.count(".mount\n") == 250
    assert "Before=mnt-scooby-agents-node\\x2d249.mount\n" in unit
    script = _read(big, "master/usr/local/sbin/scooby-agent")
    assert script.count(") ip=10.64.") == 250
    _verify(tmp_path, big / "master", ["scooby-k3s-token.service", "scooby-k3s-install.service"])
    _verify(tmp_path / "agent", big / "agents/node-249", ["k3s-agent.service"])
    assert [str(d) for d in checks.problems(big)] == []


# --- the first-boot and agent scripts, run for real in a private mount namespace -----------


def _in_namespace(setup: str, *args: str) -> subprocess.CompletedProcess:
    """Run `setup` (sh) in a new mount namespace: whatever it mounts vanishes with it."""
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *args],
        capture_output=True,
        text=True,
    )
    return run


# A copy of this host's /etc on a tmpfs, over /etc; empty /home and /var/lib.
PRIVATE_ETC = """\
set -e
mount -t tmpfs scooby-test "$1" && cp -a /etc/. "$1" && mount --bind "$1" /etc
mount -t tmpfs scooby-test /home
mount -t tmpfs scooby-test /var/lib
mountpoint -q /etc && mountpoint -q /var/lib
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_master_first_boot_script(out, tmp_path):
    (tmp_path / "etc").mkdir()
    script = out / "master/usr/local/sbin/scooby-firstboot"
    setup = PRIVATE_ETC + (
        'useradd --create-home pi\n'
        "install -D -m 0644 \"$3\" /etc/scooby/sudoers\n"
        'host_key=$(cat /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null || true)\n'
        '"$2" identity\n"$2" user\n'
        f'echo "NEW_KEY $(cut -d" " -f2 {layout.DATA_SSH}/ssh_host_ed25519_key.pub)"\n'
        'echo "OLD_KEY $(echo "$host_key" | cut -d" " -f2)"\n'
        'echo "MACHINE_ID $(cat /etc/machine-id)"\n'
        f'echo "KEPT_ID $(cat {layout.DATA_MACHINE_ID})"\n'
        'echo "ETC_FILES $(find /etc/ssh -name "ssh_host_*" ! -type l | wc -l)"\n'
        'echo "ETC_LINK $(readlink /etc/ssh/ssh_host_ed25519_key.pub)"\n'
        # A second run (a new root slot's first boot): the kept identity stays as it is.
        f'sum=$(cat {layout.DATA_SSH}/*.pub {layout.DATA_MACHINE_ID} | sha256sum)\n'
        '"$2" identity >/dev/null\n'
        f'[ "$sum" = "$(cat {layout.DATA_SSH}/*.pub {layout.DATA_MACHINE_ID} | sha256sum)" ]'
        ' && echo SAME_AFTER_RERUN\n'
        "echo \"SHADOW $(getent shadow giles | cut -d: -f2) $(getent shadow pi | cut -d: -f2,8)\"\n"
        'echo "GROUPS $(id -nG giles)"\n'
        'echo "PI_SHELL $(getent passwd pi | cut -d: -f7)"\n'
        'echo "SUDOERS $(stat -c %a /etc/sudoers.d/scooby) $(tail -1 /etc/sudoers.d/scooby)"\n'
        f'test -s {layout.FIRSTBOOT_DONE} && echo DONE\n'
    )  # fmt: skip
    sudoers = out / "master/etc/scooby/sudoers"
    run = _in_namespace(setup, str(tmp_path / "etc"), str(script), str(sudoers))
    assert run.returncode == 0, run.stderr
    seen = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert seen["NEW_KEY"] and seen["NEW_KEY"] != seen["OLD_KEY"]
    host_id = Path("/etc/machine-id").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", seen["MACHINE_ID"]) and seen["MACHINE_ID"] != host_id
    assert seen["KEPT_ID"] == seen["MACHINE_ID"]  # on the data partition
    # The keys are on the data partition, only linked into /etc/ssh (cloud-init makes none).
    assert seen["ETC_FILES"] == "0"
    assert seen["ETC_LINK"] == f"{layout.DATA_SSH}/ssh_host_ed25519_key.pub"
    assert "SAME_AFTER_RERUN" in run.stdout.splitlines()
    user_hash, pi = seen["SHADOW"].split()
    assert user_hash.startswith("!")  # locked: no password, SSH key only
    assert pi.startswith("!") and pi.endswith(":1")  # pi locked and expired
    assert seen["PI_SHELL"] == "/usr/sbin/nologin"
    assert {"adm", "systemd-journal"} <= set(seen["GROUPS"].split())
    assert seen["SUDOERS"] == "440 giles ALL=(ALL:ALL) NOPASSWD: ALL"
    assert "DONE" in run.stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_agent_airgap_images_copied_to_local_disk_once(out):
    script = out / "agents/willow/usr/local/sbin/scooby-airgap-images"
    src, dest_dir = layout.K3S_AIRGAP_SHARED, layout.K3S_AIRGAP_DIR
    setup = (
        "set -e\nmount -t tmpfs scooby-test /var/lib\n"
        f"mount -t tmpfs scooby-test {Path(src).parent.parent}\n"
        f'"$1"; echo "NONE $(ls {dest_dir} 2>/dev/null | wc -l)"\n'
        f"mkdir -p {Path(src).parent} && echo images-v1 >{src}\n"
        '"$1"; "$1"\n'
        f"touch -d 2020-01-01 {src} && echo images-v2 >>{src} && touch -d 2020-01-02 {src}\n"
        f'"$1"; echo "NOW $(cat {dest_dir}/*)"\n'
    )
    run = _in_namespace(setup, str(script))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "NONE 0"  # no images in the shared layer: nothing to do
    assert sum(line.startswith("scooby-airgap-images: copied") for line in lines) == 2
    assert lines[-2:] == ["NOW images-v1", "images-v2"]  # a changed file is copied again


# --- K3S_MODE=first-boot: the install script against a stand-in for GitHub ----------------

FAKE_K3S = b"#!/bin/sh\necho fake k3s\n"
FAKE_AIRGAP = b"fake air-gap images\n"
# A TLS server for github.com, started inside the test's own network namespace (only its
# loopback exists there), serving www/ as GitHub's release downloads would.
SERVER = """\
import http.server, ssl, sys
www, cert, key = sys.argv[1:]
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=www)
httpd = http.server.HTTPServer(("127.0.0.1", 443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("ready", flush=True)
httpd.serve_forever()
"""
# In a new mount and network namespace: a private /etc (github.com is 127.0.0.1), empty
# /var/lib, /var/tmp and /usr/local/bin, the rendered /usr/local/sbin, no console to write
# to, and the test double (logging stubs) for mount, umount, mountpoint, exportfs and wall.
# The agents' shared layer is under /usr/lib (the root slot), which cannot be emptied like
# the others while this shell runs from it: an overlay over it takes the script's writes.
INSTALL = """\
set -e
ip link set lo up
mount -t tmpfs t "$W/etc" && cp -a /etc/. "$W/etc" && mount --bind "$W/etc" /etc
echo "127.0.0.1 github.com" >/etc/hosts
mkdir -p /etc/scooby && echo "K3S_MODE=$MODE" >/etc/scooby/release
for d in /var/lib /var/tmp /usr/local/bin; do mount -t tmpfs t "$d"; done
mkdir "$W/ul" && mount -t tmpfs t "$W/ul" && mkdir "$W/ul/upper" "$W/ul/work"
mount -t overlay t -o "lowerdir=$UNDER,upperdir=$W/ul/upper,workdir=$W/ul/work" "$UNDER"
mount --bind "$SBIN" /usr/local/sbin
: >"$W/active" && mount --bind "$W/active" /sys/class/tty/console/active
python3 "$W/server.py" "$W/www" "$W/cert.pem" "$W/key.pem" >"$W/server.out" 2>&1 &
server=$!
for i in $(seq 50); do grep -q ready "$W/server.out" && break; sleep 0.1; done
set +e
CURL_CA_BUNDLE="$W/cert.pem" PATH="$W/stubs:$PATH" /usr/local/sbin/scooby-k3s-install
code=$?
kill $server
for f in /usr/local/bin/k3s "$SHARED/usr/local/bin/k3s" \
    /var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst \
    "$SHARED/usr/local/share/scooby/k3s-airgap-images-arm64.tar.zst"; do
    [ -f "$f" ] && echo "FILE $f $(stat -c %a "$f") $(sha256sum <"$f" | cut -d' ' -f1)"
done
exit $code
"""


def _first_boot_install(tmp: Path, mode: str, sha: str, served: bytes = FAKE_K3S):
    import hashlib

    sums = {"k3s": sha, "airgap": hashlib.sha256(FAKE_AIRGAP).hexdigest()}
    config = (
        f"LC_K3S_VERSION=v1.31.4+k3s1\nLC_K3S_SHA256={sums['k3s']}\n"
        f"LC_K3S_AIRGAP_SHA256={sums['airgap']}\n"
    )
    repo = write_repo(tmp / "repo", {"config": config, "agents/willow.agent": XANDER})
    rendered = render(load_or_raise(repo, environ={}), tmp / "out").out
    w = tmp / "w"
    release = w / "www/k3s-io/k3s/releases/download/v1.31.4+k3s1"
    release.mkdir(parents=True)
    (release / "k3s-arm64").write_bytes(served)
    (release / "k3s-airgap-images-arm64.tar.zst").write_bytes(FAKE_AIRGAP)
    (w / "etc").mkdir()
    (w / "server.py").write_text(SERVER)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=github.com",
         "-addext", "subjectAltName=DNS:github.com",
         "-keyout", str(w / "key.pem"), "-out", str(w / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    stubs = w / "stubs"
    stubs.mkdir()
    for name in ("mount", "umount", "mountpoint", "exportfs", "wall"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >>{w}/calls.log\n')
        (stubs / name).chmod(0o755)
    run = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", INSTALL],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "W": str(w),
            "MODE": mode,
            "SBIN": str(rendered / "master/usr/local/sbin"),
            "SHARED": layout.AGENT_SHARED,
            "UNDER": str(Path(layout.AGENT_SHARED).parents[1]),  # /usr/lib: it exists here
        },
    )
    log = w / "calls.log"
    return run, log.read_text().splitlines() if log.exists() else []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and network namespaces")
def test_first_boot_install_downloads_verifies_and_installs(tmp_path):
    import hashlib

    sha = hashlib.sha256(FAKE_K3S).hexdigest()
    run, calls = _first_boot_install(tmp_path, "first-boot", sha)
    assert run.returncode == 0, run.stdout + run.stderr
    files = {
        line.split()[1]: line.split()[2:]
        for line in run.stdout.splitlines()
        if line.startswith("FILE ")
    }
    airgap = hashlib.sha256(FAKE_AIRGAP).hexdigest()
    assert files == {
        layout.K3S_BINARY: ["755", sha],
        layout.AGENT_SHARED + layout.K3S_BINARY: ["755", sha],
        f"{layout.K3S_AIRGAP_DIR}/k3s-airgap-images-arm64.tar.zst": ["644", airgap],
        layout.AGENT_SHARED + layout.K3S_AIRGAP_SHARED: ["644", airgap],
    }
    # Loud: on the console (here: the journal's stdout) and to everyone logged in.
    assert "SCOOBY WARNING: this image has no K3S (K3S_MODE=first-boot)" in run.stdout
    assert "wall " in calls
    # The agents' roots are mounted again so they see the new shared layer.
    assert f"mount {layout.AGENT_MOUNTS}/willow" in calls


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and network namespaces")
def test_first_boot_install_refuses_a_download_that_does_not_match(tmp_path):
    import hashlib

    sha = hashlib.sha256(FAKE_K3S).hexdigest()
    run, _ = _first_boot_install(tmp_path, "first-boot", sha, served=b"#!/bin/sh\nevil\n")
    assert run.returncode == 1
    assert "does not match its pinned sha256" in run.stdout
    assert "FILE " not in run.stdout  # nothing installed


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and network namespaces")
def test_first_boot_install_needs_a_pinned_sha256(tmp_path):
    run, _ = _first_boot_install(tmp_path, "first-boot", "")
    assert run.returncode == 1
    assert "config has no LC_K3S_SHA256" in run.stdout and "FILE " not in run.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and network namespaces")
@pytest.mark.parametrize("mode", ["embedded", "none"])
def test_first_boot_install_does_nothing_in_other_modes(tmp_path, mode):
    run, calls = _first_boot_install(tmp_path, mode, "0" * 64)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and calls == []


# --- the banners, run for real (no console to write to; `wall` and systemctl are doubles) -

BANNER = """\
set -e
: >"$W/active" && mount --bind "$W/active" /sys/class/tty/console/active
mount -t tmpfs t /usr/local/bin
if [ "$K3S" = yes ]; then printf '#!/bin/sh\\n' >/usr/local/bin/k3s; chmod +x /usr/local/bin/k3s; fi
mount --bind "$SBIN" /usr/local/sbin
PATH="$W/stubs:$PATH" "/usr/local/sbin/$1"
"""


def _banner(tmp: Path, sbin: Path, script: str, k3s: bool, active: int = 0) -> list[str]:
    """The test double: `systemctl is-active` answers `active`; `wall` logs what it got."""
    w = tmp / "w"
    stubs = w / "stubs"
    stubs.mkdir(parents=True)
    (stubs / "systemctl").write_text(f"#!/bin/sh\nexit {active}\n")
    (stubs / "wall").write_text(f"#!/bin/sh\nsed 's/^/WALL /' >>{w}/wall.log\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", BANNER, "sh", script],
        capture_output=True,
        text=True,
        env={**os.environ, "W": str(w), "SBIN": str(sbin), "K3S": "yes" if k3s else "no"},
    )
    assert run.returncode == 0, run.stderr
    wall = (w / "wall.log").read_text().splitlines()
    assert wall == [f"WALL {run.stdout.strip()}"]  # the same line to everyone logged in
    return run.stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
@pytest.mark.parametrize(
    "k3s, active, line",
    [
        (True, 0, "BUFFY WILL PATROL TONIGHT"),
        (False, 0, "BUFFY WILL PATROL TONIGHT (without K3S)"),
        (True, 3, "BUFFY WILL PATROL TONIGHT (K3S FAILED: see journalctl -u k3s)"),
    ],
)
def test_master_banner(out, tmp_path, k3s, active, line):
    sbin = out / "master/usr/local/sbin"
    assert _banner(tmp_path, sbin, "scooby-ready", k3s, active) == [line]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
@pytest.mark.parametrize(
    "k3s, line", [(True, "XANDER IS ONLINE"), (False, "XANDER IS ONLINE (without K3S)")]
)
def test_agent_banner(out, tmp_path, k3s, line):
    sbin = out / "agents/xander/usr/local/sbin"
    assert _banner(tmp_path, sbin, "scooby-online", k3s) == [line]
