"""The pure parts of `scooby test-qemu`: fast, no VM, no namespace.

The kernel command line for QEMU's virt board, the phase bookkeeping and its table, the boot
ROM's DHCP packets, the agent's scratch disk (real sfdisk and mke2fs on a plain file), the
master's user-net options and the external-side probes.
"""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from scooby.testqemu import bootrom, qemuvm
from scooby.testqemu.phases import (
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    Failed,
    Phases,
    Skip,
    Step,
    one_line,
    table,
)
from scooby.testqemu.probes import probe_payload
from scooby.testqemu.session import clear_evidence

MASTER_CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=1a2b3c4d-02 rootfstype=ext4 rootwait "
    "fsck.repair=yes net.ifnames=0 cgroup_enable=memory"
)
AGENT_CMDLINE = (
    "console=serial0,115200 console=tty1 root=/dev/nfs "
    "nfsroot=192.168.64.1:/mnt/scooby/agents/willow,tcp,vers=3,nocto,acregmin=600 "
    "rw ip=dhcp rootwait "
    "net.ifnames=0 cgroup_enable=memory ds=nocloud-net;s=http://192.168.64.1:58087/willow/"
)


# -- kernel command line -----------------------------------------------------------------


def test_the_master_cmdline_keeps_its_root_and_gets_the_virt_console() -> None:
    got = qemuvm.virt_cmdline(MASTER_CMDLINE).split()
    assert got[-1] == "console=ttyAMA0,115200"  # last: it is /dev/console
    assert [w for w in got if w.startswith("console=")] == ["console=ttyAMA0,115200"]
    assert "root=PARTUUID=1a2b3c4d-02" in got
    assert got.count("net.ifnames=0") == 1


def test_the_agent_cmdline_keeps_nfsroot_dhcp_and_the_seed() -> None:
    got = qemuvm.virt_cmdline(AGENT_CMDLINE + "\n")
    for word in AGENT_CMDLINE.split():
        if not word.startswith("console="):
            assert word in got.split()
    assert "\n" not in got


def test_net_ifnames_is_added_when_missing() -> None:
    assert qemuvm.virt_cmdline("root=/dev/vda2 console=tty1").split() == [
        "root=/dev/vda2",
        "net.ifnames=0",
        "console=ttyAMA0,115200",
    ]


# -- phases --------------------------------------------------------------------------------


def test_phases_pass_fail_skip_and_what_depends_on_them() -> None:
    phases = Phases()
    phases.run("boot", 10, lambda deadline: "up")
    phases.run("broken", 10, lambda deadline: 1 / 0, ("boot",))
    phases.run("after-broken", 10, lambda deadline: "never", ("broken",))
    phases.run("k3s", 10, lambda deadline: Skip("no K3S in the image"), ("boot",))
    phases.run("k3s-manifest", 10, lambda deadline: "never", ("k3s",))
    got = {p.name: (p.status, p.detail) for p in phases.phases}
    assert got["boot"] == (PASSED, "up")
    assert got["broken"][0] == FAILED and "division by zero" in got["broken"][1]
    assert got["after-broken"] == (NOT_RUN, "needs broken (FAILED)")
    # A skipped phase is never reported as passed, nor is what depends on it.
    assert got["k3s"] == (SKIPPED, "no K3S in the image")
    assert got["k3s-manifest"] == (SKIPPED, "no K3S in the image")
    assert not phases.ok


def test_a_phase_over_its_timeout_fails_even_if_its_check_passed() -> None:
    phases = Phases()
    phases.run("slow", 0.01, lambda deadline: time.sleep(0.05))
    assert phases.phases[0].status == FAILED
    assert "timeout" in phases.phases[0].detail


def test_a_phase_gets_its_deadline() -> None:
    seen = []
    before = time.monotonic()
    Phases().run("x", 30, lambda deadline: seen.append(deadline))
    assert before + 30 <= seen[0] <= time.monotonic() + 30


def test_only_passed_and_skipped_phases_make_a_passing_run() -> None:
    phases = Phases()
    phases.run("a", 1, lambda d: None)
    phases.run("b", 1, lambda d: Skip("why"))
    assert phases.ok


