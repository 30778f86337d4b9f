"""A Pi boot ROM against the real dnsmasq and lighttpd, on a network of the test's own.

Two network namespaces joined by a veth pair: "master" holds the master's internal device
(eth1, 192.168.64.1/24) and runs dnsmasq and lighttpd with the configuration `scooby render`
wrote for the example cluster (its on-master paths moved under a temporary root); "pi" holds
the agent's eth0, from which this test plays the boot ROM: DHCP with the Pi's PXE vendor
class over a raw socket, then TFTP and HTTP. No packet leaves the two namespaces, and both
are deleted (with every daemon killed) even when a step fails.

Firmware files are placeholders here (real ones come with the build). The kernel's NFS server
cannot run on this machine (its kernel is built without CONFIG_NFSD and cannot load modules),
so the NFS mount of an export is left to the QEMU test; the agent's overlay itself is mounted
from the rendered fstab and reset with the documented recipe below.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT
from nethelpers import dns_lookup

from scooby.build import tftp
from scooby.core import layout
from scooby.core.model import Agent, Cluster
from scooby.render import checks
from scooby.render import renderer as render
from scooby.testqemu import bootrom
from scooby.testqemu.bootrom import ACK, DISCOVER, OFFER, REQUEST, Reply, inside, pxe_suboptions
from scooby.validate import validator as validate

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

PI_BOOT_MENU = b"Raspberry Pi Boot   "
UNKNOWN_MAC = "02:5c:00:b7:00:01"
# Placeholder boot files: Pi 3 and Pi 4 firmware, kernel, initrd, a DTB and an overlay.
BOOT_FILES = (
    "bootcode.bin",
    "start.elf",
    "fixup.dat",
    "start4.elf",
    "fixup4.dat",
    layout.KERNEL,
    layout.INITRD,
    "bcm2710-rpi-3-b.dtb",
    "bcm2711-rpi-4-b.dtb",
    "overlays/disable-wifi.dtbo",
)

# -- network namespaces ----------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Net:
    master: str  # namespace names
    pi: str
    server: ipaddress.IPv4Address


@contextmanager
def network(cluster: Cluster) -> Iterator[Net]:
    tag = f"scb{os.getpid() % 100000}{random.randrange(1000):03d}"
    net = Net(f"{tag}-master", f"{tag}-pi", cluster.master.internal.ip)
    try:
        _ip("netns", "add", net.master)
        _ip("netns", "add", net.pi)
        dev = cluster.master.internal.device
        _ip("-n", net.master, "link", "add", dev, "type", "veth", "peer", "eth0", "netns", net.pi)
        _ip("-n", net.master, "addr", "add", str(cluster.master.internal.address), "dev", dev)
        for ns, link in ((net.master, dev), (net.master, "lo"), (net.pi, "eth0"), (net.pi, "lo")):
            _ip("-n", ns, "link", "set", link, "up")
        yield net
    finally:
        for ns in (net.pi, net.master):  # deleting a namespace deletes its end of the veth
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# -- the master's daemons, from the rendered tree --------------------------------------


@dataclass
class Master:
    root: Path  # temporary stand-in for the master's /
    out: Path  # the render
    cluster: Cluster


@pytest.fixture(scope="module")
def master() -> Iterator[Master]:
    cluster, diagnostics = validate.validate(EXAMPLE, environ={})
    assert cluster is not None, diagnostics
    # Daemons drop privileges (dnsmasq to `nobody`, lighttpd to `www-data`): the tree must
    # be world-readable, as it is on the master, so it is not under pytest's 0700 tmp_path.
    top = Path(tempfile.mkdtemp(prefix="scooby-live."))
    try:
        top.chmod(0o755)
        out = render.render(cluster, top / "render").out
        root = top / "root"
        shutil.copytree(out / "master", root)
        boot = root / layout.TFTP_BOOT.lstrip("/")
        for n, name in enumerate(BOOT_FILES):
            path = boot / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(random.Random(n).randbytes(3000 + 777 * n))  # several TFTP blocks
        tftp.populate(root / layout.TFTP_ROOT.lstrip("/"), boot, cluster)
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield Master(root, out, cluster)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _rebased(master: Master, rel: str) -> Path:
    """A rendered config with its on-master paths under the temporary root."""
    path = master.root / rel
    paths = (layout.TFTP_ROOT, layout.HTTP_ROOT, "/run", "/var")
    path.write_text(checks.rebase(path.read_text(), master.root, paths))
    return path


@contextmanager
def daemons(master: Master, net: Net) -> Iterator[None]:
    for rel in ("run", "var/lib/misc"):
        (master.root / rel).mkdir(parents=True, exist_ok=True)
    conf_dir = master.root / "etc/dnsmasq.d"
    for conf in sorted(conf_dir.iterdir()):
        _rebased(master, conf.relative_to(master.root).as_posix())
    lighttpd_conf = _rebased(master, "etc/lighttpd/lighttpd.conf")
    logs = master.root.parent / "logs"
    logs.mkdir(exist_ok=True)
    started = []
    try:
        started.append(
            _start(
                net.master,
                logs / "dnsmasq.log",
                "dnsmasq",
                "--keep-in-foreground",
                "--log-facility=-",
                f"--conf-file={os.devnull}",
                f"--conf-dir={conf_dir},.dpkg-dist,.dpkg-old,.dpkg-new",
                f"--pid-file={master.root}/run/dnsmasq.pid",
                f"--dhcp-leasefile={master.root}/var/lib/misc/dnsmasq.leases",
                "--no-hosts",
                f"--addn-hosts={master.root}/etc/hosts",
            )
        )
        started.append(
            _start(net.master, logs / "lighttpd.log", "lighttpd", "-D", "-f", str(lighttpd_conf))
        )
        _wait_for_http(net, started)
        yield
    except BaseException:
        for log in sorted(logs.iterdir()):  # shown by pytest with the failure
            print(f"--- {log.name}\n{log.read_text(errors='replace')}")
        raise
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start(netns: str, log: Path, *cmd: str) -> subprocess.Popen:
    with log.open("w") as f:
        return subprocess.Popen(["ip", "netns", "exec", netns, *cmd], stdout=f, stderr=f)


def _wait_for_http(net: Net, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[4]} exited with {p.returncode}"
        with inside(net.master), socket.socket() as s:
            if s.connect_ex((str(net.server), layout.HTTP_PORT)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("lighttpd did not start listening")


# -- the boot ROM: scooby.bootrom, from the pi namespace's eth0 -------------------------


def dhcp(
    net: Net, mac: str, kind: int, extra: dict[int, bytes] | None = None, wait: float = 5
) -> Reply | None:
    return bootrom.dhcp(net.pi, "eth0", mac, kind, extra, wait)


def tftp_get(net: Net, filename: str, blksize: int | None = None) -> bytes:
    return bootrom.tftp_get(net.pi, net.server, filename, blksize)


# -- HTTP from a given agent address ------------------------------------------------------


def http_get(net: Net, source: str, path: str) -> tuple[int, bytes]:
    with inside(net.pi):
        conn = http.client.HTTPConnection(
            str(net.server), layout.HTTP_PORT, timeout=5, source_address=(source, 0)
        )
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


# -- the tests ------------------------------------------------------------------------------


def _seed(master: Master, agent: Agent) -> Path:
    return master.out / "master" / layout.HTTP_ROOT.lstrip("/") / agent.name


def test_a_pi_boots_from_the_rendered_master(master: Master) -> None:
    cluster = master.cluster
    pi3, pi4 = cluster.agent("willow"), cluster.agent("xander")
    with network(cluster) as net, daemons(master, net):
        for agent in (pi3, pi4):
            # The boot ROM's DISCOVER: the agent's address, the PXE menu, the TFTP server.
            offer = dhcp(net, agent.mac, DISCOVER)
            assert offer is not None, f"no DHCPOFFER for {agent.name}"
            assert (offer.kind, offer.yiaddr) == (OFFER, agent.ip)
            assert offer.options[60] == b"PXEClient"
            pxe = pxe_suboptions(offer.options[43])
            assert PI_BOOT_MENU in pxe[9], pxe  # boot menu, trailing spaces and all
            assert offer.options[66].rstrip(b"\0") == str(net.server).encode()  # TFTP server
            assert offer.siaddr == net.server  # next-server, where the Pi 3 ROM looks
            assert offer.options[54] == net.server.packed
            assert offer.options[3] == net.server.packed  # router
            # A Pi 4 goes on to REQUEST (a Pi 3 skips it); the lease is confirmed.
            ack = dhcp(net, agent.mac, REQUEST, {50: agent.ip.packed, 54: net.server.packed})
            assert ack is not None and (ack.kind, ack.yiaddr) == (ACK, agent.ip)

        # A machine that is not an agent gets nothing at all.
        assert dhcp(net, UNKNOWN_MAC, DISCOVER, wait=3) is None

        # The ROM now has the lease: fetch what a Pi 3 and a Pi 4 fetch.
        prefix = cluster.master.internal.network.prefixlen
        for agent in (pi3, pi4):
            _ip("-n", net.pi, "addr", "add", f"{agent.ip}/{prefix}", "dev", "eth0")
        boot = master.root / layout.TFTP_BOOT.lstrip("/")
        rendered_tftp = master.out / "master" / layout.TFTP_ROOT.lstrip("/")
        assert tftp_get(net, "bootcode.bin") == (boot / "bootcode.bin").read_bytes()
        for agent in (pi3, pi4):
            for name in ("start.elf", "start4.elf", layout.KERNEL, "overlays/disable-wifi.dtbo"):
                got = tftp_get(net, f"{agent.pxe_id}/{name}", blksize=1468)
                assert got == (boot / name).read_bytes(), name
            for name in ("config.txt", "cmdline.txt"):
                want = (rendered_tftp / agent.pxe_id / name).read_bytes()
                assert tftp_get(net, f"{agent.pxe_id}/{name}") == want
        with pytest.raises(FileNotFoundError):
            tftp_get(net, "00000000/start4.elf")

        # The nodes' names, from the rendered /etc/hosts, in the internal domain.
        domain = cluster.master.internal.domain
        server = str(net.server)
        assert dns_lookup(net.pi, server, f"{pi4.name}.{domain}") == [pi4.ip]
        assert dns_lookup(net.pi, server, f"{cluster.master.hostname}.{domain}") == [net.server]

        # Each agent's cloud-init seed, to that agent's address only.
        for agent, other in ((pi3, pi4), (pi4, pi3)):
            for name in ("user-data", "meta-data", "vendor-data", "network-config"):
                status, body = http_get(net, str(agent.ip), f"/{agent.name}/{name}")
                assert (status, body) == (200, (_seed(master, agent) / name).read_bytes())
                status, _ = http_get(net, str(other.ip), f"/{agent.name}/{name}")
                assert status == 403, f"{other.name} read {agent.name}'s {name}"
            # Nor by a path that only normalises to the other agent's seed.
            for sneaky in (
                f"/{agent.name}/../{other.name}/user-data",
                f"/%{ord(other.name[0]):x}{other.name[1:]}/user-data",
            ):
                assert http_get(net, str(agent.ip), sneaky)[0] == 403, sneaky
        assert http_get(net, str(pi3.ip), "/")[0] == 403  # no listing, nothing outside a seed


def _fstab_line(master: Master, mount_point: str) -> list[str]:
    for line in (master.out / "master/etc/fstab").read_text().splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[1] == mount_point:
            return fields
    raise AssertionError(f"{mount_point} is not in the rendered fstab")


@pytest.mark.parametrize("base", ["squashfs", "directory"])
def test_an_agent_overlay_mounts_from_fstab_and_resets(
    master: Master, tmp_path: Path, base: str
) -> None:
    """The rendered fstab's base and overlay lines, mounted by mount(8) under a temp root.

    The temp root is an ext4 file system of its own, as the master's root is (this host's root
    has a null UUID, which makes OverlayFS turn index and nfs_export off). The base is a
    squashfs image as on the master, or a plain directory; either way the three layers show
    through, index=on,nfs_export=on take effect, and the documented reset recipe works.
    """
    agent = master.cluster.agent("willow")
    # A short root: pytest's tmp_path is deep, and the fstab's lowerdir (three paths under
    # the root) must stay within the 256 bytes the kernel's fsconfig takes for a string
    # (util-linux >= 2.39 mounts through fsconfig). The master's own paths are checked by
    # test_overlay_lowerdir_fits_fsconfig below.
    root = Path(tempfile.mkdtemp(prefix="scooby-ovl-")) / "root"
    root.mkdir()
    image = tmp_path / "root.ext4"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-U", str(uuid.uuid4()), str(image)], check=True)
    under = lambda p: root / p.lstrip("/")  # noqa: E731
    merged = under(layout.AGENT_MOUNTS) / agent.name
    upper = under(layout.AGENT_UPPERS) / agent.name
    mounted = [root]
    subprocess.run(["mount", "-o", "loop", str(image), str(root)], check=True)
    try:
        paths = (
            layout.AGENT_BASE_IMAGE,
            layout.AGENT_BASE,
            layout.AGENT_LAYERS,
            layout.AGENT_SHARED,
            layout.AGENT_UPPERS,
            layout.AGENT_WORKDIRS,
            layout.AGENT_MOUNTS,
        )
        lines = [_fstab_line(master, f"{layout.AGENT_MOUNTS}/{agent.name}")]
        base_tree = under(layout.AGENT_BASE)
        if base == "squashfs":
            lines.insert(0, _fstab_line(master, layout.AGENT_BASE))
            base_tree = tmp_path / "base-tree"
        (base_tree / "etc").mkdir(parents=True)
        (base_tree / "etc/os-release").write_text("base\n")
        (base_tree / "etc/hostname").write_text("base\n")
        if base == "squashfs":
            under(layout.AGENT_BASE_IMAGE).parent.mkdir(parents=True, exist_ok=True)
            squashfs = ["mksquashfs", str(base_tree), str(under(layout.AGENT_BASE_IMAGE))]
            subprocess.run([*squashfs, "-quiet", "-noappend"], check=True, capture_output=True)
            under(layout.AGENT_BASE).mkdir(parents=True)
            mounted.insert(0, under(layout.AGENT_BASE))
        fstab = root / "etc/fstab"
        fstab.parent.mkdir(parents=True)
        fstab.write_text(checks.rebase("".join("\t".join(f) + "\n" for f in lines), root, paths))
        layer = under(layout.AGENT_LAYERS) / agent.name
        shutil.copytree(master.out / "agents" / agent.name, layer)
        (under(layout.AGENT_SHARED) / "usr/local/bin").mkdir(parents=True)
        (under(layout.AGENT_SHARED) / "usr/local/bin/k3s").write_text("placeholder\n")
        for p in (layout.AGENT_UPPERS, layout.AGENT_WORKDIRS, layout.AGENT_MOUNTS):
            (under(p) / agent.name).mkdir(parents=True)
        mounted.insert(0, merged)

        def mount_all() -> None:  # the recipe's `mount -a`, against this fstab
            run = subprocess.run(
                ["mount", "--fstab", str(fstab), "-a"], capture_output=True, text=True
            )
            assert run.returncode == 0, f"mount -a: {run.stderr}\n{fstab.read_text()}"

        mount_all()
        assert (merged / "etc/hostname").read_text() == f"{agent.name}\n"  # the private layer
        assert (merged / "etc/os-release").read_text() == "base\n"  # the base
        assert (merged / "usr/local/bin/k3s").exists()  # the shared layer
        options = _mount_options(merged)
        assert {"index=on", "nfs_export=on"} <= options, options  # NFS-exportable
        (merged / "etc/written").write_text("agent wrote this\n")
        assert (upper / "etc/written").exists()
        # The original's reset recipe: unmount, empty upper and work dirs, mount -a.
        subprocess.run(["umount", str(merged)], check=True)
        for d in (upper, under(layout.AGENT_WORKDIRS) / agent.name):
            for child in d.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        mount_all()
        assert not (merged / "etc/written").exists()
        assert (merged / "etc/hostname").read_text() == f"{agent.name}\n"
    finally:
        for m in mounted:
            subprocess.run(["umount", "--lazy", str(m)], capture_output=True)
        shutil.rmtree(root.parent)  # after the lazy unmounts: nothing mounted is crossed


def test_overlay_lowerdir_fits_fsconfig() -> None:
    """The master's fstab line for an agent with the longest name a hostname can have: its
    lowerdir value fits the 256 bytes (with the NUL) that the kernel's fsconfig(2) takes for
    a string (fs/fsopen.c: strndup_user(value, 256)). util-linux >= 2.39 (Debian 13, the
    master's base) mounts through fsconfig; longer, and the overlay fails to mount."""
    name = "a" * 63
    lowerdir = f"{layout.AGENT_LAYERS}/{name}:{layout.AGENT_SHARED}:{layout.AGENT_BASE}"
    fstab = (ROOT / "templates/master/etc/fstab.j2").read_text()
    template = (
        "{{ layout.AGENT_LAYERS }}/{{ agent.name }}:{{ layout.AGENT_SHARED }}:"
        "{{ layout.AGENT_BASE }},"
    )
    assert f"lowerdir={template}" in fstab  # the line this test measures
    assert len(lowerdir) <= 255, len(lowerdir)


def _mount_options(mount_point: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mount_point):
            return set(fields[-1].split(","))
    raise AssertionError(f"{mount_point} is not mounted")


def test_the_network_is_removed_even_when_a_step_fails(master: Master) -> None:
    with pytest.raises(RuntimeError), network(master.cluster) as net:
        names = (net.master, net.pi)
        raise RuntimeError("a failing step")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)
