"""`scooby test-qemu` on a freshly built default image, and on a deliberately broken copy.

One session fixture builds the default image (`scooby build --k3s=none`) for a test
repository with one agent under build/test-qemu-repo/, its LC_SSH_AUTH_KEY a key pair made
here with ssh-keygen; the repository's .cache is the checkout's, so the base stages are built
once and reruns only render, assemble and pack. Each test boots the master and network-boots
the agent under TCG (minutes each): the real dnsmasq, TFTP, NFS, OverlayFS, lighttpd seed
and cloud-init, nothing stood in for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

from scooby.core import layout
from scooby.util import diskimage

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the test's network need root"),
]

AGENT = (
    "AGENT_ETHERNET=b8:27:eb:81:1a:52\nAGENT_IP=192.168.64.65\n"
    "AGENT_RANCHER_PART_UUID=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1\n"
    "AGENT_PXE_ID=c6811a52\nAGENT_K3S_ARGS=\n"
)
NO_K3S = ("k3s-nodes", "k3s-manifest")
# The agent's phases that need its boot ROM's lease (a broken master runs none of them).
AFTER_BOOTROM = (
    "agent-banner",
    "agent-root",
    "agent-late-disk",
    "agent-write",
    "agent-reset",
    "agent-reboot",
)
ALL_PHASES = (
    "prepare",
    "master-banner",
    "master-ssh",
    "master-services",
    "master-exports",
    "master-data",
    "master-nat",
    "external-isolation",
    "agent-bootrom",
    *AFTER_BOOTROM,
    *NO_K3S,
    "master-reboot",
)


@dataclass
class Built:
    repo: Path
    image: Path
    key: Path


def make_repo(repo: Path, key: Path) -> Path:
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "agents").mkdir(parents=True)
    (repo / "config").write_text("")  # every default: hostname buffy, 192.168.64.0/24 inside
    (repo / "agents" / "willow.agent").write_text(AGENT)
    public = key.with_suffix(".pub").read_text().strip()
    (repo / ".env").write_text(f'LC_DEFAULT_USER=spike\nLC_SSH_AUTH_KEY="{public}"\n')
    (ROOT / ".cache").mkdir(exist_ok=True)
    (repo / ".cache").symlink_to(ROOT / ".cache")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def build_repo() -> Built:
    """The test repository and its freshly built default image (cached base stages)."""
    top = ROOT / "build" / "test-qemu-repo"
    key = top / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-qemu", "-f", str(key)],
            check=True,
        )
    repo = make_repo(top / "repo", key)
    done = subprocess.run(
        ["scooby", "build", "--repo", str(repo), "--k3s=none"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Built(repo, repo / "images" / "scooby.img", key)


@pytest.fixture(scope="session")
def built() -> Built:
    return build_repo()


def run_test_qemu(built: Built, image: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `scooby test-qemu`; its result and OUT/phases.json. Cleaned up after it or not."""
    proc = start_test_qemu(built, image, out)
    stdout, stderr = proc.communicate(timeout=3600)
    assert_cleaned_up(proc.pid, out)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done, json.loads((out / "phases.json").read_text())