def test_the_table_shows_every_phase_with_its_result_and_times() -> None:
    phases = Phases()
    phases.run("master-banner", 900, lambda d: "BUFFY WILL PATROL TONIGHT")
    phases.run("k3s-nodes", 900, lambda d: Skip("image built without K3S (K3S_MODE=none)"))
    phases.run("agent-root", 300, lambda d: 1 / 0)
    console = Console(width=200, record=True, no_color=True)
    console.print(table(phases.phases))
    text = console.export_text()
    for want in ("master-banner", "passed", "SKIPPED", "K3S_MODE=none", "FAILED", "900 s"):
        assert want in text
    assert "1 passed · 1 FAILED · 1 SKIPPED · 0 not run" in text


def test_a_plan_runs_what_does_not_depend_on_each_other_at_once() -> None:
    seen: list[str] = []

    def step(name: str, seconds: float = 0.0, fail: bool = False):
        def check(deadline: float) -> str:
            seen.append(f"{name} start")
            time.sleep(seconds)
            seen.append(f"{name} end")
            if fail:
                raise Failed(f"{name} broke")
            return name

        return check

    phases = Phases()
    phases.run_plan(
        [
            Step("boot", 10, step("boot")),
            Step("slow-check", 10, step("slow-check", 0.3), ("boot",), ()),
            Step("agent", 10, step("agent", 0.1), ("boot",), ()),
            Step("broken", 10, step("broken", fail=True), ("agent",), ()),
            Step("after-broken", 10, step("after-broken"), ("broken",), ()),
            Step("reset", 10, step("reset"), ("agent",), ("slow-check",)),
            Step("last", 10, step("last")),  # after=None: after the step before it
        ]
    )
    got = {p.name: (p.status, p.detail) for p in phases.phases}
    assert list(got) == ["boot", "slow-check", "agent", "broken", "after-broken", "reset", "last"]
    assert got["broken"] == (FAILED, "broken broke")
    assert got["after-broken"] == (NOT_RUN, "needs broken (FAILED)")
    assert got["reset"] == (PASSED, "reset") and got["last"] == (PASSED, "last")
    # The agent ran while the slow check did; reset waited for the slow check (`after`).
    assert seen.index("agent end") < seen.index("slow-check end") < seen.index("reset start")
    assert seen.index("reset end") < seen.index("last start")
    start = {p.name: p.start for p in phases.phases}
    assert abs(start["slow-check"] - start["agent"]) < 0.2
    text = Console(width=200, record=True, no_color=True)
    text.print(table(phases.phases))
    assert "total 0 s" in text.export_text()  # the wall time, not the sum of the phases


def test_a_plan_that_waits_for_a_phase_it_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        Phases().run_plan([Step("a", 1, lambda d: None, ("nope",))])


def test_an_interrupted_plan_reports_the_running_phase_and_nothing_after() -> None:
    phases = Phases()
    release = threading.Event()

    def boot(deadline: float) -> str:
        release.wait(5)
        return "came up after the interruption"

    def interrupt_soon() -> None:
        time.sleep(0.3)
        phases.interrupt("interrupted (SIGTERM)")
        release.set()

    threading.Thread(target=interrupt_soon).start()
    phases.run_plan([Step("boot", 10, boot), Step("next", 10, lambda d: "ran")])
    got = {p.name: (p.status, p.detail) for p in phases.phases}
    assert got["boot"] == (FAILED, "interrupted (SIGTERM)")
    assert got["next"][0] in (NOT_RUN, FAILED) and got["next"] != (PASSED, "ran")


SIGTERM_MID_PLAN = """
import signal, sys, time
from scooby.testqemu.phases import Phases, Step

def stop(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
phases = Phases()
try:
    phases.run_plan([Step("boot", 60, lambda d: time.sleep(30)), Step("after", 60, lambda d: 1)])
except KeyboardInterrupt:
    phases.interrupt("interrupted (SIGTERM)")
print([(p.name, p.status, p.detail) for p in phases.phases], flush=True)
"""


