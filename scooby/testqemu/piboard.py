"""`scooby test-qemu --board raspi3b|raspi4b`: the master image on QEMU's Raspberry Pi boards.

QEMU has no Pi firmware, so the test does what it would do. It copies the image's boot
partition out (mtools, no mount) and resolves what config.txt makes the firmware load for the
board's model (scooby firmware view): the kernel, the initramfs, the device tree chosen with
`upstream_kernel=1` (bcm2837-rpi-3-b.dtb, bcm2711-rpi-4-b.dtb) and cmdline.txt. QEMU gets
them as -kernel, -initrd, -dtb and -append; the command line is cmdline.txt's line as it is
(the console stays ttyS1, the header UART, which is QEMU's second serial port on these boards;
raspi4b adds a longer device timeout for systemd, a concession to TCG's speed).

The image itself is never written: the card (or USB stick) is a qcow2 overlay whose size is
the next power of two, as QEMU's SD card model requires, and larger than the image, so first
boot grows the data partition as on a real card. raspi3b boots from the emulated SD card or
from a USB mass-storage device on its DWC2 USB; two USB network adapters (QEMU user networking,
restrict=on: no packet leaves this machine) stand in for the Pi 3B's own USB Ethernet and
the README's second adapter. raspi4b (QEMU >= 9) models neither GENET nor PCIe (where the
Pi 4's USB ports are): SD only, no network; it gets the test harness's copy of the device
tree, with the concessions to what QEMU lacks named in pidtb.

Phases: prepare, root-mounted (the kernel mounted the image's root from the medium),
master-banner (the master says it is ready, which it does after multi-user.target), and
failed-units (the banner script lists failed units on the console: each must be one this
board is expected to fail, with the reason).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from scooby.build import firmware
from scooby.core import layout
from scooby.testqemu import evidence, pidtb, qemuvm
from scooby.testqemu.phases import NOT_RUN, Phases
from scooby.testqemu.session import Interrupted, _raise_interrupted, clear_evidence
from scooby.util import diskimage

MIB = 1024 * 1024


@dataclass(frozen=True)
class Board:
    name: str
    model: str  # the model in the firmware view whose files QEMU gets
    memory: str
    media: tuple[str, ...]
    usb: bool  # DWC2 USB: network adapters and a mass-storage medium
    # units this board fails for want of hardware QEMU doesn't model, with the reason
    expected_failures: dict[str, str] = field(default_factory=dict)
    # the harness's addition to cmdline.txt's line, a concession to TCG's speed (docs)
    cmdline_extra: str = ""


NO_NETWORK = "QEMU's raspi4b has no Ethernet (it models neither GENET nor PCIe)"
NO_CLOCK = (
    "no time server answers (the test's networking reaches nothing), so the clock never "
    "syncs and the bounded wait for it fails; K3S would start on the fake-hwclock time"
)
BOARDS = {
    "raspi3b": Board(
        "raspi3b",
        "Pi 3B",
        "1G",
        ("sd", "usb"),
        True,
        {
            "scooby-time-wait.service": NO_CLOCK,
            "systemd-networkd-wait-online.service": "booted from USB, QEMU's emulated USB "
            "brings the USB stick up but not the two usb-net adapters: no eth0 to come online",
        },
    ),
    "raspi4b": Board(
        "raspi4b",
        "Pi 4B",
        "2G",
        ("sd",),
        False,
        {
            "systemd-networkd-wait-online.service": NO_NETWORK + ": eth0 never comes online",
            "scooby-time-wait.service": NO_CLOCK,
        },
        # systemd waits 90 s for a device by default (DefaultDeviceTimeoutSec). Under TCG on a
        # loaded machine udev announced the boot partition's by-partuuid link later than that,
        # boot-firmware.mount failed and the boot ended in emergency.target, never reaching
        # multi-user.target. A real Pi has the link within seconds.
        cmdline_extra="systemd.default_device_timeout_sec=600",
    ),
}
# The banner is waited for by progress, not by the clock alone: under TCG the guest advances only
# as fast as QEMU gets the host's CPUs, so on a loaded machine a sound boot needs more wall time.
# master-banner fails once BANNER_WALL s have passed *and* QEMU has used BANNER_CPU s of CPU
# since it began (a guest that hangs or spins fails then), and at BANNER_CAP s in any case.
BANNER_WALL, BANNER_CPU, BANNER_CAP = 1500, 1500, 2400


def banner_overdue(waited: float, cpu: float, capped: bool) -> bool:
    """Whether master-banner has waited long enough: `waited` s of wall time in which QEMU
    used `cpu` s of CPU; `capped`: the phase's timeout (BANNER_CAP) has passed."""
    return capped or (waited >= BANNER_WALL and cpu >= BANNER_CPU)


ROOT_MOUNT = re.compile(r"EXT4-fs \((?P<dev>[a-z0-9]+)\): mounted filesystem")


def next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def card(image: Path, dest: Path) -> Path:
    """A qcow2 overlay of the image sized to the next power of two above image + 256 MiB
    (QEMU's SD card model takes only those sizes; the headroom lets first boot grow the data
    partition)."""
    size = next_power_of_two(image.stat().st_size + 256 * MIB)
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(image.resolve()),
            str(dest),
            str(size),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dest


