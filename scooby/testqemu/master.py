"""The master's phases: it boots, answers SSH, runs its services, exports, NATs, and
shows the outside only SSH and the K3S API."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from scooby.core import layout
from scooby.testqemu import evidence
from scooby.testqemu.phases import Failed
from scooby.testqemu.probes import EXTERNAL_PROBES, PROBE_NAMES, probe, probe_port
from scooby.testqemu.ssh import API_PORT, SSH_PORT, check, console_wait, wait_ssh
from scooby.util import diskimage

# Each phase is a function of the running Session `s` and its deadline (time.monotonic()).


def prepare(s, deadline: float) -> str:
    q = s.qemuvm
    files = q.boot_files(
        s.image, s.work / "master-boot", (layout.KERNEL, layout.INITRD, "cmdline.txt")
    )
    cmdline = q.virt_cmdline(files["cmdline.txt"].read_text())
    disk = q.overlay(s.image, s.work / "master.qcow2")
    q.scratch_disk(s.work / f"{s.agent.name}-disk.img", s.agent.rancher_partuuid)
    s.net.create(s.test_address)
    master = s.cluster.master
    forwards = [("tcp", SSH_PORT, 22), ("tcp", API_PORT, layout.K3S_API_PORT)]
    forwards += [(proto, probe_port(port), port) for proto, port in EXTERNAL_PROBES]
    external = q.user_netdev(master.external.network, master.gateway, master.external.ip, forwards)
    internal = f"tap,ifname={s.net.tap('tap-master')},script=no,downscript=no"
    s.net.tap("tap-agent")
    console = s.out / "master.console.log"
    argv = q.qemu_argv(
        files[layout.KERNEL],
        files[layout.INITRD],
        cmdline,
        console,
        disk,
        "qcow2",
        [(external, "52:54:00:5c:00:01"), (internal, "52:54:00:5c:00:02")],
        watchdog=True,  # the master's systemd feeds it (docs/day2.md, 4.3)
        cache=s.disk_cache,
    )
    s.master = q.VM("master", s.net.ns, console, argv)
    return f"cmdline: {cmdline}"


def master_banner(s, deadline: float) -> str:
    s.start_vm(s.master)
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    seconds = console_wait(s.master, banner, deadline)
    s.timings["qemu_start_to_master_banner"] = seconds
    line = s.master.banner_lines(banner)[0]
    return f"{line!r} {seconds:.0f} s after QEMU started"


def master_ssh(s, deadline: float) -> str:
    wait_ssh(s.master_link(), deadline)
    release = check(s.master_cmd, f"cat {layout.RELEASE_FILE}", deadline)
    for line in release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "K3S_MODE":
            s.k3s_mode = value.strip().strip("\"'")
    return f"{s.user}@master; {layout.RELEASE_FILE}: K3S_MODE={s.k3s_mode or '?'}"


def master_services(s, deadline: float) -> str:
    units = ["dnsmasq", "lighttpd", "nfs-server", "netfilter-persistent"]
    if s.k3s_mode == layout.EMBEDDED:
        units.append("k3s")
    done = s.master_cmd(f"systemctl is-active {' '.join(units)}", deadline - time.monotonic())
    states = dict(zip(units, done.stdout.split(), strict=False))
    bad = {u: s for u, s in states.items() if s != "active"}
    if bad or done.returncode != 0:
        failed = s.master_cmd("systemctl --failed --no-legend --plain", 60).stdout
        raise Failed(f"not active: {bad or states}; failed units: {' '.join(failed.split())}")
    failed = s.master_cmd("systemctl --failed --no-legend --plain", 60).stdout.split()
    units_failed = [w for w in failed if "." in w and not w.startswith("●")]
    note = f"; other failed units: {' '.join(units_failed)}" if units_failed else ""
    return "active: " + ", ".join(units) + note


def master_exports(s, deadline: float) -> str:
    base = check(s.master_cmd, f"findmnt -n -o FSTYPE {layout.AGENT_BASE}", deadline).strip()
    if base != "squashfs":
        raise Failed(f"{layout.AGENT_BASE} is {base or 'not mounted'}, not the squashfs")
    # What the agents boot comes with the root slot (an A/B deploy changes it, nothing else):
    # the squashfs and the shared layer are on the file system mounted at /, not on p4.
    for path in (layout.AGENT_BASE_IMAGE, layout.AGENT_SHARED):
        on = check(s.master_cmd, f"findmnt -n -o TARGET -T {path}", deadline).strip()
        if on != "/":
            raise Failed(f"{path} is on the file system mounted at {on}, not the root slot")
    exports = check(s.master_cmd, "sudo exportfs -v", deadline)
    found = []
    for agent in s.cluster.agents:
        merged = f"{layout.AGENT_MOUNTS}/{agent.name}"
        fstype = check(s.master_cmd, f"findmnt -n -o FSTYPE {merged}", deadline)
        if fstype.strip() != "overlay":
            raise Failed(f"{merged} is {fstype.strip() or 'not mounted'}, not an overlay")
        flat = " ".join(exports.split())
        if f"{merged} {agent.ip}(" not in flat:
            raise Failed(f"{merged} is not exported to {agent.ip}: {flat[-300:]!r}")
        found.append(f"{merged} -> {agent.ip}")
    return "base squashfs (on the root slot); overlay + export: " + ", ".join(found)


def master_nat(s, deadline: float) -> str:
    ext = s.cluster.master.external.device
    nat = check(s.master_cmd, "sudo iptables -t nat -S POSTROUTING", deadline)
    rule = f"-A POSTROUTING -o {ext} -j MASQUERADE"
    if rule not in nat:
        raise Failed(f"no {rule!r} in the nat table: {' '.join(nat.split())!r}")
    forward = check(s.master_cmd, "cat /proc/sys/net/ipv4/ip_forward", deadline)
    forward = forward.strip()
    if forward != "1":
        raise Failed(f"net.ipv4.ip_forward is {forward}")
    return f"{rule}; ip_forward=1"


def external_isolation(s, deadline: float) -> str:
    """The external side reaches SSH and the K3S API only; NFS, TFTP, DHCP, DNS and the
    seeds are filtered. Probed for real from both sides: each daemon answers on the
    internal network (so it runs and the probe works), and the same probe through the
    user-net forward onto the master's external address gets nothing."""
    ext = s.cluster.master.external.device
    rules = check(s.master_cmd, "sudo iptables -S INPUT", deadline)
    if "-P INPUT DROP" not in rules:
        raise Failed(f"INPUT policy is not DROP: {' '.join(rules.split())!r}")
    open_ports = set()
    for line in rules.splitlines():
        words = line.split()
        if f"-i {ext}" in line and words[-1] == "ACCEPT":
            if "--dport" not in words:
                raise Failed(f"{ext} accepts everything: {line!r}")
            open_ports.add(int(words[words.index("--dport") + 1]))
    if not open_ports <= {22, layout.K3S_API_PORT}:
        raise Failed(f"{ext} accepts ports {sorted(open_ports)}")
    internal_ip = str(s.cluster.master.internal.ip)
    jobs = []
    for proto, port in EXTERNAL_PROBES:
        jobs.append(("internal", proto, port, internal_ip, port))
        jobs.append(("external", proto, port, "127.0.0.1", probe_port(port)))
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda j: probe(s.net.ns, *j[1:]), jobs))
    wrong = []
    for (side, proto, port, _h, _p), answered in zip(jobs, answers, strict=True):
        if answered != (side == "internal"):
            verb = "answers" if answered else "does not answer"
            wrong.append(f"{proto}/{port} {verb} on the {side} side")
    if wrong:
        raise Failed("; ".join(wrong))
    names = ", ".join(f"{PROBE_NAMES[p]} {t}/{p}" for t, p in EXTERNAL_PROBES)
    return f"{ext} accepts only tcp {sorted(open_ports)}; unreachable from outside: {names}"