def test_a_signal_reaches_the_plan_while_a_phase_runs_in_its_thread() -> None:
    """The scheduling thread takes the signal at once (a phase's thread cannot), so the run
    ends in seconds, not after the running phase's own wait."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_MID_PLAN], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    start = time.monotonic()
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert time.monotonic() - start < 5
    assert "('boot', 'FAILED', 'interrupted (SIGTERM)')" in out
    assert "('after', 'not run', '')" in out


def test_the_console_wait_sees_a_banner_line_written_piece_by_piece(tmp_path: Path) -> None:
    console = tmp_path / "vm.console.log"
    vm = qemuvm.VM("vm", "ns", console, ["sleep", "30"])
    vm.proc = subprocess.Popen(["sleep", "30"])
    vm.started = time.monotonic()
    console.write_bytes(b"[  OK  ] Starting Scooby: WILLOW IS ONLINE...\r\nWILL")

    def write_later() -> None:
        time.sleep(0.5)
        with console.open("ab") as f:
            f.write(b"OW IS ONLINE (without K3S)\r\n")

    threading.Thread(target=write_later).start()
    try:
        assert vm.wait_for("WILLOW IS ONLINE", time.monotonic() + 10) >= 0.5
        assert vm.banner_lines("WILLOW IS ONLINE") == ["WILLOW IS ONLINE (without K3S)"]
    finally:
        vm.proc.kill()
        vm.proc.wait()


def test_the_cpu_time_of_a_vm_is_its_process_s(tmp_path: Path) -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    vm = qemuvm.VM("vm", "ns", tmp_path / "c.log", [])
    assert vm.cpu_seconds() == 0.0  # not started
    vm.proc = subprocess.Popen([sys.executable, "-c", spin + "input()"], stdin=subprocess.PIPE)
    try:
        end = time.monotonic() + 60
        while vm.cpu_seconds() < 0.3 and time.monotonic() < end:
            time.sleep(0.05)  # it spins 0.3 s of CPU, then waits for its input
        assert 0.3 <= vm.cpu_seconds() < 5
    finally:
        vm.proc.communicate(b"\n")
    assert vm.cpu_seconds() == 0.0  # exited and reaped


def test_the_pi_banner_wait_scales_with_qemus_cpu_time() -> None:
    from scooby.testqemu.piboard import BANNER_CPU, BANNER_WALL, banner_overdue

    assert not banner_overdue(BANNER_WALL - 1, BANNER_CPU * 2, capped=False)
    assert not banner_overdue(BANNER_WALL * 1.5, BANNER_CPU - 1, capped=False)  # starved
    assert banner_overdue(BANNER_WALL, BANNER_CPU, capped=False)
    assert banner_overdue(1, 0, capped=True)  # the phase's own timeout bounds it


def test_a_failed_command_is_one_line() -> None:
    exc = subprocess.CalledProcessError(2, ["mcopy", "x"], stderr="line one\nline two\n")
    assert one_line(exc) == "`mcopy x` exited 2: line one line two"


# -- the boot ROM's DHCP ---------------------------------------------------------------------


def test_the_discover_frame_is_what_a_pi_boot_rom_sends() -> None:
    frame = bootrom.dhcp_frame("b8:27:eb:81:1a:52", 0x1234, bootrom.DISCOVER)
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("b827eb811a52")
    ip = frame[14:34]
    assert bootrom._checksum(ip) == 0  # a valid IPv4 header checksum
    assert ip[16:20] == b"\xff" * 4  # broadcast, from 0.0.0.0
    assert struct.unpack("!HH", frame[34:38]) == (68, 67)
    bootp = frame[42:]
    assert bootp[28:34] == bytes.fromhex("b827eb811a52")  # chaddr
    assert bootrom.PI_VENDOR_CLASS in bootp
    assert bytes([53, 1, bootrom.DISCOVER]) in bootp


def _reply_frame(xid: int, kind: int, options: dict[int, bytes]) -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4,
                        bytes([192, 168, 64, 65]), bytes([192, 168, 64, 1]), b"\0" * 4,
                        b"\0" * 16, b"", b"")  # fmt: skip
    opts = {53: bytes([kind]), **options}
    body = bootrom.DHCP_MAGIC + b"".join(bytes([k, len(v)]) + v for k, v in opts.items()) + b"\xff"
    udp = struct.pack("!HHHH", 67, 68, 8 + len(bootp + body), 0) + bootp + body
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([192, 168, 64, 1]), b"\xff" * 4)  # fmt: skip
    return b"\xff" * 6 + b"\x52\x54\x00\x00\x00\x01" + b"\x08\x00" + ip + udp


def test_an_offer_is_parsed_with_its_tftp_server() -> None:
    frame = _reply_frame(7, bootrom.OFFER, {54: bytes([192, 168, 64, 1]), 66: b"192.168.64.1\0"})
    reply = bootrom.parse_reply(frame, 7)
    assert reply is not None and reply.kind == bootrom.OFFER
    assert reply.yiaddr == ipaddress.IPv4Address("192.168.64.65")
    assert reply.server == ipaddress.IPv4Address("192.168.64.1")
    assert bootrom.parse_reply(frame, 8) is None  # another transaction
    assert bootrom.parse_reply(frame[:40], 7) is None  # truncated


def test_without_option_66_the_server_identifier_is_the_tftp_server() -> None:
    reply = bootrom.parse_reply(_reply_frame(9, bootrom.ACK, {54: bytes([10, 0, 0, 1])}), 9)
    assert reply is not None and str(reply.server) == "10.0.0.1"


def test_pxe_suboptions() -> None:
    menu = b"\x00\x00\x11Raspberry Pi Boot   "
    assert bootrom.pxe_suboptions(bytes([9, len(menu)]) + menu + b"\xff") == {9: menu}


# -- the agent's scratch disk ----------------------------------------------------------------


def test_a_gpt_partuuid_is_the_partition_uuid() -> None:
    script = qemuvm.scratch_script("D5F9E6C2-493C-48DA-BAF2-0C63DD7A36B1", 1 << 29)
    assert "label: gpt" in script
    assert "uuid=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1" in script


def test_an_mbr_partuuid_is_the_disk_id_and_partition_number() -> None:
    script = qemuvm.scratch_script("1a2b3c4d-03", 1 << 29)
    assert "label: dos" in script and "label-id: 0x1a2b3c4d" in script
    assert script.count("start=") == 3  # partitions 1 and 2 first, then 3


@pytest.mark.parametrize("bad", ["1a2b3c4d-05", "not-a-uuid"])
def test_a_partuuid_no_disk_can_carry_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        qemuvm.scratch_script(bad, 1 << 29)


@pytest.mark.parametrize("partuuid", ["d5f9e6c2-493c-48da-baf2-0c63dd7a36b1", "1a2b3c4d-02"])
def test_the_scratch_disk_carries_the_partuuid_and_an_ext4(tmp_path: Path, partuuid: str) -> None:
    disk = qemuvm.scratch_disk(tmp_path / "disk.img", partuuid, 64 * qemuvm.MIB)
    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]  # fmt: skip
    last = table["partitions"][-1]
    if table["label"] == "gpt":
        assert last["uuid"].lower() == partuuid
    else:  # MBR: PARTUUID = disk id + partition number
        assert (table["id"], last["node"][-1]) == ("0x1a2b3c4d", "2")
    probe = subprocess.run(
        ["blkid", "-p", "-O", str(last["start"] * 512), "-s", "TYPE", "-o", "value", str(disk)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "ext4"


def test_the_scratch_disk_can_carry_the_value_as_its_file_systems_uuid(tmp_path: Path) -> None:
    """agent-reboot's disk: the agent's value as the ext4 UUID (the original's agent files),
    under another PARTUUID."""
    value = "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1"
    other = "0b7e4a8e-8a3c-4d55-9f0e-3c1b2a4d5e6f"
    disk = qemuvm.scratch_disk(tmp_path / "disk.img", other, 64 * qemuvm.MIB, fs_uuid=value)
    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]  # fmt: skip
    last = table["partitions"][-1]
    assert last["uuid"].lower() == other
    probe = subprocess.run(
        ["blkid", "-p", "-O", str(last["start"] * 512), "-s", "UUID", "-o", "value", str(disk)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == value


# -- the master's external side ----------------------------------------------------------------


def test_user_net_is_restricted_and_forwards_to_loopback_only() -> None:
    got = qemuvm.user_netdev(
        ipaddress.IPv4Network("192.168.1.0/24"),
        ipaddress.IPv4Address("192.168.1.1"),
        ipaddress.IPv4Address("192.168.1.64"),
        [("tcp", 2222, 22), ("udp", 10069, 69)],
    ).split(",")
    assert got[:2] == ["user", "restrict=on"]
    assert "net=192.168.1.0/24" in got and "host=192.168.1.1" in got
    assert "hostfwd=tcp:127.0.0.1:2222-192.168.1.64:22" in got
    assert "hostfwd=udp:127.0.0.1:10069-192.168.1.64:69" in got
    assert all(":127.0.0.1:" in w for w in got if w.startswith("hostfwd="))


def test_the_test_takes_a_free_address_on_the_internal_network() -> None:
    net = ipaddress.IPv4Network("192.168.64.0/24")
    taken = {ipaddress.IPv4Address("192.168.64.254"), ipaddress.IPv4Address("192.168.64.1")}
    assert str(qemuvm.free_host(net, taken)) == "192.168.64.253/24"


def test_the_nfs_probe_is_an_rpc_null_call() -> None:
    payload = probe_payload("tcp", 2049)
    marker, xid, kind, rpcvers, program, version, procedure = struct.unpack("!7I", payload[:28])
    assert marker == 0x8000_0000 | (len(payload) - 4)
    assert (kind, rpcvers, program, version, procedure) == (0, 2, 100003, 3, 0)


def test_the_qemu_command_is_tcg_virt_with_the_nics_in_order(tmp_path: Path) -> None:
    argv = qemuvm.qemu_argv(tmp_path / "k", tmp_path / "i", "root=x", tmp_path / "c.log",
                            tmp_path / "d.qcow2", "qcow2",
                            [("user,restrict=on", "52:54:00:00:00:01"),
                             ("tap,ifname=t", "52:54:00:00:00:02")])  # fmt: skip
    text = " ".join(argv)
    # No kaslr-seed: no KASLR, so no KPTI and its TLB flush per system call under TCG.
    assert "-M virt,dtb-randomness=off -cpu cortex-a72 -smp 2" in text and "-accel" not in text
    assert "-nodefaults" in argv
    assert text.index("netdev=nic0,mac=52:54:00:00:00:01") < text.index("netdev=nic1")
    assert "cache=unsafe" in text and "i6300esb" not in text


def test_the_masters_qemu_command_can_have_a_watchdog_and_honour_flushes(tmp_path: Path) -> None:
    argv = qemuvm.qemu_argv(tmp_path / "k", tmp_path / "i", "root=x", tmp_path / "c.log",
                            tmp_path / "d.qcow2", "qcow2", [], watchdog=True,
                            cache="writeback")  # fmt: skip
    assert argv[argv.index("i6300esb") - 1] == "-device"
    assert f"file={tmp_path / 'd.qcow2'},format=qcow2,cache=writeback" in " ".join(argv)


def test_only_an_earlier_runs_evidence_is_cleared(tmp_path: Path) -> None:
    for name in ("master.console.log", "willow.console-2.log", "master.console.qemu.log",
                 "master-journal.txt", "phases.txt", "phases.json", "work/disk.img",
                 "notes.txt", "keep/me.log"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    clear_evidence(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ["keep", "keep/me.log", "notes.txt"]


def test_the_harness_edits_its_own_copy_of_the_tree_never_the_images(tmp_path: Path) -> None:
    from scooby.testqemu import pidtb

    nodes = "".join(
        f"{name} {{ compatible = \"x\"; status = \"okay\"; mmc-pwrseq = <1>; clocks = <1 0>; }};"
        for name in ("clock@7ef00000", "interrupt-controller@7ef00100", "i2c@7ef04500",
                     "i2c@7ef09500", "mmc@7e300000", "serial@7e215040")
    )  # fmt: skip
    source = tmp_path / "t.dts"
    source.write_text(f"/dts-v1/; / {{ soc {{ {nodes} }}; }};")
    image_dtb = tmp_path / "bcm2711-rpi-4-b.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", image_dtb, source], check=True)
    before = image_dtb.read_bytes()
    copy = pidtb.harness_copy(image_dtb, tmp_path / "copy.dtb", pidtb.RASPI4B)

    def get(dtb: Path, node: str, prop: str) -> str:
        done = subprocess.run(["fdtget", dtb, node, prop], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "<none>"

    assert image_dtb.read_bytes() == before
    for c in pidtb.RASPI4B:
        if c.prop and c.value is not None:
            assert get(copy, c.node, c.prop) == str(c.value)
            assert get(copy, c.node, "status") == "okay"
        elif c.prop:
            assert get(copy, c.node, c.prop) == "<none>" and get(copy, c.node, "status") == "okay"
        else:
            assert get(copy, c.node, "status") == "disabled", c.node
        assert c.reason in c.describe()
