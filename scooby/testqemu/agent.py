"""The agent's phases: the boot ROM's DHCP and TFTP, its NFS root and local disk, a write
that lands in its upper dir, `scooby-agent reset`, and a clean reboot."""

from __future__ import annotations

import shlex
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from scooby.core import layout
from scooby.testqemu.phases import Failed
from scooby.testqemu.ssh import check, console_wait, wait_ssh

DHCP_WAIT = 60  # seconds the boot ROM asks for a lease before the phase fails
PROBE = "/var/tmp/scooby-test-qemu-probe"  # written on the agent, looked for in its upper dir

# Each phase is a function of the running Session `s` and its deadline (time.monotonic()).


def agent_bootrom(s, deadline: float) -> str:
    from scooby.testqemu import bootrom

    agent = s.agent
    device = s.net.add_rom(agent.mac)
    try:
        # A Pi's ROM keeps asking; a minute without an answer is a master that won't.
        dhcp_by, ack = min(deadline, time.monotonic() + DHCP_WAIT), None
        while ack is None:
            try:
                ack = bootrom.lease(s.net.rom, device, agent.mac, attempts=2)
            except TimeoutError:
                if time.monotonic() > dhcp_by:
                    raise
        if ack.yiaddr != agent.ip or ack.options.get(60) != b"PXEClient":
            raise Failed(f"DHCP gave {ack.yiaddr} (vendor {ack.options.get(60)!r})")
        prefix = s.cluster.master.internal.network.prefixlen
        s.net.rom_address(f"{agent.ip}/{prefix}")
        folder = s.work / f"{agent.name}-boot"
        folder.mkdir(exist_ok=True)
        names = ("cmdline.txt", layout.KERNEL, layout.INITRD)
        # Three transfers at once: each is lock-step (a block, its ACK) and waits mostly on
        # the emulated master, so they overlap; the files and the server are the ROM's.
        with ThreadPoolExecutor(len(names)) as pool:
            fetch = partial(bootrom.tftp_get, s.net.rom, ack.server)
            files = list(pool.map(fetch, [f"{agent.pxe_id}/{name}" for name in names]))
        sizes = []
        for name, data in zip(names, files, strict=True):
            (folder / name).write_bytes(data)
            sizes.append(f"{name} {len(data) / 2**20:.1f} MiB")
    finally:
        s.net.drop_rom()
    return f"lease {ack.yiaddr} from {ack.server}; TFTP {agent.pxe_id}/: " + ", ".join(sizes)


def boot_agent(s, console_name: str) -> None:
    q = s.qemuvm
    folder = s.work / f"{s.agent.name}-boot"
    cmdline = q.virt_cmdline((folder / "cmdline.txt").read_text())
    console = s.out / console_name
    argv = q.qemu_argv(
        folder / layout.KERNEL,
        folder / layout.INITRD,
        cmdline,
        console,
        s.work / f"{s.agent.name}-disk.img",
        "raw",
        [("tap,ifname=tap-agent,script=no,downscript=no", s.agent.mac)],
    )
    s.agent_vm = q.VM(s.agent.name, s.net.ns, console, argv)
    s.start_vm(s.agent_vm)


def agent_online(s, deadline: float, key: str) -> str:
    banner = f"{s.agent.name.upper()} IS ONLINE"
    seconds = console_wait(s.agent_vm, banner, deadline)
    s.timings[key] = seconds
    line = s.agent_vm.banner_lines(banner)[0]
    return f"{line!r} {seconds:.0f} s after QEMU started"


def agent_banner(s, deadline: float) -> str:
    boot_agent(s, f"{s.agent.name}.console.log")
    return agent_online(s, deadline, "qemu_start_to_agent_banner")


def agent_root(s, deadline: float) -> str:
    wait_ssh(s.agent_link(), deadline)
    master_ip = s.cluster.master.internal.ip
    want = f"{master_ip}:{layout.AGENT_MOUNTS}/{s.agent.name}"
    # Four independent readings at once, each a channel of the one SSH connection.
    with ThreadPoolExecutor(4) as pool:
        root = pool.submit(check, s.agent_cmd, "findmnt -n -o FSTYPE,SOURCE,OPTIONS /", deadline)
        network = pool.submit(network_left_alone, s, deadline)
        disk = pool.submit(rancher_disk, s, deadline, "PARTUUID")
        sshd = pool.submit(keys_only, s, deadline)
        root = root.result().split()
        if root[:1] != ["nfs"] or root[1:2] != [want]:
            raise Failed(f"/ is {' '.join(root[:2])}, not nfs {want}")
        # cmdline.txt's cache options reached the kernel and the boot's remount kept them.
        options = set(root[2].split(",")) if len(root) > 2 else set()
        missing = [o for o in layout.AGENT_ROOT_NFS_CACHE.split(",") if o not in options]
        if missing:
            raise Failed(f"/ is mounted without {','.join(missing)}: {' '.join(root[2:])}")
        network.result()
        rancher = disk.result()
        sshd.result()
    return (
        f"/ = nfs {want}, {layout.AGENT_ROOT_NFS_CACHE}; "
        f"/var/lib/rancher = {rancher}; cloud-init left eth0 to the kernel; sshd keys only"
    )