# Written through the bind mount, read on the data partition itself.
# The master's running `scooby-slot write` (the script itself, run through its #! line, not
# sudo or the shell): its bytes written so far, from /proc/PID/io. The tests that cut a slot
# write (a power cut: QEMU killed) wait for an amount, not for time.
SLOT_WRITTEN = (f"sudo sh -c 'pid=$(pgrep -f \"^/usr/bin/python3 {layout.SCOOBY_SLOT} write\")"
                " && grep ^wchar /proc/$pid/io'")  # fmt: skip
SLOT_KILL_AFTER = 64 << 20  # bytes written to the slot when those tests kill QEMU


def slot_written(s) -> int | None:
    """Bytes the master's `scooby-slot write` has written so far; None while none runs."""
    done = s.master_cmd(SLOT_WRITTEN, 60)
    return int(done.stdout.split()[-1]) if done.returncode == 0 else None


DATA_PROBE = "/var/lib/scooby/test-qemu-probe"
DATA_PROBE_KEPT = f"{layout.DATA_MOUNT}/scooby/test-qemu-probe"


def data_device(s, deadline: float) -> str:
    """The device of the data partition (its PARTUUID: partition 4 of this image) and what
    is mounted from it: the data partition itself and each state folder over its path."""
    partuuid = layout.partuuid(s.cluster.master.hostname, layout.DATA_PARTITION)
    mounted_on = "findmnt -n -o SOURCE --mountpoint "
    commands = [f"readlink -f /dev/disk/by-partuuid/{partuuid}",
                mounted_on + layout.DATA_MOUNT,
                *(mounted_on + on for on, _ in layout.DATA_BINDS)]  # fmt: skip
    dev, mounted, *binds = [out.strip() for out in readings(s.master_cmd, commands, deadline)]
    if mounted != dev:
        raise Failed(f"{layout.DATA_MOUNT} is {mounted or 'not mounted'}, not {dev} (p4)")
    for (on_master, name), got in zip(layout.DATA_BINDS, binds, strict=True):
        if got != f"{dev}[/{name}]":
            raise Failed(f"{on_master} is {got or 'not mounted'}, not {dev}[/{name}]")
    return dev