def boot_partition(image: Path, out: Path) -> Path:
    """Every file of the image's FAT boot partition, copied out with mtools (no mount)."""
    start = diskimage.partition(image, layout.BOOT_PARTITION).offset
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mcopy", "-s", "-n", "-o", "-i", f"{image}@@{start}", "::*", str(out)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    return out


def firmware_cmdline(text: str) -> str:
    """cmdline.txt as the firmware reads it: its first line, as one line of words."""
    lines = text.splitlines()
    return " ".join(lines[0].split()) if lines else ""


def qemu_argv(
    board: Board,
    files: dict[str, Path],
    cmdline: str,
    disk: Path,
    medium: str,
    console: Path,
    uart0: Path,
) -> list[str]:
    """QEMU's Pi board with the firmware's choice of files. Serial port 0 is the PL011
    (Bluetooth's UART under the mainline trees), port 1 the mini-UART on the header: ttyS1."""
    argv = ["qemu-system-aarch64", "-M", board.name, "-m", board.memory, "-display", "none"]
    argv += ["-kernel", str(files["kernel"]), "-dtb", str(files["dtb"])]
    if "initramfs" in files:
        argv += ["-initrd", str(files["initramfs"])]
    argv += ["-append", cmdline]
    argv += ["-chardev", f"file,id=uart0,path={uart0}", "-serial", "chardev:uart0"]
    argv += ["-chardev", f"file,id=console,path={console}", "-serial", "chardev:console"]
    if medium == "sd":
        argv += ["-drive", f"if=sd,file={disk},format=qcow2,cache=unsafe"]
    else:
        argv += ["-drive", f"if=none,id=stick,file={disk},format=qcow2,cache=unsafe"]
        argv += ["-device", "usb-storage,drive=stick"]
    if board.usb:
        # eth0 (external) and eth1 (internal): USB network adapters on QEMU user networking
        # with restrict=on, so nothing the master sends leaves this machine.
        for n, mac in enumerate(("52:54:00:5c:01:01", "52:54:00:5c:01:02")):
            argv += ["-netdev", f"user,id=net{n},restrict=on"]
            argv += ["-device", f"usb-net,netdev=net{n},mac={mac}"]
    return argv