# What the running sshd applies (`sshd -T`, drop-ins and cloud-init's edits included), not
# what a file says: the agent's seed leaves the policy to sshd_config.d/scooby.conf.
_KEYS_ONLY = {
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitrootlogin": "no",
    "authenticationmethods": "publickey",
}


def keys_only(s, deadline: float) -> None:
    lines = check(s.agent_cmd, "sudo sshd -T", deadline).splitlines()
    applied = dict(ln.split(None, 1) for ln in lines if " " in ln)
    wrong = {k: applied.get(k, "-") for k, v in _KEYS_ONLY.items() if applied.get(k) != v}
    if wrong:
        raise Failed(f"the agent's sshd allows more than keys: {wrong}")


# cloud-init's own networkd files, and whether networkd runs: the kernel's ip=dhcp configured
# eth0 under the NFS root, and network-config=disabled keeps cloud-init off it (docs/nodes.md).
_CLOUD_INIT_NETWORK = (
    "find /etc/systemd/network /run/systemd/network -name '*cloud-init*' 2>/dev/null;"
    " systemctl is-active systemd-networkd || true"
)


def network_left_alone(s, deadline: float) -> None:
    *files, networkd = check(s.agent_cmd, _CLOUD_INIT_NETWORK, deadline).split()
    if files or networkd == "active":
        raise Failed(
            f"cloud-init configured the network under the NFS root: {' '.join(files) or '-'}; "
            f"systemd-networkd {networkd}"
        )


def rancher_disk(s, deadline: float, tag: str) -> str:
    """/var/lib/rancher is the ext4 whose TAG (PARTUUID or UUID) is the agent's value."""
    rancher = s.agent_cmd("findmnt -n -o FSTYPE,SOURCE /var/lib/rancher", 60).stdout.split()
    if rancher[:1] != ["ext4"]:
        disks = s.agent_cmd("lsblk -n -o NAME,PARTUUID,UUID,FSTYPE", 60).stdout
        unit = s.agent_cmd("systemctl status --no-pager -n 5 var-lib-rancher.mount", 60)
        raise Failed(
            f"/var/lib/rancher is {' '.join(rancher) or 'not mounted'}; disks: "
            f"{' '.join(disks.split())}; {' '.join(unit.stdout.split())[-600:]}"
        )
    value = check(s.agent_cmd, f"lsblk -n -o {tag} {shlex.quote(rancher[1])}", deadline).strip()
    if value.lower() != s.agent.rancher_partuuid:
        raise Failed(f"/var/lib/rancher is on {tag} {value}")
    return f"ext4 {rancher[1]} {tag}={value}"


# The disk's way out and back in: its PCI function removed, then found again by a rescan.
# One command (one round trip to the emulated agent): which disk, unmount, remove its PCI
# function, then wait for udev to remove the link.
_UNPLUG = (
    "dev=$(findmnt -n -o SOURCE /var/lib/rancher)"
    " && sudo systemctl stop var-lib-rancher.mount"
    ' && pci=$(readlink -f "/sys/class/block/$(lsblk -n -o PKNAME "$dev")/device/..")'
    ' && echo 1 | sudo tee "$pci/remove" >/dev/null'
    f" && sudo udevadm wait --removed --timeout=60 {layout.RANCHER_DEVICE} && echo gone"
)
_REPLUG = "echo 1 | sudo tee /sys/bus/pci/rescan >/dev/null"


def agent_late_disk(s, deadline: float) -> str:
    """A local disk that appears after fstab's device timeout (a slow USB disk; udev late on a
    loaded agent) is still mounted, with nothing waiting for it: the disk is unmounted, its
    PCI device removed, then found again, and /var/lib/rancher must come back by itself."""
    # Each wait is an event on the agent (udev's remove and add of the link), in one command:
    # no polling over SSH. The mount then follows the link at once (the rule's SYSTEMD_WANTS);
    # that last step is watched on the agent every 0.2 s.
    gone = check(s.agent_cmd, _UNPLUG, deadline)
    if gone.strip() != "gone":
        raise Failed(f"{layout.RANCHER_DEVICE} still there after its PCI device was removed")
    started = time.monotonic()
    back = s.agent_cmd(
        f"{_REPLUG} && sudo udevadm wait --timeout=120 {layout.RANCHER_DEVICE}"
        " && for i in $(seq 900); do findmnt -n -o FSTYPE,SOURCE /var/lib/rancher && exit 0;"
        " sleep 0.2; done; exit 1",
        deadline - time.monotonic(),
    )
    got = back.stdout.split()
    if back.returncode != 0 or got[:1] != ["ext4"]:
        unit = s.agent_cmd("systemctl status --no-pager -n 5 var-lib-rancher.mount", 60)
        raise Failed(
            f"not mounted again ({(back.stdout + back.stderr).strip()[-200:]!r}): "
            f"{' '.join(unit.stdout.split())[-600:]}"
        )
    return (
        f"disk removed and found again: /var/lib/rancher = ext4 {got[1]} "
        f"{time.monotonic() - started:.1f} s later, with nothing waiting for it"
    )