def start_test_qemu(built: Built, image: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["scooby", "test-qemu", "--repo", str(built.repo), "--image", str(image)]
        + ["--identity", str(built.key), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses(report: dict) -> dict[str, tuple[str, str]]:
    return {p["name"]: (p["status"], p["detail"]) for p in report["phases"]}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def in_our_root(pid: str) -> bool:
    """Whether process `pid` sees the same `/` as this test.

    Two CI runs side by side each chroot into their own fresh root but share one PID namespace,
    and their temporary paths are the same string; a QEMU of the other run is not ours."""
    try:
        theirs = os.stat(f"/proc/{pid}/root")
    except OSError:  # gone meanwhile, or not ours to look at
        return False
    ours = os.stat("/")
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def assert_cleaned_up(pid: int, out: Path) -> None:
    """No QEMU process (its console is under `out`) and no namespace of the run `pid` is left."""
    qemus = subprocess.run(["pgrep", "-af", f"path={out}/"], capture_output=True, text=True)
    left = [line for line in qemus.stdout.splitlines() if in_our_root(line.split()[0])]
    assert not left, left
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"scbq{pid % 100000}-" not in listed, listed


def test_the_default_image_boots_and_netboots_an_agent(built: Built) -> None:
    before = sha256(built.image)
    out = built.repo / "build" / "test-qemu"
    done, report = run_test_qemu(built, built.image, out)
    got = statuses(report)
    assert done.returncode == 0, done.stderr[-6000:]
    assert tuple(got) == ALL_PHASES
    for name in ALL_PHASES:
        if name in NO_K3S:  # this image has no K3S: reported as skipped, never as passed
            assert got[name] == ("SKIPPED", "image built without K3S (K3S_MODE=none)")
        else:
            assert got[name][0] == "passed", (name, got[name])
    assert "BUFFY WILL PATROL TONIGHT (without K3S)" in (out / "master.console.log").read_text()
    assert "WILLOW IS ONLINE (without K3S)" in (out / "willow.console.log").read_text()
    assert "WILLOW IS ONLINE" in (out / "willow.console-2.log").read_text()  # after the reset
    assert "dnsmasq" in (out / "master-journal.txt").read_text()
    # The phase table ends the output and is kept with the evidence.
    assert "scooby test-qemu" in done.stderr and "SKIPPED" in done.stderr
    assert "agent-reboot" in (out / "phases.txt").read_text()
    timings = report["timings"]
    assert timings["qemu_start_to_master_banner"] > 0
    assert timings["qemu_start_to_agent_banner"] > 0
    assert timings["master_reboot_to_banner"] > 0  # the state checked again after a reboot
    assert sha256(built.image) == before  # booted through a copy-on-write overlay only


@contextmanager
def broken_view(image: Path, work: Path, path: str) -> Iterator[Path]:
    """`image` with `path` removed from its root file system, and no second image: a qcow2
    overlay over it takes the few blocks debugfs writes, and qemu-storage-daemon's FUSE
    export shows the overlay as a raw disk file (what test-qemu boots) while the test runs."""
    overlay, view = work / "broken.qcow2", work / "broken.img"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.resolve()), "-F", "raw"]
        + [str(overlay)],
        check=True,
    )
    view.touch()  # a FUSE export's mount point is a file
    daemon = subprocess.Popen(
        ["qemu-storage-daemon", "--blockdev", f"driver=file,node-name=file,filename={overlay}"]
        + ["--blockdev", "driver=qcow2,node-name=disk,file=file", "--export"]
        + [f"type=fuse,id=view,node-name=disk,mountpoint={view},writable=on"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(view):
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.stderr.read()
            time.sleep(0.1)
        start = diskimage.partition(view, layout.ROOT_PARTITION).offset
        subprocess.run(
            ["debugfs", "-w", "-R", f"rm {path}", f"{view}?offset={start}"],
            check=True,
            capture_output=True,
        )
        check = subprocess.run(
            ["debugfs", "-R", f"stat {path}", f"{view}?offset={start}"],
            capture_output=True,
            text=True,
        )
        assert "File not found" in check.stderr, "debugfs did not remove " + path
        yield view
    finally:
        daemon.terminate()  # unmounts the view
        daemon.communicate(timeout=30)


def test_without_its_dnsmasq_config_the_agent_gets_no_dhcp(built: Built, tmp_path: Path) -> None:
    """The master boots and serves SSH, but nothing answers the boot ROM: agent-bootrom fails
    (and the isolation probe finds no TFTP on the internal side), what needs them is not run,
    and the evidence (consoles, journal, table) is kept."""
    before = built.image.stat()
    out = tmp_path / "evidence"
    with broken_view(built.image, tmp_path, "/etc/dnsmasq.d/scooby.conf") as image:
        done, report = run_test_qemu(built, image, out)
    after = built.image.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    got = statuses(report)
    assert done.returncode == 1, done.stderr[-4000:]
    assert got["master-banner"][0] == "passed"
    assert got["agent-bootrom"][0] == "FAILED"
    assert "no DHCP lease for b8:27:eb:81:1a:52" in got["agent-bootrom"][1]
    # TFTP went with the config: the internal side of the isolation probe says so.
    assert got["external-isolation"] == ("FAILED", "udp/69 does not answer on the internal side")
    for name in AFTER_BOOTROM:
        assert got[name][0] == "not run", (name, got[name])
    assert "BUFFY WILL PATROL TONIGHT" in (out / "master.console.log").read_text()
    journal = (out / "master-journal.txt").read_text()
    assert "dnsmasq" in journal and "DHCPOFFER" not in journal
    assert "FAILED" in (out / "phases.txt").read_text()
    assert f"evidence: {out}/" in done.stderr


def test_sigterm_mid_boot_stops_every_vm_and_namespace(built: Built, tmp_path: Path) -> None:
    """Killed while the master boots (as CI's timeout or Ctrl-C would): QEMU and both
    namespaces go, the running phase is reported as interrupted, the console is kept."""
    out = tmp_path / "evidence"
    proc = start_test_qemu(built, built.image, out)
    console = out / "master.console.log"
    deadline = time.monotonic() + 300  # the kernel starts in ~20 s under TCG; bounded under load
    while not (console.exists() and "Linux version" in console.read_text(errors="replace")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    ns = f"scbq{proc.pid % 100000}-net"
    assert ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert_cleaned_up(proc.pid, out)
    got = statuses(json.loads((out / "phases.json").read_text()))
    assert got["master-banner"] == ("FAILED", "interrupted (SIGTERM)")
    assert "Linux version" in console.read_text(errors="replace")


# The packages whose fixes matter most on a master that is the cluster's Internet gateway
# (libssl3 on bookworm, libssl3t64 on trixie).
SECURITY_PACKAGES = {"linux-image-arm64", "openssl", "libssl3", "libssl3t64"}


def newest(versions: list[str]) -> str:
    """The highest Debian version, by dpkg's own ordering."""
    best = versions[0]
    for version in versions[1:]:
        newer = subprocess.run(["dpkg", "--compare-versions", version, "gt", best], check=False)
        best = version if newer.returncode == 0 else best
    return best


def test_the_image_has_the_kernel_and_openssl_of_the_security_pocket(built: Built) -> None:
    """The image's kernel and openssl are the newest its own apt sources offer now: read from
    the Packages indices of the mirrors the build used (the image's /etc/apt/sources.list),
    the suite, SUITE-updates and SUITE-security. Nothing but Debian's archive is contacted."""
    from scooby.build import archive
    from scooby.load import schema
    from scooby.release.imageinfo import image_release, read_image_file

    suite = schema.properties("config")["LC_DEBIAN_SUITE"]["default"]
    sources = read_image_file(built.image, "/etc/apt/sources.list").splitlines()
    lines = [line for line in sources if line.startswith("deb ")]
    assert [line.split()[2] for line in lines] == [suite, f"{suite}-updates", f"{suite}-security"]
    offered: dict[str, list[str]] = {}
    try:
        for line in lines:
            index = archive.packages_index(line)
            for name, found in archive.versions(index, SECURITY_PACKAGES).items():
                offered.setdefault(name, []).extend(found)
    except OSError as problem:
        pytest.skip(f"Debian's archive is unreachable, so the pockets can't be compared: {problem}")
    status = read_image_file(built.image, "/var/lib/dpkg/status")
    installed = {n: v[0] for n, v in archive.versions(status, SECURITY_PACKAGES).items()}
    assert "linux-image-arm64" in installed and "openssl" in installed, installed
    for name, version in installed.items():
        assert version == newest(offered[name]), (name, version, sorted(offered[name]))
    # /etc/scooby/release names the state of each pocket the image was built from.
    recorded = image_release(built.image)["ARCHIVE"].split(",")
    assert sorted(entry.split("@")[0] for entry in recorded) == sorted(
        line.split()[2] for line in lines
    )