def readings(run, commands: list[str], deadline: float) -> list[str]:
    """Each command's output, all at once: independent reads, each a channel of the VM's one
    SSH connection (a round trip to an emulated CPU each). The first failure is raised."""
    with ThreadPoolExecutor(len(commands)) as pool:
        done = [pool.submit(check, run, command, deadline) for command in commands]
        return [future.result() for future in done]


def identity(s, deadline: float) -> dict[str, str]:
    """What must survive a reboot and a new root slot, read on the master."""
    keys = f"{layout.DATA_SSH}/ssh_host_ed25519_key.pub"
    commands = {
        "machine-id": "cat /etc/machine-id",
        "kept machine-id": f"cat {layout.DATA_MACHINE_ID}",
        "host key": f"cat {keys}",
        "probe": f"sudo cat {DATA_PROBE_KEPT}",
        "agent token": f"sudo sha256sum {layout.K3S_AGENT_TOKEN_MASTER}",
    }
    outs = dict(zip(commands, readings(s.master_cmd, [*commands.values()], deadline), strict=True))
    return {
        **{name: out.strip() for name, out in outs.items()},
        "host key": outs["host key"].split()[1],
        "agent token": outs["agent token"].split()[0],
    }


def master_data(s, deadline: float) -> str:
    """The state is on partition 4: mounted from it, bound over its paths, the SSH host keys
    sshd uses and the machine-id kept there, and the partition grown to the disk's end."""
    dev = data_device(s, deadline)
    check(s.master_cmd, f"echo {s.token} | sudo tee {DATA_PROBE} >/dev/null && sync", deadline)
    s.master_identity = identity(s, deadline)
    if s.master_identity["probe"] != s.token:
        raise Failed(f"{DATA_PROBE} is not {DATA_PROBE_KEPT}")
    if s.master_identity["machine-id"] != s.master_identity["kept machine-id"]:
        raise Failed(f"/etc/machine-id differs from {layout.DATA_MACHINE_ID}: {s.master_identity}")
    hostkeys = check(s.master_cmd, "sudo sshd -T | grep -i '^hostkey '", deadline).split()[1::2]
    elsewhere = [k for k in hostkeys if not k.startswith(layout.DATA_SSH + "/")]
    # /etc/ssh holds links into the data partition, no key of its own (cloud-init's made none).
    own = f"find /etc/ssh -name 'ssh_host_*' ! -lname '{layout.DATA_SSH}/*'"
    in_etc = check(s.master_cmd, own, deadline).split()
    if elsewhere or in_etc or not hostkeys:
        raise Failed(f"sshd's host keys: {hostkeys}; not links into the data partition: {in_etc}")
    size = int(check(s.master_cmd, f"df -B1 --output=size {layout.DATA_MOUNT} | tail -1",
                     deadline))  # fmt: skip
    built = diskimage.partition(s.image, layout.DATA_PARTITION).size
    if size <= built:
        raise Failed(f"{layout.DATA_MOUNT} is {size} bytes: not grown from the image's {built}")
    return (f"{layout.DATA_MOUNT} = {dev}, grown {built >> 20} -> {size >> 20} MiB; "
            f"{', '.join(p for p, _ in layout.DATA_BINDS)} bound from it; "
            f"machine-id and {len(hostkeys)} sshd host keys there")  # fmt: skip


def master_reboot(s, deadline: float) -> str:
    """A clean reboot: the machine-id, the SSH host key, the join token and a file written
    through a bind mount are the same after it, on the data partition again."""
    evidence.save_agent_journal(s)  # the agent's root is on the master: read it while it is up
    # Nothing on the agent is checked after this, and its cloud-init's last stages (and its
    # NFS client's recovery once the master is back) took the CPU the master boots with.
    if s.agent_vm is not None:
        s.agent_vm.stop()
    before = check(s.master_cmd, "cat /proc/sys/kernel/random/boot_id", deadline).strip()
    since = s.master.console.stat().st_size
    # The connection drops as the master goes down: not an SSH failure to retry.
    s.master_link().run("sudo systemctl reboot", 30, retry=False)
    s.master_link().close()
    started = time.monotonic()
    banner = f"{s.cluster.master.hostname.upper()} WILL PATROL TONIGHT"
    console_wait(s.master, banner, deadline, since)
    s.timings["master_reboot_to_banner"] = time.monotonic() - started
    wait_ssh(s.master_link(), deadline)
    after = check(s.master_cmd, "cat /proc/sys/kernel/random/boot_id", deadline).strip()
    if after == before:
        raise Failed(f"boot_id {before} unchanged: the master did not reboot")
    data_device(s, deadline)
    now = identity(s, deadline)
    changed = {k: (v, now[k]) for k, v in s.master_identity.items() if now[k] != v}
    if changed:
        raise Failed(f"changed by the reboot: {changed}")
    seconds = s.timings["master_reboot_to_banner"]
    return f"banner {seconds:.0f} s after `systemctl reboot`; same {', '.join(now)}"
