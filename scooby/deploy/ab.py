"""The laptop's side of an A/B deploy (docs/day2.md 4.3): a plan that needs a reboot.

    build        the new image with scooby's own build (cached stages), into WORK/scooby.img
    extract      partition 2's ext4 out of it (offsets from its MBR), shrunk to the master's
                 slot when its partition is larger, and its sha256
    boot check   the new image's boot partition against the master's /boot/firmware: A/B
                 does not protect p1 (shared by both slots), so a change is refused unless
                 --allow-kernel-change, which writes the changed files after the slot
    write        zstd over SSH into `sudo scooby-slot write --bytes N --sha256 HEX` (the
                 master writes the inactive slot, reads it back, checks the sha256)
    trial        `sudo scooby-slot trial --reboot`, then wait (bounded, a progress line every
                 30 s) until the master has decided: committed (the health check passed on
                 the new slot) or back on the old slot (failed, or its deadline passed)
    live part    once committed: what lives on the data partition (layers, manifests) goes
                 the live way, planned against the record the commit left

Every failure is one line `HOST: error: MESSAGE`. Nothing on the master changes before the
write has been verified there (scooby-slot's contract), and the master returns to its
committed slot by itself if anything after that goes wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.deploy.plan import Plan
from scooby.deploy.remote import Target

SLOT = "/usr/local/sbin/scooby-slot"  # the master's half (status/write/trial/commit/rollback)
BOOT_MOUNT = "/boot/firmware"
SLOTS = {"a": layout.ROOT_PARTITION, "b": layout.SLOT_B_PARTITION}  # slot -> partition
# The master's release file K3S_MODE -> the build's --k3s: the new image carries K3S the way
# the running one does.
K3S_BUILD = {layout.EMBEDDED: "embed", layout.NO_K3S: "none", layout.FIRST_BOOT: "auto"}
ZSTD = ("zstd", "-q", "-c", "-T0", "-3")  # a root file system as it is sent (or published)
WAIT = 1800  # seconds for the trial: two boots and the master's own health deadline (10 min)
POLL = 10  # seconds between looks at a rebooting master
PROGRESS = 30  # seconds between progress lines while waiting or sending
# While the master reboots, each look gives up quickly instead of waiting on a dead peer.
QUICK = ("ConnectTimeout=10", "ServerAliveInterval=5", "ServerAliveCountMax=3")
# Files on the data partition: a new slot does not bring them, the live part does.
DATA_PREFIXES = tuple(f"{on_master}/" for on_master, _ in layout.DATA_BINDS)

Say = Callable[[str], None]


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def on_data(path: str) -> bool:
    return path.startswith(DATA_PREFIXES)


def boot_paths(p: Plan) -> list[str]:
    return [path for path in p.write + p.remove if path.startswith(f"{BOOT_MOUNT}/")]


def sent_by_slot(p: Plan) -> tuple[list[str], list[str]]:
    """(paths that come with the new slot, paths applied live after the commit)."""
    paths = p.write + p.remove
    return [x for x in paths if not on_data(x)], [x for x in paths if on_data(x)]


def describe(p: Plan, allow_kernel_change: bool) -> list[str]:
    """What `--dry-run` adds for a plan that needs a reboot: what would be sent, and when."""
    in_slot, live = sent_by_slot(p)
    lines = [
        f"  send    a new image's root file system (partition {layout.ROOT_PARTITION}, built"
        " here, zstd over SSH) into the master's inactive slot: "
        f"{len(in_slot)} changed files come with it",
        "  then    a trial boot of that slot; the master commits it when its health check"
        " passes, or returns to the current slot by itself",
    ]
    if live:
        lines.append(f"  then    live, once committed: {len(live)} files on the data partition")
    boot = boot_paths(p)
    if boot and not allow_kernel_change:
        lines.append(
            f"  REFUSED the boot partition changes ({', '.join(boot)}): A/B does not protect"
            " it; --allow-kernel-change to write it anyway"
        )
    lines.append(
        "  check   after the build, before anything is sent: the new boot partition against"
        f" the master's {BOOT_MOUNT}, and the root's size against the master's slot"
    )
    return lines


# -- the master's slots ---------------------------------------------------------------------


def parse_status(text: str) -> dict[str, str]:
    """`scooby-slot status`'s KEY=VALUE lines, as a shell reads them (a value with spaces,
    LAST's, comes quoted)."""
    status = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.isidentifier():
            try:
                status[key] = " ".join(shlex.split(value))
            except ValueError:
                status[key] = value.strip()
    return status


def _detail(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or "").strip().splitlines()
    return lines[-1] if lines else f"ssh exit {done.returncode}, no message"


