"""The parts `scooby test-qemu` boots: disks, boot files, the test's network, QEMU processes.

image        never written: the master boots a qcow2 copy-on-write overlay of it
boot files   vmlinuz, initrd.img, cmdline.txt read from the FAT partition with mtools
cmdline      the Pi's, adapted to QEMU's `virt` board (console on its PL011, ttyAMA0)
network      a namespace of the test's own with a bridge: the master's internal NIC and
             each agent's NIC are taps on it, the test itself is a host on it (the bridge's
             address), and a second namespace plays the agent's boot ROM through a veth
VMs          qemu-system-aarch64 -M virt under TCG, each in its own process group, run
             inside the namespace (so even the master's user-net port forwards listen
             on that namespace's loopback only)
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core import layout
from scooby.util import diskimage

QEMU = "qemu-system-aarch64"
# dtb-randomness=off: no kaslr-seed in the device tree, so the guest kernel runs without
# KASLR, and so without the page table isolation (KPTI) that Debian's kernel forces on with
# KASLR on a CPU without E0PD, such as the Pi 4's Cortex-A72 ("kernel page table isolation
# forced ON by KASLR" on the console). KPTI switches TTBR1's ASID on every entry to and exit
# from the kernel, and QEMU's TCG flushes its whole TLB on each ASID change
# (target/arm/helper.c, vmsa_ttbr_write): every system call and interrupt then costs two full
# TLB refills under emulation. The image and its command line are unchanged.
MACHINE = ["-M", "virt,dtb-randomness=off", "-cpu", "cortex-a72", "-smp", "2"]
MIB = 1024 * 1024


# -- the image and its boot files -------------------------------------------------------


def boot_files(image: Path, out: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Copy `names` out of the image's FAT boot partition (mtools at an offset: no mount)."""
    start = diskimage.partition(image, layout.BOOT_PARTITION).offset
    out.mkdir(parents=True, exist_ok=True)
    found = {}
    for name in names:
        dest = out / name
        subprocess.run(
            ["mcopy", "-n", "-o", "-i", f"{image}@@{start}", f"::{name}", str(dest)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        )
        found[name] = dest
    return found


def virt_cmdline(cmdline: str) -> str:
    """A Pi kernel command line for QEMU's virt board.

    The Pi's consoles (serial0, tty1) don't exist there: the serial console is the PL011,
    ttyAMA0, given last so it is /dev/console. net.ifnames=0 keeps the NICs eth0, eth1 in
    PCI order, as the Pi's config expects. Everything else (root=PARTUUID=..., nfsroot=,
    ip=dhcp, the cloud-init seed) stays exactly as the image or the master serves it.
    """
    words = [w for w in cmdline.split() if not w.startswith("console=")]
    if not any(w.startswith("net.ifnames=") for w in words):
        words.append("net.ifnames=0")
    return " ".join([*words, "console=ttyAMA0,115200"])


def overlay(image: Path, dest: Path, grow: int = 1024 * MIB) -> Path:
    """A qcow2 copy-on-write overlay over the raw image, `grow` bytes larger (as an SD card
    is larger than the image: the master grows its data partition at first boot)."""
    size = image.stat().st_size + grow
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.resolve()), "-F", "raw"]
        + [str(dest), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dest


# -- an agent's local disk ----------------------------------------------------------------

MBR_PARTUUID = re.compile(r"^([0-9a-f]{8})-([0-9a-f]{2})$")


def scratch_script(partuuid: str, size: int) -> str:
    """The sfdisk script for a disk whose last partition has PARTUUID `partuuid`.

    A GPT partition UUID is set on the partition itself; an MBR PARTUUID `xxxxxxxx-NN` is
    the disk identifier plus the partition number, so partitions 1 .. NN-1 come first
    (1 MiB each) and NN takes the rest.
    """
    partuuid = partuuid.lower()
    mbr = MBR_PARTUUID.match(partuuid)
    if mbr is None:
        uuid.UUID(partuuid)  # a ValueError for anything else
        return f"label: gpt\nunit: sectors\nstart=2048, type=L, uuid={partuuid}\n"
    number = int(mbr.group(2), 16)
    if not 1 <= number <= 4:
        raise ValueError(f"PARTUUID {partuuid}: an MBR disk has primary partitions 1-4 only")
    lines = [f"label: dos\nlabel-id: 0x{mbr.group(1)}\nunit: sectors\n"]
    for n in range(1, number):
        lines.append(f"start={2048 * n}, size=2048, type=83\n")
    lines.append(f"start={2048 * number}, type=83\n")
    return "".join(lines)


def scratch_disk(path: Path, partuuid: str, size: int = 512 * MIB, fs_uuid: str = "") -> Path:
    """A raw disk file with one empty ext4 partition carrying `partuuid` (no loop device); its
    file system gets `fs_uuid` when given (an agent names its disk by either)."""
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path)],
        input=scratch_script(partuuid, size),
        capture_output=True,
        text=True,
        check=True,
    )
    last = diskimage.partitions(path)[-1]
    offset, length = last.offset, last.size
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-E", f"offset={offset}"]
        + (["-U", fs_uuid] if fs_uuid else [])
        + [str(path), f"{length // 1024}k"],
        capture_output=True,
        text=True,
        check=True,
    )
    return path