def agent_write(s, deadline: float) -> str:
    check(s.agent_cmd, f"echo {s.token} | sudo tee {PROBE} >/dev/null && sync", deadline)
    upper = f"{layout.AGENT_UPPERS}/{s.agent.name}{PROBE}"
    while True:
        got = s.master_cmd(f"sudo cat {upper}", deadline - time.monotonic())
        if got.returncode == 0 and got.stdout.strip() == s.token:
            return f"{PROBE} on {s.agent.name} is {upper} on the master"
        if time.monotonic() > deadline:
            raise Failed(f"{upper}: {(got.stdout + got.stderr).strip()!r}, not the token")
        time.sleep(2)


def agent_reset(s, deadline: float) -> str:
    # Power the agent off first, as `scooby-agent reset` asks. Its connection drops as it
    # goes down: not an SSH failure to retry. QEMU exits when the guest powers off.
    s.agent_link().run("sudo systemctl poweroff", 30, retry=False)
    halted = "powered off" if s.agent_vm.exited(min(120, deadline - time.monotonic())) else (
        "stopped (poweroff hung)")  # fmt: skip
    s.agent_vm.stop()
    s.agent_link().close()
    # The boot ROM's part of the next boot (agent-reboot: DHCP, then TFTP of the same three
    # files) runs beside the reset. It reads only dnsmasq's DHCP and TFTP, which the reset
    # leaves alone, and the agent's VM starts only once the reset is done, as a Pi powered
    # on after `scooby-agent reset` would see it. Both finish before this phase does.
    with ThreadPoolExecutor(1) as pool:
        rom = pool.submit(agent_bootrom, s, deadline)
        detail = _reset(s, deadline)
        try:
            s.rom_again = rom.result()
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, this phase fails
            raise Failed(f"the boot ROM, again for agent-reboot: {exc}") from None
    return f"agent {halted}; {detail}"


def _reset(s, deadline: float) -> str:
    out = check(s.master_cmd, f"sudo {layout.SCOOBY_AGENT} reset {s.agent.name}",
                      deadline)  # fmt: skip
    upper = f"{layout.AGENT_UPPERS}/{s.agent.name}"
    left = check(s.master_cmd, f"sudo find {upper} -mindepth 1", deadline).split()
    if left:
        raise Failed(f"{upper} not empty after reset: {left[:5]}")
    listing = check(s.master_cmd, f"sudo {layout.SCOOBY_AGENT} list", deadline)
    row = next((ln.split() for ln in listing.splitlines() if ln.startswith(s.agent.name)), [])
    if row[-2:] != ["yes", "yes"]:
        raise Failed(f"not mounted and exported again: {' '.join(row)!r}")
    return f"{out.strip().splitlines()[-1]}; upper dir empty"


def agent_reboot(s, deadline: float) -> str:
    # The agent is off (agent-reset): its disk now carries the value as its file system's
    # UUID instead, under a random PARTUUID (the original's agent files held that form).
    # agent-reset played the boot ROM again beside the reset: the files it fetched are used.
    tag = "UUID" if disk_by_fs_uuid(s) else "PARTUUID"
    boot_agent(s, f"{s.agent.name}.console-2.log")
    banner = agent_online(s, deadline, "qemu_start_to_agent_banner_after_reset")
    wait_ssh(s.agent_link(), deadline)
    with ThreadPoolExecutor(2) as pool:  # two readings at once
        disk = pool.submit(rancher_disk, s, deadline, tag)
        gone = s.agent_cmd(f"test ! -e {PROBE}", deadline - time.monotonic())
        if gone.returncode != 0:
            raise Failed(f"{PROBE} survived the reset")
        return (
            f"ROM again: {s.rom_again}; {banner}; {PROBE} gone; /var/lib/rancher = {disk.result()}"
        )


def disk_by_fs_uuid(s) -> bool:
    """Remake the agent's disk with its value as the ext4 UUID. An MBR-style PARTUUID
    (`xxxxxxxx-NN`) is no file system UUID: that disk stays as it is."""
    value = s.agent.rancher_partuuid
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    s.qemuvm.scratch_disk(s.work / f"{s.agent.name}-disk.img", str(uuid.uuid4()), fs_uuid=value)
    return True
