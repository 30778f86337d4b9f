"""`assemble`: the master's root and boot trees, ready to pack.

    master root   = master-base (unpacked)
                  + the agent base as one squashfs (AGENT_BASE_IMAGE) and its boot files
                    (TFTP_BOOT, the kernel gzip'd), linked into one TFTP folder per PXE ID
                  + render's master/ tree (the user's server/** already merged last)
                  + each agent's private layer (AGENT_LAYERS/NAME)
                  + K3S when embedded, and /etc/scooby/release
                  + the deploy record (layout.DEPLOY_RECORD): what `scooby deploy` compares,
                    and the same in the root slot itself (layout.SLOT_RECORD)
    master data   = the state folders (layout.DATA_BINDS), moved out of the root: the data
                    partition; the root keeps each as an empty mount point. What only a new
                    image changes (the agent base, AGENT_SHARED, K3S) stays on the root slot.
    master boot   = the same boot files (firmware, vmlinuz, initrd.img, DTBs) + render's boot/

Everything here is plain file copying in directories we own; ownership is root's because
the build runs as root (mke2fs -d then stores uid/gid/mode exactly as they are here).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from scooby.build.k3s import AIRGAP, K3sPlan
from scooby.core import layout
from scooby.core.model import Cluster
from scooby.core.paths import TEMPLATES_DIR
from scooby.util import proc, templates

FIRMWARE_DIRS = ("usr/lib/raspi-firmware",)  # Debian's raspi-firmware package
FIRMWARE_GLOBS = ("bootcode.bin", "start*.elf", "fixup*.dat", "LICENCE.broadcom")
# Every Raspberry Pi tree of the booted kernel, as Debian names them (upstream_kernel=1):
# bcm2837-rpi-3-b, -3-b-plus, bcm2711-rpi-4-b, -400, -cm4-io, and bcm2712-rpi-5-b on 6.12.
DTB_GLOB = "usr/lib/linux-image-*/broadcom/bcm2*-rpi-*.dtb"


@dataclass(frozen=True)
class Assembled:
    root: Path
    boot: Path
    data: Path


def at(tree: Path, on_master_path: str) -> Path:
    """The place of an absolute on-master path inside a tree."""
    return tree / on_master_path.lstrip("/")


def unpack(tarball: Path, dest: Path) -> None:
    """Untar a root with owners, modes, setuid bits and file capabilities as they are."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    proc.run(
        ["tar", "-C", str(dest), "--numeric-owner", "--xattrs", "--xattrs-include=*",
         "-xpf", str(tarball)],
        check=True,
    )  # fmt: skip


