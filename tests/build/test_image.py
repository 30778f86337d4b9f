"""The built image, read without mounting: sfdisk -J, mtools (IMG@@OFFSET), debugfs (IMG?offset=).

One session fixture builds the default image (`scooby build --k3s=none`) for a test
repository under build/test-image/; its .cache is the checkout's .cache, so the base stages
are built once and reruns only render, assemble and pack.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT

from scooby.build.rootfs import packages
from scooby.core import layout

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(os.geteuid() != 0, reason="the build needs root"),
]

HOSTNAME = "buffy"
GITHUB_TOKEN = "ghp_scoobyTestTokenMustNeverShip0123456789"
AWS_SECRET = "scooby/test+AWS+secret+must+never+ship+0123"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtestkeyfortheimagetest0000000000000000 test@x"
FIRMWARE = ("bootcode.bin", "start4.elf", "fixup4.dat", "start.elf", "fixup.dat")
# The supported models' mainline trees (upstream_kernel=1): boot partition and TFTP.
PI_DTBS = (
    "bcm2837-rpi-3-b.dtb",
    "bcm2837-rpi-3-b-plus.dtb",
    "bcm2711-rpi-4-b.dtb",
    "bcm2711-rpi-400.dtb",
    "bcm2711-rpi-cm4-io.dtb",
)
# What each supported model needs on the way to its root (templates/base/initramfs-tools):
# the Pi 4's SD supplies, the SD hosts, USB mass storage, the built-in Ethernet and its PHYs,
# the agents' NFS root, OverlayFS and squashfs, and QEMU's virtio.
MODULES = (
    "fixed", "gpio-regulator", "sdhci-iproc", "bcm2835",
    "sd_mod", "usb-storage", "uas", "dwc2", "phy-generic", "xhci-pci", "reset-raspberrypi",
    "genet", "mdio-bcm-unimac", "broadcom", "smsc95xx", "smsc", "lan78xx", "microchip",
    "ext4", "nfs", "overlay", "squashfs", "virtio_net", "virtio_blk",
)  # fmt: skip
AGENTS = {
    "willow": (
        "b8:27:eb:81:1a:52",
        "192.168.64.65",
        "c6811a52",
        "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1",
    ),
    "xander": (
        "dc:a6:32:00:00:07",
        "192.168.64.66",
        "dca63207",
        "0e6b1f0a-52a4-4c4e-9a35-1f6f7d1c2b3e",
    ),
}


def agent_file(mac: str, ip: str, pxe: str, rancher: str) -> str:
    return (
        f"AGENT_ETHERNET={mac}\nAGENT_IP={ip}\n"
        f"AGENT_RANCHER_PART_UUID={rancher}\n"
        f"AGENT_PXE_ID={pxe}\nAGENT_K3S_ARGS=\n"
    )


def make_repo(repo: Path) -> Path:
    for name in ("config", "agents", "server", ".env", "build/render"):
        path = repo / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (repo / "agents").mkdir(parents=True)
    (repo / "config").write_text(f"LC_HOSTNAME={HOSTNAME}\n")
    (repo / ".env").write_text(
        f"LC_DEFAULT_USER=spike\nLC_SSH_AUTH_KEY={SSH_KEY}\n"
        f"LC_PACKER_GITHUB_API_TOKEN={GITHUB_TOKEN}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
    )
    for name, fields in AGENTS.items():
        (repo / "agents" / f"{name}.agent").write_text(agent_file(*fields))
    motd = repo / "server" / "etc" / "motd"
    motd.parent.mkdir(parents=True)
    motd.write_text("Welcome to Sunnydale\n")
    # The repository's own .cache is the checkout's: base stages are shared and kept.
    cache = repo / ".cache"
    if not cache.exists():
        (ROOT / ".cache").mkdir(exist_ok=True)
        cache.symlink_to(ROOT / ".cache")
    return repo


class Image:
    def __init__(self, path: Path):
        self.path = path
        table = json.loads(subprocess.check_output(["sfdisk", "-J", str(path)]))
        self.table = table["partitiontable"]
        parts = self.table["partitions"]
        self.boot_offset = parts[layout.BOOT_PARTITION - 1]["start"] * 512
        self.root_offset = parts[layout.ROOT_PARTITION - 1]["start"] * 512
        self.data_offset = parts[layout.DATA_PARTITION - 1]["start"] * 512

    def where(self, path: str) -> tuple[int, str]:
        """(partition offset, path in its file system) of a path as the booted master sees
        it: a state folder's files are on the data partition, bind-mounted (fstab)."""
        for on_master, name in layout.DATA_BINDS:
            if path == on_master or path.startswith(on_master + "/"):
                return self.data_offset, f"/{name}{path[len(on_master) :]}"
        return self.root_offset, path

    def _debugfs(self, command: str, path: str) -> subprocess.CompletedProcess:
        return self.debugfs_at(*self.where(path), command)

    def debugfs_at(self, offset: int, inner: str, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["debugfs", "-R", f'{command} "{inner}"', f"{self.path}?offset={offset}"],
            capture_output=True,
            check=True,
        )

    def read(self, path: str) -> bytes:
        return self._debugfs("cat", path).stdout

    def stat(self, path: str) -> str:
        return self._debugfs("stat", path).stdout.decode()

    def exists(self, path: str) -> bool:
        return "File not found" not in self._debugfs("stat", path).stderr.decode()

    def ls(self, path: str) -> dict[str, int]:
        """name -> mode of each entry of a directory (`ls -p`)."""
        return self.ls_at(*self.where(path))

    def ls_at(self, offset: int, inner: str) -> dict[str, int]:
        out = {}
        for line in self.debugfs_at(offset, inner, "ls -p").stdout.decode().splitlines():
            fields = line.split("/")
            if len(fields) >= 7 and fields[5] not in (".", ".."):
                out[fields[5]] = int(fields[2], 8)
        return out

    def symlink(self, path: str) -> str:
        stat = self.stat(path)
        assert "Type: symlink" in stat, path
        return stat.split('Fast link dest: "', 1)[1].split('"', 1)[0]

    def boot_read(self, name: str) -> bytes:
        return subprocess.run(
            ["mtype", "-i", f"{self.path}@@{self.boot_offset}", f"::{name}"],
            capture_output=True,
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        ).stdout

    def boot_size(self) -> int:
        return self.table["partitions"][layout.BOOT_PARTITION - 1]["size"] * 512

    def boot_files(self) -> set[str]:
        out = subprocess.check_output(
            ["mdir", "-b", "-/", "-i", f"{self.path}@@{self.boot_offset}", "::"],
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
            text=True,
        )
        return {line.removeprefix("::/") for line in out.splitlines()}


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, Image]:
    repo = make_repo(ROOT / "build" / "test-image" / "repo")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = subprocess.run(
        ["scooby", "build", "--repo", str(repo), "--k3s=none"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return repo, Image(repo / "images" / "scooby.img")


@pytest.fixture(scope="session")
def image(built) -> Image:
    return built[1]


@pytest.fixture(scope="session")
def repo(built) -> Path:
    return built[0]


def test_partition_table(image: Image):
    assert image.table["label"] == "dos"
    assert image.table["id"] == f"0x{layout.disk_id(HOSTNAME)}"
    boot, root, slot_b, data = image.table["partitions"]
    assert boot["type"] == "c" and boot.get("bootable") and root["type"] == "83"
    assert slot_b["type"] == data["type"] == "83" and slot_b["size"] == root["size"]
    # What a download and a card write carry: slot B is a hole in the file (never written).
    assert image.path.stat().st_blocks * 512 <= 2 * 2**30
    assert image.path.stat().st_size - slot_b["size"] * 512 <= 2 * 2**30


def test_state_is_on_the_data_partition(image: Image):
    """Each state folder is an empty mount point on the root and its files are on the data
    partition (label scooby-data), which fstab mounts and binds; sshd reads its host keys
    from there."""
    for on_master, name in layout.DATA_BINDS:
        stat = image.debugfs_at(image.data_offset, f"/{name}", "stat").stdout.decode()
        assert "Type: directory" in stat, name  # the state's folder, on p4
        assert image.ls_at(image.root_offset, on_master) == {}, on_master  # a mount point
    assert image.exists(layout.DEPLOY_RECORD)
    # The slot's own copy of the record stays on the root (scooby-slot commit reads it).
    assert image.read(layout.SLOT_RECORD) == image.read(layout.DEPLOY_RECORD)
    # What the agents boot is on the root slot (it comes with the slot), not on p4.
    for path in (layout.AGENT_BASE_IMAGE, layout.AGENT_SHARED, layout.AGENT_BASE):
        assert image.where(path) == (image.root_offset, path) and image.exists(path), path
    stats = subprocess.run(
        ["debugfs", "-R", "stats", f"{image.path}?offset={image.data_offset}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Filesystem volume name:   {layout.DATA_LABEL}" in stats
    fstab = image.read("/etc/fstab").decode()
    data = f"PARTUUID={layout.partuuid(HOSTNAME, layout.DATA_PARTITION)}\t{layout.DATA_MOUNT}\t"
    assert data in fstab
    sshd = image.read("/etc/ssh/sshd_config.d/scooby.conf").decode()
    assert f"HostKey {layout.DATA_SSH}/ssh_host_ed25519_key" in sshd


def test_boot_partition(image: Image, repo: Path):
    files = image.boot_files()
    for name in FIRMWARE + (layout.KERNEL, layout.INITRD, "bcm2711-rpi-4-b.dtb"):
        assert name in files, name
    for rendered in sorted((repo / "build" / "render" / "boot").rglob("*")):
        if rendered.is_file():
            rel = rendered.relative_to(repo / "build" / "render" / "boot").as_posix()
            assert image.boot_read(rel) == rendered.read_bytes(), rel
    assert len(image.boot_read(layout.KERNEL)) > 10_000_000


def test_cmdline_root_is_this_image(image: Image):
    cmdline = image.boot_read("cmdline.txt").decode()
    assert f"root=PARTUUID={layout.partuuid(HOSTNAME, layout.ROOT_PARTITION)}" in cmdline


def test_every_rendered_master_file_in_place(image: Image, repo: Path):
    master = repo / "build" / "render" / "master"
    checked = 0
    for path in sorted(master.rglob("*")):
        on_master = "/" + path.relative_to(master).as_posix()
        if path.is_symlink():
            assert image.symlink(on_master) == os.readlink(path), on_master
        elif path.is_file():
            assert image.read(on_master) == path.read_bytes(), on_master
            mode = int(image.stat(on_master).split("Mode:", 1)[1].split()[0], 8)
            assert mode & 0o777 == path.stat().st_mode & 0o777, on_master
            checked += 1
    assert checked > 10
    assert image.read("/etc/motd") == b"Welcome to Sunnydale\n"  # the user's server/ tree


def test_root_ownership_and_setuid(image: Image):
    assert "Mode:  04755" in image.stat("/usr/bin/sudo")
    assert "User:     0   Group:     0" in image.stat("/usr/bin/sudo")
    assert "User:     0   Group:     0" in image.stat("/etc/fstab")


def test_packages_installed(image: Image):
    status = image.read("/var/lib/dpkg/status").decode()
    installed = {
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    }
    # The master root is the agents' base plus the master's packages, except where a master
    # package replaces an agent one: chrony (the master serves NTP) Conflicts with the agents'
    # systemd-timesyncd, which stays in the agents' base (test_agent_base_squashfs).
    replaced_on_master = {"systemd-timesyncd"}
    missing = set(packages("agent") + packages("master")) - installed - replaced_on_master
    assert not missing
    assert "chrony" in installed and not replaced_on_master & installed


def initramfs_files(data: bytes) -> list[str]:
    """Every path in an initramfs: cpio archives one after another, each plain (trixie's
    initramfs-tools puts the already-compressed modules in a first, plain one) or zstd."""
    names, pos = [], 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1  # padding between archives
        elif data[pos : pos + 6] == b"070701":  # newc cpio header
            namesize, filesize = (
                int(data[pos + 94 : pos + 102], 16),
                int(data[pos + 54 : pos + 62], 16),
            )
            name = data[pos + 110 : pos + 109 + namesize].decode()
            pos = (pos + 110 + namesize + 3) & ~3
            pos = (pos + filesize + 3) & ~3
            if name != "TRAILER!!!":
                names.append(name)
        else:  # the rest is one compressed archive
            plain = subprocess.run(
                ["zstd", "-dc"], input=data[pos:], capture_output=True, check=True
            )
            return names + initramfs_files(plain.stdout)
    return names


def _module(path: str) -> str:
    """A module's name from its file (fixed.ko.xz -> fixed); '-' and '_' are the same."""
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", Path(path).name).replace("-", "_")


def test_initramfs_has_each_models_root_modules_and_their_dependencies(
    image: Image, tmp_path: Path
):
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(image.boot_read(layout.INITRD))
    listing = initramfs_files(initrd.read_bytes())
    files = [p for p in listing if re.search(r"\.ko(\.\w+)?$", p)]
    inside = {_module(p) for p in files}
    version = files[0].split("/modules/", 1)[1].split("/", 1)[0]
    # The root's own modules.dep: the whole kernel's dependency graph, not the initrd's.
    dep = {}
    for line in image.read(f"/usr/lib/modules/{version}/modules.dep").decode().splitlines():
        module, _, needs = line.partition(":")
        dep[_module(module)] = [_module(n) for n in needs.split()]
    for wanted in MODULES:
        name = wanted.replace("-", "_")
        assert name in dep, f"{wanted}: not a module of {version}"
        assert name in inside, f"{wanted} is not in the initramfs"
        missing = [d for d in dep[name] if d not in inside]
        assert not missing, f"{wanted} needs {missing}, which the initramfs lacks"
    assert "scripts/nfs" in listing
    # The master's root slot is chosen here (docs/day2.md, 4.3); initramfs-tools runs it.
    assert {"scripts/local-top/scooby-slot", "scripts/local-top/ORDER"} <= set(listing)
    print(f"initramfs: {len(files)} modules, {initrd.stat().st_size} bytes, kernel {version}")


def test_pi_device_trees_in_boot_partition_and_tftp(image: Image):
    boot = image.boot_files()
    shared = image.ls(layout.TFTP_BOOT)
    for dtb in PI_DTBS:
        assert dtb in boot, dtb
        assert dtb in shared and shared[dtb] & 0o444 == 0o444, dtb
        for _mac, _ip, pxe, _uuid in AGENTS.values():
            assert image.symlink(f"{layout.TFTP_ROOT}/{pxe}/{dtb}") == f"../.boot/{dtb}"


def test_firmware_view_of_the_boot_partition(image: Image, tmp_path: Path):
    from scooby.build import firmware

    boot = tmp_path / "boot"
    boot.mkdir()
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{image.path}@@{image.boot_offset}", "::*", str(boot)],
        check=True, capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )  # fmt: skip
    for model in firmware.MASTERS:
        view = firmware.view(boot, model)
        assert view.missing == [], model
        assert view.name("kernel") == layout.KERNEL and view.name("initramfs") == layout.INITRD
    assert image.boot_size() >= 256 * 2**20


def test_tftp_folder_per_pxe_id(image: Image):
    boot = image.ls(layout.TFTP_BOOT)
    for name in ("bootcode.bin", "start4.elf", layout.KERNEL, layout.INITRD):
        assert name in boot and boot[name] & 0o444 == 0o444, name
    assert image.symlink(f"{layout.TFTP_ROOT}/bootcode.bin") == ".boot/bootcode.bin"
    # The agents' kernel is a gzip archive of the arm64 image (assemble.gzip_kernel): the
    # firmware recognises it by its first bytes; the Image header's magic is at offset 56.
    kernel = image.read(f"{layout.TFTP_BOOT}/{layout.KERNEL}")
    assert kernel[:2] == b"\x1f\x8b" and gzip.decompress(kernel)[56:60] == b"ARM\x64"
    for _mac, _ip, pxe, _uuid in AGENTS.values():
        folder = f"{layout.TFTP_ROOT}/{pxe}"
        entries = image.ls(folder)
        for name in ("start4.elf", "fixup4.dat", layout.KERNEL, layout.INITRD):
            assert image.symlink(f"{folder}/{name}") == f"../.boot/{name}"
        assert "cmdline.txt" in entries


def test_agent_layers_and_base(image: Image, repo: Path, tmp_path: Path):
    for name in AGENTS:
        rendered = repo / "build" / "render" / "agents" / name
        for path in sorted(rendered.rglob("*")):
            if path.is_file():
                rel = path.relative_to(rendered).as_posix()
                assert image.read(f"{layout.AGENT_LAYERS}/{name}/{rel}") == path.read_bytes()
    assert image.exists(layout.AGENT_BASE) and image.exists(layout.AGENT_SHARED)
    for name in AGENTS:  # every directory the agents' overlays in fstab name
        for top in (layout.AGENT_UPPERS, layout.AGENT_WORKDIRS, layout.AGENT_MOUNTS):
            assert image.exists(f"{top}/{name}"), f"{top}/{name}"
    squashfs = tmp_path / "base.squashfs"
    subprocess.run(
        ["debugfs", "-R", f"dump {image.where(layout.AGENT_BASE_IMAGE)[1]} {squashfs}",
         f"{image.path}?offset={image.where(layout.AGENT_BASE_IMAGE)[0]}"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert squashfs.read_bytes()[:4] == b"hsqs"
    listing = subprocess.check_output(["unsquashfs", "-l", str(squashfs)], text=True)
    assert "squashfs-root/usr/sbin/mount.nfs" in listing
    assert "squashfs-root/usr/bin/cloud-init" in listing
    assert "squashfs-root/usr/lib/systemd/systemd-timesyncd" in listing  # the agents' clock
    assert "squashfs-root/usr/sbin/dnsmasq" not in listing  # agents get no master services
    assert "ssh_host_" not in listing
    # Up to date with /usr (customize75-update-done.sh): no first boot reruns dpkg's triggers.
    assert "squashfs-root/etc/.updated" in listing and "squashfs-root/var/.updated" in listing
    paths = [line.removeprefix("squashfs-root") for line in listing.splitlines()]
    files = set(paths)

    def cat(path: str) -> bytes:  # a file of the base, by its path on the agent
        return subprocess.run(["unsquashfs", "-cat", str(squashfs), path.lstrip("/")],
                              capture_output=True, check=True).stdout  # fmt: skip

    # The agents' .pyc files are unchecked hash-based too: none of their imports reads a .py.
    pyc = next(p for p in paths if "/cloudinit/__pycache__/util." in p)
    header = cat(pyc)[:8]
    assert header[4:8] == b"\x01\x00\x00\x00", header
    assert image.exists("/etc/.updated") and image.exists("/var/.updated")  # the master's
    # What cloud-init's first process loads, as the root's own Python listed it: every entry
    # is a file of the base (a whole path, not a prefix of one), cloud-init's own modules
    # among them (scooby-readahead.service).
    ahead = cat(layout.AGENT_READAHEAD).decode().split()
    assert any("/cloudinit/__pycache__/util." in p for p in ahead), ahead[:5]
    assert any(p.endswith(".so") for p in ahead)
    assert len(set(ahead)) == len(ahead), "a file listed twice is read twice"
    missing = [p for p in ahead if p not in files]
    assert not missing, missing[:5]


def test_release_file(image: Image, repo: Path):
    from scooby.load.digest import config_digest
    from scooby.util.git import describe

    release = dict(
        line.split("=", 1) for line in image.read(layout.RELEASE_FILE).decode().splitlines()
    )
    assert release["BASE"] == "debian"
    assert release["K3S_MODE"] == "none"
    assert release["CONFIG_DIGEST"] == config_digest(repo)
    assert release["SCOOBY_VERSION"] == describe(repo)
    assert not image.exists(layout.K3S_BINARY)


def test_fake_hwclock_saved_time_is_the_archives_not_the_builds(image: Image):
    """fake-hwclock's postinst saved the build's clock; the image holds the newest Date of the
    archive it was installed from (ARCHIVE=), the same in every build of that archive state."""
    from scooby.build.assemble import FAKE_HWCLOCK_DATA, archive_time

    release = dict(
        line.split("=", 1) for line in image.read(layout.RELEASE_FILE).decode().splitlines()
    )
    newest = archive_time(release["ARCHIVE"])
    assert newest is not None, release["ARCHIVE"]
    saved = image.read(FAKE_HWCLOCK_DATA).decode()
    assert saved == newest.strftime("%Y-%m-%d %H:%M:%S") + "\n"


def test_ca_certificates_and_python_bytecode_made_outside_the_installs(image: Image):
    """The build makes /etc/ssl/certs and the packages' .pyc files after the package installs
    (hooks customize20-ca-certificates.sh, deferred-py3compile.sh): all there, and no stand-in,
    record or diversion left behind."""
    certs = image.ls("/etc/ssl/certs")
    pems = [name for name in certs if name.endswith(".pem")]
    hashed = [name for name in certs if re.fullmatch(r"[0-9a-f]{8}\.\d+", name)]
    bundle = image.read("/etc/ssl/certs/ca-certificates.crt")
    assert len(pems) > 100 and len(hashed) == len(pems)
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") == len(pems)
    assert image.symlink("/etc/ssl/certs/" + pems[0]).startswith("/usr/share/ca-certificates/")
    diversions = image.read("/var/lib/dpkg/diversions").decode()
    assert "update-ca-certificates" not in diversions and "py3compile" not in diversions
    assert b"scooby build" not in image.read("/usr/sbin/update-ca-certificates")
    assert b"scooby build" not in image.read("/usr/bin/py3compile")
    assert not image.exists("/var/cache/scooby-py3compile")
    for package in ("cloudinit", "yaml", "jinja2", "requests"):
        folder = f"/usr/lib/python3/dist-packages/{package}"
        sources = {n.removesuffix(".py") for n in image.ls(folder) if n.endswith(".py")}
        compiled = {n.split(".", 1)[0] for n in image.ls(f"{folder}/__pycache__")}
        assert sources and sources <= compiled, (package, sorted(sources - compiled))
    # Unchecked hash-based (customize76-pyc-unchecked.sh): flags word 1, no import reads the .py.
    pycache = "/usr/lib/python3/dist-packages/cloudinit/__pycache__"
    util = next(n for n in image.ls(pycache) if n.startswith("util."))
    assert image.read(f"{pycache}/{util}")[4:8] == b"\x01\x00\x00\x00"


def test_module_index_made_by_the_background_depmod(image: Image):
    """The kernel's depmod ran in the background during the installs (hooks essential60 and
    deferred-depmod.sh): its index is there, and no stand-in, record or diversion is left."""
    assert "depmod" not in image.read("/var/lib/dpkg/diversions").decode()
    assert image.symlink("/usr/sbin/depmod") == "../bin/kmod"
    assert not image.exists("/usr/sbin/depmod.distrib")
    assert not image.exists("/var/cache/scooby-depmod")
    versions = list(image.ls("/usr/lib/modules"))
    assert versions
    for version in versions:
        index = image.ls(f"/usr/lib/modules/{version}")
        assert {"modules.dep", "modules.dep.bin", "modules.alias.bin"} <= set(index), index
        assert b"kernel/" in image.read(f"/usr/lib/modules/{version}/modules.dep")


def test_no_secrets_host_keys_or_machine_id(image: Image):
    for secret in (GITHUB_TOKEN, AWS_SECRET):
        found = subprocess.run(["grep", "-F", "-q", "-a", secret, str(image.path)])
        assert found.returncode == 1, "a secret from .env is in the image"
    assert not [n for n in image.ls("/etc/ssh") if n.startswith("ssh_host_")]
    assert image.read("/etc/machine-id").strip() in (b"", b"uninitialized")
    # Their places on the data partition are empty too: the first boot makes them.
    data = image.ls_at(image.data_offset, "/")
    assert Path(layout.DATA_MACHINE_ID).name not in data
    assert image.ls_at(image.data_offset, "/" + Path(layout.DATA_SSH).name) == {}
    if image.exists("/var/lib/dbus/machine-id"):
        assert image.symlink("/var/lib/dbus/machine-id") == "/etc/machine-id"


def test_interrupted_build_leaves_nothing_behind(repo: Path, image: Image, tmp_path: Path):
    """Ctrl-C in the middle of assembling: no temporary image, work tree or stage, no mounts,
    and the image from the last complete build is untouched."""
    before = image.path.stat()
    mounts = Path("/proc/mounts").read_text()
    # The event: assemble's work tree appears (unpack makes it, then untars the master's
    # root into it for seconds; only this run can make it, and the build removes it on any
    # exit). No log line and no fixed sleep: the signal lands mid-assemble, however loaded
    # the machine is.
    tree = repo / "build" / "work" / "root"
    assert not tree.exists()
    said = tmp_path / "stderr"  # what the build said, for the message of a failed assert
    with said.open("w") as stderr:
        proc = subprocess.Popen(
            ["scooby", "build", "--repo", str(repo), "--k3s=none"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 600  # render and cached base stages: seconds, when idle
    while not tree.exists():
        assert proc.poll() is None, "the build ended before assembling"
        assert time.monotonic() < deadline, "no assemble within 10 min"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, said.read_text()[-2000:]
    assert not list(image.path.parent.glob(".*.partial"))
    assert not (repo / "build" / "work").exists()
    assert not list((repo / ".cache" / "stages").glob(".*"))
    assert Path("/proc/mounts").read_text() == mounts
    after = image.path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_embedded_k3s(built, tmp_path: Path):
    """`--k3s=embed` with the release files served from 127.0.0.1.

    TEST DOUBLE: small fake `k3s-arm64` and air-gap files (GitHub can't be reached here);
    config pins their sha256 the way it pins the real release's.
    """
    import hashlib
    import http.server
    import threading
    from functools import partial

    version = "v1.36.4+k3s1"  # a supported minor: build validates first
    site = tmp_path / "site" / version
    site.mkdir(parents=True)
    (site / "k3s-arm64").write_bytes(b"#!/bin/sh\necho fake k3s (test double)\n")
    (site / "k3s-airgap-images-arm64.tar.zst").write_bytes(b"fake air-gap images\n")
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in site.iterdir()}

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = partial(Quiet, directory=str(site.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    repo = make_repo(ROOT / "build" / "test-image" / "repo-k3s")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with open(repo / "config", "a") as config:
        config.write(
            f"LC_K3S_VERSION={version}\nLC_K3S_SHA256={sha['k3s-arm64']}\n"
            f"LC_K3S_AIRGAP_SHA256={sha['k3s-airgap-images-arm64.tar.zst']}\n"
        )
    shutil.rmtree(repo / ".cache" / "downloads" / "k3s" / version, ignore_errors=True)
    try:
        done = subprocess.run(
            ["scooby", "build", "--repo", str(repo), "--k3s=embed"],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "SCOOBY_K3S_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            },
        )
    finally:
        server.shutdown()
        shutil.rmtree(repo / ".cache" / "downloads" / "k3s" / version, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{version} embedded" in done.stderr
    image = Image(repo / "images" / "scooby.img")
    binary = (site / "k3s-arm64").read_bytes()
    assert image.read(layout.K3S_BINARY) == binary
    assert "Mode:  0755" in image.stat(layout.K3S_BINARY)
    assert image.read(layout.AGENT_SHARED + layout.K3S_BINARY) == binary
    assert "Links: 2" in image.stat(layout.K3S_BINARY)  # the agents' copy is the same inode
    airgap = f"{layout.K3S_AIRGAP_DIR}/k3s-airgap-images-arm64.tar.zst"
    shared = layout.AGENT_SHARED + layout.K3S_AIRGAP_SHARED
    assert image.read(shared) == (site / "k3s-airgap-images-arm64.tar.zst").read_bytes()
    # One copy, on the root slot with the binary; the master's images folder (on the data
    # partition) links to it. Too long a target for a fast link: debugfs cat gives it.
    assert "Type: symlink" in image.stat(airgap) and image.read(airgap).decode() == shared
    release = image.read(layout.RELEASE_FILE).decode()
    assert "K3S_MODE=embedded" in release and f"K3S_VERSION={version}" in release


def _in_root(root: Path, script: str) -> subprocess.CompletedProcess:
    """`script` chrooted into an unpacked root (arm64, run by qemu-user), with /proc, /sys
    and /dev bound in a private mount namespace that goes away with the command."""
    binds = "".join(f"mount --rbind /{d} {root}/{d}; " for d in ("proc", "sys", "dev"))
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"set -e; {binds}chroot {root} sh -c {shlex.quote(script)}"],
        capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
    )  # fmt: skip


def test_kernel_and_initramfs_updates_keep_config_and_cmdline(image: Image, tmp_path: Path):
    """A kernel or initramfs update on the master, in the image's own root with its boot
    partition at /boot/firmware: config.txt and cmdline.txt stay byte for byte; the kernel,
    initrd and device trees follow the update. Then the control: Debian's raspi-firmware
    hook (kept under its diverted name) does rewrite cmdline.txt."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(
        ["debugfs", "-R", f"rdump / {root}", f"{image.path}?offset={image.root_offset}"],
        check=True, capture_output=True,
    )  # fmt: skip
    firmware = root / "boot" / "firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{image.path}@@{image.boot_offset}", "::*", str(firmware)],
        check=True, capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )  # fmt: skip
    before = {n: (firmware / n).read_bytes() for n in ("config.txt", "cmdline.txt")}
    version = next(root.glob("boot/vmlinuz-*")).name.removeprefix("vmlinuz-")
    for script in (
        "update-initramfs -u",
        f"/var/lib/dpkg/info/linux-image-{version}.postinst configure",
    ):
        done = _in_root(root, script)
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
        for name, content in before.items():
            assert (firmware / name).read_bytes() == content, f"{script} rewrote {name}"
    kernel = (root / "boot" / f"vmlinuz-{version}").read_bytes()
    assert (firmware / layout.KERNEL).read_bytes() == kernel
    initrd = (root / "boot" / f"initrd.img-{version}").read_bytes()
    assert (firmware / layout.INITRD).read_bytes() == initrd
    assert not list(firmware.glob("vmlinuz-*")) and not list(firmware.glob("initrd.img-*"))
    debian = "/usr/share/scooby/raspi-firmware/z50-raspi-firmware.debian"
    done = _in_root(root, f"DEB_MAINT_PARAMS=configure {debian}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (firmware / "cmdline.txt").read_bytes() != before["cmdline.txt"]