class PiSession:
    """One boot of the master image on a Pi board, as named phases (test-qemu's table)."""

    def __init__(self, cluster, image: Path, out: Path, board: str, medium: str, console):
        self.cluster, self.image, self.out, self.console = cluster, image, out, console
        self.board, self.medium = BOARDS[board], medium
        self.phases = Phases(echo=self._echo)
        self.netns = f"scbp{os.getpid() % 100000}"
        self.vm = None
        self.work = Path()
        self.files: dict[str, Path] = {}
        self.timings: dict[str, float] = {}
        self.banner = f"{cluster.master.hostname.upper()} WILL PATROL TONIGHT"

    def _echo(self, phase) -> None:
        if phase.status != NOT_RUN:
            detail = f": {phase.detail}" if phase.detail else ""
            self.console.print(
                f"{phase.name} {phase.status} {phase.seconds:.1f} s{detail}",
                markup=False,
                highlight=False,
            )

    def run(self, keep: bool = False):
        clear_evidence(self.out)
        self.work = Path(tempfile.mkdtemp(prefix="scooby-test-qemu-pi."))
        old = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
        old |= {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
        p = self.phases.run
        try:
            p("prepare", 300, self.prepare)
            p("root-mounted", 900, self.root_mounted, ("prepare",))
            p("master-banner", BANNER_CAP, self.master_banner, ("root-mounted",))
            p("failed-units", 60, self.failed_units, ("master-banner",))
        except (KeyboardInterrupt, Interrupted):
            raise KeyboardInterrupt from None
        finally:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            if self.vm is not None:
                self.vm.stop()
            subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
            if keep:
                shutil.move(str(self.work), self.out / "work")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
            for s, handler in old.items():
                signal.signal(s, handler)
            self.report()
        return self.phases

    def report(self) -> None:
        fields = {"image": str(self.image), "board": self.board.name, "medium": self.medium}
        title = f"scooby test-qemu --board {self.board.name} ({self.medium})"
        evidence.write_table(
            self.console, self.out, self.phases.phases, {**fields, "timings": self.timings}, title
        )

    # -- the phases -------------------------------------------------------------------

    def prepare(self, deadline: float) -> str:
        boot = boot_partition(self.image, self.work / "boot")
        view = firmware.view(boot, self.board.model)
        if view.missing:
            names = ", ".join(f"{f.purpose} {f.name}" for f in view.missing)
            raise AssertionError(f"the firmware of a {self.board.model} finds no {names}")
        self.files = {
            purpose: boot / name
            for purpose in ("kernel", "dtb", "initramfs", "cmdline")
            if (name := view.name(purpose))
        }
        concessions = pidtb.CONCESSIONS.get(self.board.name, ())
        if concessions:  # the harness's copy for QEMU; the image's tree stays as it is
            dtb = self.files["dtb"]
            self.files["dtb"] = pidtb.harness_copy(dtb, self.work / dtb.name, concessions)
        cmdline = firmware_cmdline(self.files["cmdline"].read_text())
        cmdline = f"{cmdline} {self.board.cmdline_extra}".strip()
        disk = card(self.image, self.work / "card.qcow2")
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        argv = qemu_argv(
            self.board,
            self.files,
            cmdline,
            disk,
            self.medium,
            self.out / "master.console.log",
            self.out / "master.uart0.log",
        )
        self.vm = qemuvm.VM("master", self.netns, self.out / "master.console.log", argv)
        chosen = " ".join(f"{k}={v.name}" for k, v in self.files.items())
        if concessions:
            edits = "; ".join(c.describe() for c in concessions)
            chosen += f" (the test harness's copy of the tree, for QEMU: {edits})"
        extra = self.board.cmdline_extra
        if extra:
            chosen += f" (the test harness adds {extra} to cmdline.txt's line, for TCG's speed)"
        return f"{self.board.model}: {chosen}; cmdline: {cmdline}"

    def root_mounted(self, deadline: float) -> str:
        self.vm.start()
        want = "mmcblk" if self.medium == "sd" else "sd"
        while time.monotonic() < deadline:
            for m in ROOT_MOUNT.finditer(self.vm.text()):
                if m["dev"].startswith(want):
                    seconds = time.monotonic() - self.vm.started
                    self.timings["qemu_start_to_root_mounted"] = seconds
                    self.timings["qemu_cpu_to_root_mounted"] = self.vm.cpu_seconds()
                    return f"/dev/{m['dev']} mounted {seconds:.0f} s after QEMU started"
            if not self.vm.running():
                raise AssertionError(f"QEMU exited; console ends: {self.vm.tail(8)!r}")
            time.sleep(2)
        raise TimeoutError(f"no root mounted from {self.medium}; console ends: {self.vm.tail(8)!r}")

    def master_banner(self, deadline: float) -> str:
        """The banner, waited for by progress: see BANNER_WALL."""
        begun, cpu = time.monotonic(), self.vm.cpu_seconds()
        while True:
            try:
                seconds = self.vm.wait_for(self.banner, min(deadline, time.monotonic() + 10))
                break
            except TimeoutError:
                waited, used = time.monotonic() - begun, self.vm.cpu_seconds() - cpu
                if banner_overdue(waited, used, time.monotonic() >= deadline):
                    raise AssertionError(
                        f"no {self.banner!r} after {waited:.0f} s, in which QEMU used {used:.0f} s "
                        f"of CPU; console ends: {self.vm.tail(8)!r}"
                    ) from None
            except Exception as exc:  # noqa: BLE001
                raise AssertionError(f"{exc}; console ends: {self.vm.tail(8)!r}") from None
        self.timings["qemu_start_to_master_banner"] = seconds
        self.timings["qemu_cpu_to_master_banner"] = self.vm.cpu_seconds()
        return (
            f"{self.vm.banner_lines(self.banner)[0]!r} {seconds:.0f} s after QEMU started "
            f"({self.timings['qemu_cpu_to_master_banner']:.0f} s of QEMU's CPU)"
        )

    def failed_units(self, deadline: float) -> str:
        time.sleep(2)  # the banner script says the failed units first; let the console settle
        tag = f"{self.cluster.master.hostname}: failed units:"
        failed = sorted(
            {u for line in self.vm.banner_lines(tag) for u in line.removeprefix(tag).split()}
        )
        unexpected = [u for u in failed if u not in self.board.expected_failures]
        if unexpected:
            raise AssertionError(
                f"unexpected failed units on {self.board.name}: " + ", ".join(unexpected)
            )
        if not failed:
            return "none"
        return "; ".join(f"{u} (expected: {self.board.expected_failures[u]})" for u in failed)


def check_board(board: str, medium: str, image: Path) -> None:
    """Everything a Pi-board run needs, checked before QEMU starts."""
    from scooby.core.errors import ScoobyError, error

    problems = []
    if medium not in BOARDS[board].media:
        problems.append(error("", None, f"--medium {medium}: QEMU's {board} has no such medium"))
    if os.geteuid() != 0:
        problems.append(error("", None, "test-qemu must run as root (network namespace)"))
    if not image.is_file():
        problems.append(error(str(image), None, "no image here: run `scooby build` first"))
    tools = ("qemu-system-aarch64", "qemu-img", "mcopy", "ip")
    for tool in tools + (("fdtput",) if board in pidtb.CONCESSIONS else ()):
        if shutil.which(tool) is None:
            problems.append(error("", None, f"`{tool}` not found (see scripts/packages.txt)"))
    if not problems and board not in _machines():
        problems.append(
            error("", None, f"this QEMU has no {board} board (raspi4b needs QEMU >= 9)")
        )
    if problems:
        raise ScoobyError(problems)


def _machines() -> str:
    done = subprocess.run(
        ["qemu-system-aarch64", "-M", "help"], capture_output=True, text=True, check=False
    )
    return done.stdout