# -- the test's network ----------------------------------------------------------------


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def free_host(network: ipaddress.IPv4Network, taken: set) -> ipaddress.IPv4Interface:
    """The highest address of `network` no node uses: the test's own on the internal side."""
    for host in reversed(list(network.hosts())):
        if host not in taken:
            return ipaddress.IPv4Interface(f"{host}/{network.prefixlen}")
    raise ValueError(f"no free address in {network} for the test")


@dataclass
class Network:
    """Namespace `ns` (bridge br0 = the cluster's internal network, VM taps on it, the test's
    own address on br0) and namespace `rom` (the boot ROM's eth0, a veth into br0)."""

    tag: str
    ns: str = ""
    rom: str = ""
    made: list[str] = field(default_factory=list)
    # Phases run in threads: once delete() began, no namespace is made any more.
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.ns, self.rom = f"{self.tag}-net", f"{self.tag}-rom"

    def _add_netns(self, name: str) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError(f"namespace {name}: the run is ending")
            _ip("netns", "add", name)
            self.made.append(name)

    def create(self, test_address: ipaddress.IPv4Interface) -> None:
        self._add_netns(self.ns)
        _ip("-n", self.ns, "link", "set", "lo", "up")
        _ip("-n", self.ns, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip("-n", self.ns, "link", "set", "br0", "type", "bridge", "forward_delay", "0")
        _ip("-n", self.ns, "addr", "add", str(test_address), "dev", "br0")
        _ip("-n", self.ns, "link", "set", "br0", "up")

    def tap(self, name: str) -> str:
        _ip("-n", self.ns, "tuntap", "add", "dev", name, "mode", "tap")
        _ip("-n", self.ns, "link", "set", name, "master", "br0")
        _ip("-n", self.ns, "link", "set", name, "up")
        return name

    def add_rom(self, mac: str) -> str:
        """The boot ROM's NIC: eth0 with the agent's MAC, in namespace `rom`."""
        if self.rom not in self.made:
            self._add_netns(self.rom)
        _ip("-n", self.ns, "link", "add", "rom", "type", "veth", "peer", "eth0", "netns", self.rom)
        _ip("-n", self.ns, "link", "set", "rom", "master", "br0")
        _ip("-n", self.ns, "link", "set", "rom", "up")
        _ip("-n", self.rom, "link", "set", "eth0", "address", mac)
        _ip("-n", self.rom, "link", "set", "eth0", "up")
        return "eth0"

    def rom_address(self, address: str) -> None:
        """The address the ROM got by DHCP, on its eth0: TFTP runs over it."""
        _ip("-n", self.rom, "addr", "add", address, "dev", "eth0")

    def drop_rom(self) -> None:
        """Unplug the boot ROM: the agent VM comes up with the same MAC and address."""
        subprocess.run(["ip", "-n", self.ns, "link", "del", "rom"], capture_output=True)

    def delete(self) -> None:
        # Deleting a namespace deletes its taps, bridge and veth ends.
        with self.lock:
            self.closed = True
            for ns in reversed(self.made):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            self.made.clear()


# -- a VM -------------------------------------------------------------------------------


class VMExited(RuntimeError):
    pass


@dataclass
class VM:
    name: str
    netns: str
    console: Path  # the serial console, as QEMU writes it
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0

    def start(self) -> None:
        self.console.parent.mkdir(parents=True, exist_ok=True)
        self.console.write_bytes(b"")
        log = self.console.with_suffix(".qemu.log")
        with log.open("w") as f:
            f.write("$ " + " ".join(self.argv) + "\n")
            f.flush()
            self.started = time.monotonic()
            # Its own process group, so stop() also ends anything QEMU started.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) QEMU has used so far; `ip netns exec` execs it, so it is
        the process we started. 0 once it has exited."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (AttributeError, FileNotFoundError, ProcessLookupError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def text(self) -> str:
        try:
            return self.console.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _read_from(self, offset: int) -> bytes:
        try:
            with self.console.open("rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().replace("\r", "").splitlines()[-lines:])

    def banner_lines(self, banner: str, since: int = 0) -> list[str]:
        """Console lines that start with `banner`. A line, not a substring: systemd's own
        "Starting ..." lines quote the banner units' descriptions before the banner is said."""
        text = self.text()[since:].replace("\r", "\n")
        return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(banner)]

    def wait_for(self, banner: str, deadline: float, since: int = 0) -> float:
        """Seconds from QEMU's start until a console line (after offset `since`) starts with
        `banner`: the console file is read as QEMU writes it, every fifth of a second."""
        seen, want = since, banner.encode()  # seen: where the last complete line ended
        while True:
            data = self._read_from(seen)
            lines = data.replace(b"\r", b"\n").split(b"\n")
            if any(ln.strip().startswith(want) for ln in lines):
                return time.monotonic() - self.started
            seen += len(data) - len(lines[-1])
            if not self.running():
                code = self.proc.returncode if self.proc else None
                said = self.console.with_suffix(".qemu.log").read_text().strip().splitlines()
                raise VMExited(
                    f"{self.name}: QEMU exited ({code}) before {banner!r}: {said[-1][-300:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {banner!r} on its console")
            time.sleep(0.2)

    def exited(self, timeout: float) -> bool:
        """Wait until QEMU exits (the guest powered off), at most `timeout` s: whether it did."""
        try:
            self.proc.wait(timeout=max(timeout, 0))
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def qemu_argv(
    kernel: Path,
    initrd: Path,
    cmdline: str,
    console: Path,
    disk: Path,
    disk_format: str,
    nics: list[tuple[str, str]],
    memory: int = 2048,
    watchdog: bool = False,
    cache: str = "unsafe",
) -> list[str]:
    """QEMU's command line: TCG, no default devices, the serial console into a file, one
    virtio disk, and `nics` as (netdev options, MAC) in order (eth0, eth1, ...).

    `watchdog`: an i6300esb, the stand-in for the Pi's bcm2835 watchdog (Debian's i6300esb
    module drives it; systemd's RuntimeWatchdogSec feeds it; QEMU resets the guest when it
    fires). `cache`: unsafe (fast, guest flushes ignored) unless a test kills QEMU and wants
    what the guest synced to be on the host, as after a power cut (writeback)."""
    argv = [QEMU, *MACHINE, "-m", str(memory), "-nodefaults", "-display", "none"]
    argv += ["-chardev", f"file,id=console,path={console}", "-serial", "chardev:console"]
    argv += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    argv += ["-object", "rng-random,id=rng,filename=/dev/urandom"]
    argv += ["-device", "virtio-rng-pci,rng=rng"]  # sshd and k3s need entropy early
    argv += ["-drive", f"if=none,id=disk,file={disk},format={disk_format},cache={cache}"]
    argv += ["-device", "virtio-blk-pci,drive=disk"]
    if watchdog:
        argv += ["-device", "i6300esb"]
    for n, (netdev, mac) in enumerate(nics):
        argv += [
            "-netdev",
            f"{netdev},id=nic{n}",
            "-device",
            f"virtio-net-pci,netdev=nic{n},mac={mac}",
        ]
    return argv


def user_netdev(
    network: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
    guest: ipaddress.IPv4Address,
    forwards: list[tuple[str, int, int]],
) -> str:
    """QEMU user networking for the master's external side, restrict=on: no packet leaves this
    machine. The guest keeps its configured static address on `network`, QEMU plays its
    gateway, and `forwards` (proto, host port, guest port) listen on 127.0.0.1."""
    opts = ["user", "restrict=on", f"net={network}", f"host={gateway}"]
    taken = {gateway, guest}
    dns = next(h for h in network.hosts() if h not in taken and int(h) & 0xFF >= 3)
    opts.append(f"dns={dns}")
    opts += [f"hostfwd={p}:127.0.0.1:{hp}-{guest}:{gp}" for p, hp, gp in forwards]
    return ",".join(opts)