def _ssh(target: Target, command: str, timeout: float, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            target.ssh(command), capture_output=True, text=True, timeout=timeout, **kw
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(target.ssh(command), 255, "", "timed out")


def look(target: Target, timeout: float = 60) -> tuple[str, dict[str, str]]:
    """(the master's boot_id, `scooby-slot status`) in one connection."""
    done = _ssh(target, f"cat /proc/sys/kernel/random/boot_id && sudo {SLOT} status", timeout)
    if done.returncode != 0:
        hint = ""
        if "not found" in done.stderr:
            hint = " (an image from before A/B deploys has no scooby-slot: flash it once more)"
        raise ScoobyError(error(target.host, None, f"sudo {SLOT} status: {_detail(done)}{hint}"))
    boot_id, _, rest = done.stdout.partition("\n")
    return boot_id.strip(), parse_status(rest)


def slot_bytes(target: Target) -> dict[str, int]:
    """Each root slot's partition size on the master, found from the booted root's PARTUUID
    (DISKID-NN: the disk's identifier, then the partition number)."""
    script = "set -e; id=$(findmnt -no PARTUUID /); " + "; ".join(
        f"echo {slot} $(blockdev --getsize64 /dev/disk/by-partuuid/${{id%-*}}-{n:02d})"
        for slot, n in SLOTS.items()
    )
    done = _ssh(target, f"sudo sh -c {shlex.quote(script)}", 60)
    sizes = dict(line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)
    if done.returncode != 0 or set(sizes) != set(SLOTS):
        raise ScoobyError(
            error(target.host, None, f"cannot read the master's slot sizes: {_detail(done)}")
        )
    return {slot: int(size) for slot, size in sizes.items()}


def master_k3s_mode(target: Target) -> str:
    done = _ssh(target, f"cat {layout.RELEASE_FILE}", 60)
    for line in done.stdout.splitlines():
        if line.startswith("K3S_MODE="):
            return line.split("=", 1)[1].strip()
    raise ScoobyError(
        error(target.host, None, f"cannot read K3S_MODE from {layout.RELEASE_FILE}: "
              f"{_detail(done)}")
    )  # fmt: skip


def master_boot_sums(target: Target) -> dict[str, str]:
    """sha256 of every file in the master's boot partition, by its path there."""
    script = f"cd {BOOT_MOUNT} && find . -type f -exec sha256sum {{}} +"
    done = _ssh(target, f"sudo sh -c {shlex.quote(script)}", 300)
    if done.returncode != 0:
        raise ScoobyError(error(target.host, None, f"cannot read {BOOT_MOUNT}: {_detail(done)}"))
    sums = {}
    for line in done.stdout.splitlines():
        digest, _, path = line.partition("  ")
        sums[path.removeprefix("./")] = digest
    return sums


def boot_changes(new: dict[str, str], master: dict[str, str]) -> list[str]:
    """The new boot partition's files that the master lacks or holds otherwise. A file only
    the master has stays (nothing is removed from p1)."""
    return sorted(path for path, digest in new.items() if master.get(path) != digest)


def boot_install(folder: str = BOOT_MOUNT) -> str:
    """The shell run (as root) on the master to put new boot files in place: a tar of the
    files and their SHA256SUMS on stdin, unpacked beside them on the same FAT file system,
    checked, and only then each renamed over its target, then synced. A damaged stream
    changes nothing. Not protected against power loss mid-way (p1 is not slotted)."""
    return (
        "set -eu; "
        f"cd {shlex.quote(folder)}; "
        'new=.scooby-boot-new; rm -rf "$new"; mkdir "$new"; '
        "trap 'rm -rf \"$new\"' EXIT; "
        'tar -x -f - -C "$new"; '
        '(cd "$new" && sha256sum --quiet --strict -c SHA256SUMS); '
        'rm "$new/SHA256SUMS"; '
        '(cd "$new" && find . -type f) | while read -r f; do '
        'mkdir -p "$(dirname "$f")"; mv -f "$new/$f" "$f"; done; '
        "sync"
    )


def boot_tar(files: dict[str, Path], sums: dict[str, str]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, src in sorted(files.items()):
            tar.add(src, arcname=name, recursive=False)
        lines = "".join(f"{sums[name]}  {name}\n" for name in sorted(files)).encode()
        info = tarfile.TarInfo("SHA256SUMS")
        info.size = len(lines)
        tar.addfile(info, io.BytesIO(lines))
    return buf.getvalue()


def write_slot(target: Target, fs: Path, size: int, digest: str, say: Say) -> tuple[int, str]:
    """Stream the first `size` bytes of `fs` zstd-compressed into `scooby-slot write`; the
    compressed bytes sent and scooby-slot's summary line."""
    command = f"sudo {SLOT} write --bytes {size} --sha256 {digest}"
    sent, start, shown = 0, time.monotonic(), time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        zstd = subprocess.Popen([*ZSTD, str(fs)], stdout=subprocess.PIPE)
        ssh = subprocess.Popen(target.ssh(command), stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            while chunk := zstd.stdout.read(1 << 20):
                ssh.stdin.write(chunk)
                sent += len(chunk)
                if time.monotonic() - shown >= PROGRESS:
                    shown = time.monotonic()
                    say(f"  ... {sent / 2**20:.0f} MiB sent in {shown - start:.0f} s")
            ssh.stdin.close()
        except BrokenPipeError:
            pass  # ssh or scooby-slot gave up: its own message says why (below)
        finally:
            with contextlib.suppress(BrokenPipeError):
                ssh.stdin.close()
            zstd.stdout.close()  # zstd, if still writing, ends on SIGPIPE
            zstd.wait()
            code = ssh.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace").strip()
        stderr = err.read().decode("utf-8", "replace").strip()
    if code != 0:  # first: a refusal on the master also ends zstd (SIGPIPE)
        why = (stderr.splitlines() or [f"ssh exit {code}"])[-1]
        raise ScoobyError(error(target.host, None, f"the slot write failed: {why}"))
    if zstd.returncode != 0:
        raise ScoobyError(error(target.host, None, f"zstd {fs} exited {zstd.returncode}"))
    return sent, (stdout.splitlines() or [""])[-1]


def reboot_into(target: Target, command: str) -> None:
    """Run a scooby-slot command that reboots the master. ssh may lose its peer before it
    hears the exit status (255): the wait that follows tells what happened."""
    quick = dataclasses.replace(target, options=(*target.options, *QUICK))
    done = _ssh(quick, f"sudo {SLOT} {command}", 120)
    if done.returncode not in (0, 255):
        raise ScoobyError(error(target.host, None, f"sudo {SLOT} {command}: {_detail(done)}"))


@dataclass
class Outcome:
    committed: bool
    status: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def wait(target: Target, before: str, slot: str, seconds: float, say: Say) -> Outcome:
    """Wait for the master to come back after a reboot (a boot_id other than `before`) and
    decide: committed on `slot`, or booted on the other slot. Bounded by `seconds`."""
    quick = dataclasses.replace(target, options=(*target.options, *QUICK))
    start = shown = time.monotonic()
    note = "rebooting"
    while time.monotonic() - start < seconds:
        try:
            boot_id, status = look(quick, timeout=45)
        except ScoobyError:
            note = "no answer yet"
        else:
            booted, committed = status.get("BOOTED", ""), status.get("COMMITTED", "")
            if boot_id == before:
                note = "not rebooted yet"
            elif booted == slot and committed == slot and not status.get("TRIAL"):
                return Outcome(True, status, time.monotonic() - start)
            elif booted and booted != slot:
                return Outcome(False, status, time.monotonic() - start)
            else:
                note = f"up on slot {booted or '?'}, trial: health check not passed yet"
        if time.monotonic() - shown >= PROGRESS:
            shown = time.monotonic()
            say(f"  ... {shown - start:.0f} s: {note}")
        time.sleep(POLL)
    raise ScoobyError(
        error(
            target.host,
            None,
            f"no decision within {seconds:.0f} s (last: {note}); the master's own deadline"
            " and watchdog return it to its committed slot by themselves",
        )
    )


def check_idle(target: Target, status: dict[str, str]) -> str:
    """The booted slot, once it is sure no trial is under way."""
    booted = status.get("BOOTED", "")
    if booted not in SLOTS:
        raise ScoobyError(error(target.host, None, f"{SLOT} status names no booted slot"))
    if status.get("TRIAL"):
        raise ScoobyError(
            error(target.host, None, f"a trial of slot {status['TRIAL']} is under way: wait"
                  " until the master has committed it or returned")
        )  # fmt: skip
    return booted


def build_image(repo: Path, out: Path, k3s: str, say: Say) -> Path:
    """The new image, by `scooby build`'s own pipeline (its cached stages), log beside it."""
    from rich.console import Console

    from scooby.build import build

    os.umask(0o022)  # as `scooby build`: the image must not depend on the caller's umask
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "build.log", "w") as log:
        report, packed = build(repo, out, k3s, False, Console(stderr=True), log)
    cached = [s.name for s in report.stages if s.cached]
    say(f"  built {out.name} ({packed.size // 2**20} MiB; cached: {', '.join(cached) or '-'})")
    return packed.image