def debian_boot_files(root: Path, out: Path) -> list[str]:
    """Firmware, kernel (as vmlinuz), initramfs (as initrd.img) and DTBs of a Debian root."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for folder in FIRMWARE_DIRS:
        for pattern in FIRMWARE_GLOBS:
            for src in sorted((root / folder).glob(pattern)):
                names.append(_copy(src, out / src.name))
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise RuntimeError(f"expected one kernel in the base root's /boot, found {kernels}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    names.append(_copy(kernels[0], out / layout.KERNEL))
    names.append(_copy(root / "boot" / f"initrd.img-{version}", out / layout.INITRD))
    for dtb in sorted(root.glob(DTB_GLOB)):
        names.append(_copy(dtb, out / dtb.name))
    return names


def _copy(src: Path, dest: Path) -> str:
    shutil.copyfile(src, dest)  # contents only: boot files are plain 0644 files
    dest.chmod(0o644)
    return dest.name


def merge(src: Path, dest: Path) -> None:
    """Copy a rendered tree over a root: files with the modes render gave them (0644, or 0755
    for an executable from git); a folder the root already has keeps its mode and owner
    (/tmp 1777, /root 0700), whatever server/ holds; a new folder is 0755 whatever the umask.
    A link in the root is replaced, never written through (it may point at the build host)."""
    top = dest.resolve()
    for here, dirs, files in os.walk(src):
        rel = Path(here).relative_to(src)
        folder = dest / rel
        if not folder.is_dir():
            if folder.is_symlink() or folder.exists():
                folder.unlink()
            folder.mkdir()
            folder.chmod(0o755)
        elif folder.resolve() != top and top not in folder.resolve().parents:
            raise RuntimeError(f"{folder} leads out of the image's root")
        for name in files:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                raise RuntimeError(f"{target} is a folder in the base; render made it a file")
            if target.is_symlink() or target.is_file():
                target.unlink()
            shutil.copy2(Path(here, name), target, follow_symlinks=False)
        dirs.sort()


def link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)  # the same bytes twice cost nothing in the image (mke2fs keeps links)
    except OSError:
        shutil.copy2(src, dest)


def release_text(cluster: Cluster, base: str, k3s: K3sPlan, archive: str = "") -> str:
    env = templates.environment(TEMPLATES_DIR / "base" / "release")
    return env.get_template("release.j2").render(
        version=cluster.version,
        base=base,
        k3s_version=k3s.version if k3s.mode != layout.NO_K3S else "",
        k3s_mode=k3s.mode,
        config_digest=cluster.config_digest,
        archive=archive,
    )


def add_k3s(root: Path, k3s: K3sPlan) -> None:
    # The agents read K3S_MODE from the shared layer: with `none` their k3s-agent.service is
    # skipped, with `first-boot` it waits for the master's install (scooby-k3s-wait).
    mode = at(at(root, layout.AGENT_SHARED), layout.K3S_MODE_FILE)
    mode.parent.mkdir(parents=True, exist_ok=True)
    mode.write_text(f"{k3s.mode}\n")
    mode.chmod(0o644)
    if k3s.files is None:
        return
    binary = at(root, layout.K3S_BINARY)
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(k3s.files.binary, binary)
    binary.chmod(0o755)
    link_or_copy(binary, at(at(root, layout.AGENT_SHARED), layout.K3S_BINARY))  # one inode
    # The air-gap images belong to the K3S binary, so they come with the root slot (the
    # agents' copy in AGENT_SHARED). The master's K3S reads them from its images folder, which
    # is on the data partition (/var/lib/rancher): a link there to that copy keeps one copy in
    # the image, and after an A/B deploy the master's K3S finds the new slot's images.
    shared = at(at(root, layout.AGENT_SHARED), layout.K3S_AIRGAP_SHARED)
    shared.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(k3s.files.airgap, shared)
    shared.chmod(0o644)
    airgap = at(root, layout.K3S_AIRGAP_DIR) / AIRGAP
    airgap.parent.mkdir(parents=True, exist_ok=True)
    airgap.unlink(missing_ok=True)
    airgap.symlink_to(layout.AGENT_SHARED + layout.K3S_AIRGAP_SHARED)


def agent_dirs(root: Path, cluster: Cluster, rendered: Path) -> None:
    """Every directory the agents' overlays name (fstab): they must exist before first boot.

    lower layers: AGENT_LAYERS/NAME (render's agents/NAME, on the data partition),
    AGENT_SHARED (K3S or empty) and AGENT_BASE (the squashfs mount point), both on the root
    slot; upper, work and merged dirs per agent.
    """
    at(root, layout.AGENT_SHARED).mkdir(parents=True, exist_ok=True)
    for agent in cluster.agents:
        layer = at(root, layout.AGENT_LAYERS) / agent.name
        layer.mkdir(parents=True, exist_ok=True)
        src = rendered / "agents" / agent.name
        if src.is_dir():
            merge(src, layer)
        for top in (layout.AGENT_UPPERS, layout.AGENT_WORKDIRS, layout.AGENT_MOUNTS):
            (at(root, top) / agent.name).mkdir(parents=True, exist_ok=True)


def assemble(
    cluster: Cluster,
    rendered: Path,
    master_tar: Path,
    agent_squashfs: Path,
    boot_files: Path,
    base: str,
    k3s: K3sPlan,
    work: Path,
) -> Assembled:
    from scooby.build import tftp

    root, boot = work / "root", work / "boot"
    unpack(master_tar, root)
    # /boot/firmware is where the FAT partition is mounted: raspi-firmware's copies of the
    # kernel and firmware there would only be hidden under the mount (~45 MB).
    firmware = root / "boot" / "firmware"
    if firmware.is_dir():
        shutil.rmtree(firmware)
        firmware.mkdir()
    if boot.exists():
        shutil.rmtree(boot)
    shutil.copytree(boot_files, boot)
    merge(rendered / "boot", boot)

    link_or_copy(agent_squashfs, at(root, layout.AGENT_BASE_IMAGE))
    at(root, layout.AGENT_BASE).mkdir(parents=True, exist_ok=True)
    tftp_boot = at(root, layout.TFTP_BOOT)
    tftp_boot.mkdir(parents=True, exist_ok=True)
    shutil.copytree(boot_files, tftp_boot, dirs_exist_ok=True)  # overlays/ too (raspios)
    gzip_kernel(tftp_boot / layout.KERNEL)
    for path in [tftp_boot, *tftp_boot.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # dnsmasq serves world-readable files

    merge(rendered / "master", root)
    agent_dirs(root, cluster, rendered)
    tftp.populate(at(root, layout.TFTP_ROOT), tftp_boot, cluster)

    add_k3s(root, k3s)
    release = at(root, layout.RELEASE_FILE)
    release.parent.mkdir(parents=True, exist_ok=True)
    # customize85-archive.sh left the archive's state (Debian base) beside it: one file.
    recorded = release.with_name("archive")
    archive = recorded.read_text().strip() if recorded.is_file() else ""
    recorded.unlink(missing_ok=True)
    release.write_text(release_text(cluster, base, k3s, archive))
    release.chmod(0o644)
    saved_clock(root, archive)
    write_deploy_record(root, cluster, rendered)
    return Assembled(root, boot, split_data(root, work / "data"))


def gzip_kernel(kernel: Path) -> None:
    """The agents' kernel as a gzip archive of the image: a third of the bytes over TFTP
    (Debian's arm64 Image is 36 MiB uncompressed, the largest file an agent fetches). The Pi
    firmware takes either form for a 64-bit kernel and tells them apart by the first bytes
    (raspberrypi/documentation, config_txt/boot.adoc, `arm_64bit`); so does QEMU's -kernel.
    The master's boot partition keeps the image as Debian ships it: it is read from the SD
    card, and its raspi-firmware hook (templates/base/files) copies kernels as they are.
    Level 6, no name or time in the header: the same bytes for the same kernel."""
    data = kernel.read_bytes()
    if data[:2] == b"\x1f\x8b":  # already gzip (a Raspberry Pi OS kernel8.img may be)
        return
    kernel.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))


def split_data(root: Path, data: Path) -> Path:
    """Move each state folder of `root` into the `data` tree (the data partition), leaving an
    empty mount point for its bind mount (fstab), and add the data partition's own mount
    point and its folder for the SSH host keys (made at first boot)."""
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(mode=0o755)
    for on_master, name in layout.DATA_BINDS:
        src = at(root, on_master)
        src.mkdir(mode=0o755, parents=True, exist_ok=True)
        mode = src.stat().st_mode & 0o7777
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        src.rename(data / name)  # one file system: hard links stay links
        src.mkdir()
        src.chmod(mode)
    at(root, layout.DATA_MOUNT).mkdir(mode=0o755, parents=True, exist_ok=True)
    keys = data / Path(layout.DATA_SSH).relative_to(layout.DATA_MOUNT)
    keys.mkdir(mode=0o755, parents=True, exist_ok=True)
    return data


FAKE_HWCLOCK_DATA = "/etc/fake-hwclock.data"


def archive_time(archive: str) -> datetime | None:
    """The newest InRelease `Date:` of an ARCHIVE record (`codename@YYYY-MM-DDTHH:MM:SSZ`,
    joined by commas: customize85-archive.sh), or None when it names none."""
    times = []
    for pocket in filter(None, archive.split(",")):
        _, _, stamp = pocket.rpartition("@")
        try:
            times.append(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
        except ValueError:
            continue
    return max(times, default=None)


def saved_clock(root: Path, archive: str) -> None:
    """fake-hwclock's saved time, the same for the same archive state. Its postinst saves the
    clock it runs at (`fake-hwclock save`), so two builds of the same inputs differed in this
    one file. It gets the newest InRelease Date the root was installed from (ARCHIVE= in the
    release file) instead, in the format `fake-hwclock save` writes. That keeps what the file
    is for, a plausible clock at a Pi's first boot (no RTC): never ahead of the real time, as
    the archive was signed before the build, and a day or two behind it for a live mirror.
    It matters more than fake-hwclock(8) says: its load only moves the clock forward, but the
    script (0.14, trixie) sets the saved time unless FORCE is set, backwards too, so this is
    the first boot's clock until NTP answers. An older stand-in (SOURCE_DATE_EPOCH, 2023)
    would set that clock years back: with no archive date the file stays as it is."""
    data = at(root, FAKE_HWCLOCK_DATA)
    when = archive_time(archive)
    if when is None or data.is_symlink() or not data.is_file():
        return  # no archive record, or no fake-hwclock: nothing is made
    data.write_text(when.strftime("%Y-%m-%d %H:%M:%S") + "\n")  # `date -u '+%Y-%m-%d %H:%M:%S'`


def write_deploy_record(root: Path, cluster: Cluster, rendered: Path) -> None:
    """What this image holds, for `scooby deploy` to compare a new render with (0600: it
    names every file and agent). Twice: layout.DEPLOY_RECORD (moved to the data partition
    by split_data, rewritten by each deploy) and layout.SLOT_RECORD, which stays in the root
    slot as built (docs/day2.md 4.3: what a committed or rolled-back-to slot holds)."""
    from scooby.render.record import record

    text = json.dumps(record(cluster, rendered), indent=1, sort_keys=True) + "\n"
    # deploy/ is the deploy's own folder (0700); /etc/scooby holds the release, for all
    for on_master, mode in ((layout.DEPLOY_RECORD, 0o700), (layout.SLOT_RECORD, 0o755)):
        path = at(root, on_master)
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            path.parent.chmod(mode)
        path.write_text(text)
        path.chmod(0o600)
