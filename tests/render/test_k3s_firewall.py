"""The master's firewall holds with K3S's own rules loaded (issue: "K3S on a real cluster").

K3S cannot run here, so this builds the cluster's network in network namespaces and loads,
beside Scooby's rendered rules, the rules K3S's components install on a node, in the shape
and order they install them: flannel's FLANNEL-FWD and FLANNEL-POSTRTG (appended, as
flannel's pkg/trafficmngr/iptables does) and kube-proxy's KUBE-FORWARD, KUBE-SERVICES,
KUBE-NODEPORTS and KUBE-POSTROUTING (their jumps inserted first, as kube-proxy does).
Then it tries connections as the external network, an agent host, and pods would.

Stand-ins, named as such: a veth pair named `flannel.1` for flannel's VXLAN device (this
kernel has no vxlan module), a veth end named `cni0` for the bridge, a neighbour entry for
MetalLB's ARP answer, and plain TCP listeners for NFS, rpcbind, mountd, the kubelet, the API
and the pods' servers (the firewall decides on addresses and ports, not on what answers).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, write_repo

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-restore") is None,
    reason="needs root and iptables for network namespaces",
)

P = f"scooby-k3sfw-{os.getpid()}"
NAMESPACES = ("ext", "master", "agent", "pod1", "pod0")
EXT, MASTER_EXT, MASTER_INT, AGENT = "192.168.1.50", "192.168.1.64", "192.168.64.1", "192.168.64.10"
POD1, POD0, LB = "10.42.1.5", "10.42.0.5", "192.168.1.100"  # LB: in the example's MetalLB pool

# K3S's rules on a node, in the order K3S's components install them ({lease}: the node's pod
# subnet). Shapes from flannel's iptables.go and kube-proxy's iptables proxier.
K3S_RULES = """*filter
:FLANNEL-FWD - [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:FLANNEL-POSTRTG - [0:0]
-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.43.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {pod1}:80
-A KUBE-SERVICES -d {lb}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d {lb}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {pod1}:80
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 25565 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m tcp --dport 25565 -j DNAT --to-destination {pod1}:25565
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j DNAT --to-destination {pod1}:80
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN
-A FLANNEL-POSTRTG -s {lease} -d 10.42.0.0/16 -j RETURN
-A FLANNEL-POSTRTG -s 10.42.0.0/16 -d {lease} -j RETURN
-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d {lease} -j RETURN
-A FLANNEL-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.42.0.0/16 -d 10.42.0.0/16 -j MASQUERADE --random-fully
COMMIT
"""


def sh(*cmd: str, ns: str | None = None, stdin: str | None = None) -> str:
    full = (["ip", "netns", "exec", f"{P}-{ns}"] if ns else []) + list(cmd)
    run = subprocess.run(full, capture_output=True, text=True, input=stdin)
    assert run.returncode == 0, f"{' '.join(full)}: {run.stderr}"
    return run.stdout


def _veth(a: str, a_name: str, b: str, b_name: str) -> None:
    sh("ip", "link", "add", "scooby-a", "netns", f"{P}-{a}", "type", "veth", "peer", "name",
       "scooby-b", "netns", f"{P}-{b}")  # fmt: skip
    for ns, old, new in ((a, "scooby-a", a_name), (b, "scooby-b", b_name)):
        sh("ip", "link", "set", old, "name", new, ns=ns)
        sh("ip", "link", "set", new, "up", ns=ns)


def _topology() -> None:
    for ns in NAMESPACES:
        sh("ip", "netns", "add", f"{P}-{ns}")
        sh("ip", "link", "set", "lo", "up", ns=ns)
    _veth("ext", "eth0", "master", "eth0")
    _veth("master", "eth1", "agent", "eth0")
    _veth("master", "cni0", "pod0", "eth0")  # stand-in for the master's cni0 bridge
    _veth("agent", "cni0", "pod1", "eth0")  # stand-in for the agent's cni0 bridge
    _veth("master", "flannel.1", "agent", "flannel.1")  # stand-in for flannel's VXLAN device
    for ns, dev, cidr in (
        ("ext", "eth0", f"{EXT}/24"),
        ("master", "eth0", f"{MASTER_EXT}/24"),
        ("master", "eth1", f"{MASTER_INT}/24"),
        ("master", "cni0", "10.42.0.1/24"),
        ("master", "flannel.1", "10.42.0.0/32"),
        ("agent", "eth0", f"{AGENT}/24"),
        ("agent", "cni0", "10.42.1.1/24"),
        ("agent", "flannel.1", "10.42.1.0/32"),
        ("pod1", "eth0", f"{POD1}/24"),
        ("pod0", "eth0", f"{POD0}/24"),
    ):
        sh("ip", "addr", "add", cidr, "dev", dev, ns=ns)
    # An outsider who routes the pod and service networks through the master.
    for net in ("10.42.0.0/16", "10.43.0.0/16"):
        sh("ip", "route", "add", net, "via", MASTER_EXT, ns="ext")
    sh("ip", "route", "add", "10.42.1.0/24", "via", "10.42.1.0", "dev", "flannel.1", "onlink",
       ns="master")  # fmt: skip
    sh("ip", "route", "add", "10.42.0.0/24", "via", "10.42.0.0", "dev", "flannel.1", "onlink",
       ns="agent")  # fmt: skip
    sh("ip", "route", "add", "default", "via", MASTER_INT, ns="agent")
    sh("ip", "route", "add", "default", "via", "10.42.1.1", ns="pod1")
    sh("ip", "route", "add", "default", "via", "10.42.0.1", ns="pod0")
    for ns in ("master", "agent"):
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
    # Stand-in for MetalLB's ARP answer for a pool address on the master's external side.
    mac = sh("cat", "/sys/class/net/eth0/address", ns="master").strip()
    sh("ip", "neigh", "add", LB, "lladdr", mac, "dev", "eth0", ns="ext")


def _teardown() -> None:
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "del", f"{P}-{ns}"], capture_output=True)


class Listeners:
    """TCP listeners inside a namespace; records who connected (address, port)."""

    def __init__(self, ns: str, ports: list[int]):
        from scooby.testqemu.bootrom import inside

        self.peers: dict[int, list[tuple[str, int]]] = {p: [] for p in ports}
        self.socks = []
        with inside(f"{P}-{ns}"):
            for port in ports:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
                s.listen(16)
                self.socks.append(s)
        for s in self.socks:
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        port = s.getsockname()[1]
        while True:
            try:
                conn, peer = s.accept()
            except OSError:
                return
            self.peers[port].append(peer)
            conn.close()

    def last_peer(self, port: int) -> tuple[str, int]:
        """Who connected last to `port` (the accepting thread records it just after)."""
        for _ in range(50):
            if self.peers[port]:
                return self.peers[port][-1]
            time.sleep(0.05)
        raise AssertionError(f"nobody connected to {port}")

    def close(self) -> None:
        for s in self.socks:
            s.close()


def reach(ns: str, host: str, port: int, source_port: int = 0) -> bool:
    from scooby.testqemu.bootrom import inside

    with inside(f"{P}-{ns}"), socket.socket() as s:
        s.settimeout(1.5)
        if source_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", source_port))
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def _rendered(tmp: Path) -> Path:
    from scooby.load.reader import load_or_raise
    from scooby.render.renderer import render

    repo = tmp / "repo"
    shutil.copytree(ROOT / "tests/data/example-repo", repo)
    write_repo(repo, {"config": 'LC_EXTERNAL_OPEN_PORTS="25565/tcp"\n'})
    return render(load_or_raise(repo, environ={}), tmp / "out").out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The namespaces with Scooby's rules and K3S's loaded; yields the listeners."""
    out = _rendered(tmp_path_factory.mktemp("k3sfw"))
    _teardown()
    _topology()
    try:
        sh(
            "iptables-restore",
            ns="master",
            stdin=(out / "master/etc/iptables/rules.v4").read_text(),
        )
        guard = out / "agents/willow/usr/local/sbin/scooby-pod-guard"
        sh("sh", str(guard), ns="agent")
        # K3S starts after the host firewall (netfilter-persistent, scooby-pod-guard) and adds
        # its rules on top, as here.
        sh("iptables-restore", "--noflush", ns="master",
           stdin=K3S_RULES.format(lease="10.42.0.0/24", pod1=POD1, lb=LB))  # fmt: skip
        sh("iptables-restore", "--noflush", ns="agent",
           stdin=K3S_RULES.format(lease="10.42.1.0/24", pod1=POD1, lb=LB))  # fmt: skip
        listeners = {
            "master": Listeners("master", [22, 111, 2049, 6443, 10250, 20048]),
            "pod1": Listeners("pod1", [80, 25565]),
            "pod0": Listeners("pod0", [80]),
        }
        yield listeners
        for one in listeners.values():
            one.close()
    finally:
        _teardown()


# (who, to host, port, source port, accepted?)
CASES = {
    "external -> pod IP": ("ext", POD1, 80, 0, False),
    "external -> service IP": ("ext", "10.43.0.10", 80, 0, False),
    "external -> opened NodePort 25565": ("ext", MASTER_EXT, 25565, 0, True),
    "external -> NodePort 30080, not opened": ("ext", MASTER_EXT, 30080, 0, False),
    "external -> LoadBalancer address from the MetalLB pool": ("ext", LB, 80, 0, True),
    "external -> master SSH": ("ext", MASTER_EXT, 22, 0, True),
    "external -> master API": ("ext", MASTER_EXT, 6443, 0, True),
    "external -> master NFS": ("ext", MASTER_EXT, 2049, 0, False),
    "external -> master kubelet": ("ext", MASTER_EXT, 10250, 0, False),
    "agent pod -> master:2049 from port 700": ("pod1", MASTER_INT, 2049, 700, False),
    "agent pod -> master rpcbind": ("pod1", MASTER_INT, 111, 0, False),
    "agent pod -> master mountd (20048)": ("pod1", MASTER_INT, 20048, 0, False),
    "agent pod -> master kubelet": ("pod1", MASTER_INT, 10250, 0, False),
    "agent pod -> master's external address:2049": ("pod1", MASTER_EXT, 2049, 0, False),
    "agent pod -> master over flannel 10.42.0.1:2049": ("pod1", "10.42.0.1", 2049, 0, False),
    "agent pod -> master API": ("pod1", MASTER_INT, 6443, 0, True),
    "agent pod -> a pod on the master": ("pod1", POD0, 80, 0, True),
    "agent host -> master:2049 from port 700": ("agent", MASTER_INT, 2049, 700, True),
    "agent host -> master kubelet": ("agent", MASTER_INT, 10250, 0, True),
    "master pod -> master NFS": ("pod0", "10.42.0.1", 2049, 0, False),
    "master pod -> master kubelet (metrics-server)": ("pod0", "10.42.0.1", 10250, 0, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_firewall_with_k3s_rules_loaded(cluster, case):
    who, host, port, source_port, accepted = CASES[case]
    got = reach(who, host, port, source_port)
    assert got == accepted, f"{case}: {'accepted' if got else 'dropped'}"


def test_agent_host_reaches_nfs_as_itself_from_a_low_port(cluster):
    """What the exports trust (the agent's address, a port below 1024) is what the agent
    host presents; its pods are stopped before they could present the same (above)."""
    cluster["master"].peers[2049].clear()
    assert reach("agent", MASTER_INT, 2049, 700)
    address, port = cluster["master"].last_peer(2049)
    assert address == AGENT and port < 1024


@pytest.fixture
def unguarded(tmp_path):
    """The same network with K3S's rules and no Scooby rules at all: why the guard exists."""
    global P
    saved, P = P, f"{P}-bare"
    _teardown()
    _topology()
    try:
        for ns, lease in (("master", "10.42.0.0/24"), ("agent", "10.42.1.0/24")):
            sh("iptables-restore", "--noflush", ns=ns,
               stdin=K3S_RULES.format(lease=lease, pod1=POD1, lb=LB))  # fmt: skip
        nfs = Listeners("master", [2049])
        yield nfs
        nfs.close()
    finally:
        _teardown()
        P = saved


def test_without_the_guard_a_pod_reaches_nfs_as_its_agent_from_a_low_port(unguarded):
    """Flannel's masquerade makes a pod's NFS request look exactly like its agent's: the
    agent's address, and a source port still below 1024 (the exposure the guard closes)."""
    assert reach("pod1", MASTER_INT, 2049, 700)
    address, port = unguarded.last_peer(2049)
    assert address == AGENT and port < 1024
