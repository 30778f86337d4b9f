"""Deploy: a running master follows the repository, without a reflash (docs/day2.md).

    render (into REPO/build/deploy/render) -> the record of the new state
    ssh HOST: the master's record -> plan (files, services, agents, reboot or not)
    dry run: the plan, nothing sent
    live plan: one tar (plan.json + the changed files) into `sudo scooby-apply` on the master
    reboot plan: an A/B deploy (scooby.deploy.ab): the new image's root into the master's
              inactive slot, a trial boot, the master's health check commits it or the
              master returns by itself; then the live part (files on the data partition)
    rollback: plan from the master's record back to the one before its last deploy; the
              files come from what that deploy kept on the master (layout.DEPLOY_PREVIOUS);
              when that needs a reboot (the last deploy was A/B), the master's other slot
              is committed again (`scooby-slot rollback --reboot`)

Only what changed is sent, or for an A/B deploy the root file system, zstd-compressed.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error
from scooby.core.model import Cluster
from scooby.deploy.plan import Plan, plan
from scooby.deploy.remote import Target


@dataclass(frozen=True)
class Deployed:
    plan: Plan
    sent: int  # bytes streamed to the master (0 for a dry run or an empty plan)
    seconds: float
    output: str  # scooby-apply's report
    steps: dict[str, float] = field(default_factory=dict)  # A/B: seconds per step
    slot: str = ""  # A/B: the slot now committed


def _quiet(line: str) -> None:
    pass


def deploy(
    cluster: Cluster,
    target: Target,
    work: Path,
    dry_run: bool = False,
    *,
    repo: Path | None = None,
    allow_kernel_change: bool = False,
    wait: float | None = None,
    say: Callable[[str], None] = _quiet,
    label: str = "",
) -> Deployed:
    """`say` gets the plan (the master named `label`, default its ssh name) before anything
    is sent, then a line per step."""
    from scooby.deploy import ab, remote
    from scooby.deploy.plan import describe
    from scooby.render import render
    from scooby.render.record import record, sources

    start = time.monotonic()
    rendered = render(cluster, work / "render").out
    new = record(cluster, rendered)
    old = remote.read_record(target)
    p = plan(old, new)
    for line in describe(p, label or target.host):
        say(line)
    if p.reboot:
        for line in ab.describe(p, allow_kernel_change):
            say(line)
    if dry_run or p.empty:
        return Deployed(p, 0, time.monotonic() - start, "")
    if p.reboot:
        return deploy_ab(
            cluster, target, work, repo or work.parent.parent, old, new, p,
            allow_kernel_change, ab.WAIT if wait is None else wait, say, start,
        )  # fmt: skip
    payload = remote.stream(request(old, new, p), sources(cluster, rendered))
    output = remote.apply(target, payload)
    return Deployed(p, len(payload), time.monotonic() - start, output)


def deploy_ab(cluster, target, work, repo, old, new, p, allow_kernel_change, wait, say, start):
    """The A/B deploy of scooby.deploy.ab, step by step, with each step's seconds."""
    from scooby.deploy import ab, image, remote
    from scooby.render.record import sources

    host = target.host
    boot = ab.boot_paths(p)
    if boot and not allow_kernel_change:
        raise ScoobyError(
            error(host, None, f"the boot partition changes ({', '.join(boot)}): A/B does not"
                  " protect it (both slots share it); --allow-kernel-change to write it anyway")
        )  # fmt: skip
    steps: dict[str, float] = {}
    clock = time.monotonic()

    def step(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        steps[name] = round(now - clock, 1)
        clock = now

    boot_id, status = ab.look(target)
    booted = ab.check_idle(target, status)
    slot = ab.other(booted)
    room = ab.slot_bytes(target)[slot]
    k3s = ab.K3S_BUILD.get(ab.master_k3s_mode(target), "auto")
    say(f"A/B: the master runs slot {booted}; slot {slot} ({room // 2**20} MiB) gets the new root")
    step("look")
    say(f"building the new image (scooby build --k3s={k3s}) ...")
    built = ab.build_image(repo, work / "scooby.img", k3s, say)
    step("build")
    fs = work / "root.ext4"
    try:
        parts = image.partitions(built)
        try:
            size, copied, digest = image.extract_root(built, parts[layout.ROOT_PARTITION], fs, room)
        except image.TooLarge as e:
            raise ScoobyError(error(host, None, str(e))) from None
        say(f"root file system: {size} bytes ({copied} allocated), sha256 {digest[:16]}...")
        new_boot = image.boot_files(built, parts[layout.BOOT_PARTITION])
        changed = ab.boot_changes(new_boot, ab.master_boot_sums(target))
        step("extract")
        if changed and not allow_kernel_change:
            raise ScoobyError(
                error(host, None, f"the new image's boot partition differs from the master's"
                      f" ({', '.join(changed)}): A/B does not protect it (both slots share it);"
                      " --allow-kernel-change to write it anyway")
            )  # fmt: skip
        say(f"writing slot {slot}: {size // 2**20} MiB, zstd over SSH into scooby-slot write ...")
        sent, summary = ab.write_slot(target, fs, size, digest, say)
        say(f"  {summary}" if summary else f"  slot {slot} written and verified")
        step("write")
    finally:
        fs.unlink(missing_ok=True)
    if changed:
        sent += install_boot(target, built, parts[layout.BOOT_PARTITION], changed, new_boot)
        say(f"boot partition: {len(changed)} files written ({', '.join(changed)})")
        step("boot")
    say(f"trial boot of slot {slot} (scooby-slot trial --reboot); waiting up to {wait:.0f} s ...")
    ab.reboot_into(target, "trial --reboot")
    outcome = ab.wait(target, boot_id, slot, wait, say)
    step("trial")
    if not outcome.committed:
        last = outcome.status.get("LAST", "") or "no LAST given"
        raise ScoobyError(
            error(host, None, f"the trial of slot {slot} did not pass: the master is back on"
                  f" slot {outcome.status.get('BOOTED')} (LAST: {last})")
        )  # fmt: skip
    say(f"slot {slot} committed after {outcome.seconds:.0f} s (LAST: {outcome.status.get('LAST')})")
    # The commit took the release and the root's files from the new slot's own record; what
    # is left differs only on the data partition, and goes the live way.
    now = remote.read_record(target)
    rest = plan(now, new)
    output = ""
    if rest.reboot:
        raise ScoobyError(
            error(host, None, f"slot {slot} is committed, but the master's record still"
                  f" needs a reboot for: {', '.join(rest.reboot)}")
        )  # fmt: skip
    if not rest.empty:
        rendered = work / "render"
        payload = remote.stream(request(now, new, rest), sources(cluster, rendered))
        output = remote.apply(target, payload)
        sent += len(payload)
        say(f"live part: {len(rest.write)} written, {len(rest.remove)} removed")
    step("live")
    return Deployed(p, sent, time.monotonic() - start, output, steps, slot)


def install_boot(target, built, part, changed, sums) -> int:
    """--allow-kernel-change: the changed boot files, checked on the master, then renamed
    into place (scooby.deploy.ab.boot_install). The bytes sent."""
    import subprocess
    import tempfile

    from scooby.deploy import ab, image

    with tempfile.TemporaryDirectory(prefix="scooby-boot-") as tmp:
        for name in changed:
            dest = Path(tmp, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["mcopy", "-n", "-i", f"{built}@@{part.start}", f"::{name}", str(dest)],
                check=True, capture_output=True, env=image.MTOOLS,
            )  # fmt: skip
        payload = ab.boot_tar({n: Path(tmp, n) for n in changed}, sums)
    done = subprocess.run(
        target.ssh(f"sudo sh -c {shlex.quote(ab.boot_install())}"),
        input=payload, capture_output=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        why = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise ScoobyError(error(target.host, None, f"writing the boot partition failed: {why}"))
    return len(payload)


def rollback(
    target: Target,
    dry_run: bool = False,
    *,
    wait: float | None = None,
    say: Callable[[str], None] = _quiet,
    label: str = "",
) -> Deployed:
    """Return the master to the state before its last deploy, with the files that deploy
    kept on the master (nothing is rendered or sent but the plan). When that state needs a
    reboot (the last deploy was A/B), the other slot is committed again and booted."""
    from scooby.deploy import ab, remote
    from scooby.deploy.plan import describe

    start = time.monotonic()
    current = remote.read_record(target)
    previous = remote.read_record(target, f"{layout.DEPLOY_PREVIOUS}/record.json")
    p = plan(current, previous)
    for line in describe(p, label or target.host):
        say(line)
    if p.empty:
        return Deployed(p, 0, time.monotonic() - start, "")
    if p.reboot:
        boot_id, status = ab.look(target)
        booted = ab.check_idle(target, status)
        slot = ab.other(booted)
        if not status.get(f"RELEASE_{slot.upper()}"):
            raise ScoobyError(
                error(target.host, None, f"the rollback needs slot {slot}, and it holds no"
                      " release (never written, or written and not verified)")
            )  # fmt: skip
        say(f"  back to slot {slot} ({status[f'RELEASE_{slot.upper()}']}):"
            " scooby-slot rollback --reboot")  # fmt: skip
        if dry_run:
            return Deployed(p, 0, time.monotonic() - start, "")
        ab.reboot_into(target, "rollback --reboot")
        outcome = ab.wait(target, boot_id, slot, ab.WAIT if wait is None else wait, say)
        if not outcome.committed:
            raise ScoobyError(
                error(target.host, None, f"the rollback to slot {slot} did not boot it: the"
                      f" master is on slot {outcome.status.get('BOOTED')}"
                      f" (LAST: {outcome.status.get('LAST') or '-'})")
            )  # fmt: skip
        return Deployed(
            p, 0, time.monotonic() - start, "", {"rollback": round(outcome.seconds, 1)}, slot
        )
    if dry_run:
        return Deployed(p, 0, time.monotonic() - start, "")
    payload = remote.stream({**request(current, previous, p), "rollback": True}, {})
    output = remote.apply(target, payload)
    return Deployed(p, len(payload), time.monotonic() - start, output)


def request(old: dict, new: dict, p: Plan) -> dict:
    """plan.json, what scooby-apply on the master reads first."""
    return {
        "format": 1,
        "manifest": new,
        "previous_agents": old["agents"],
        # what the last deploy put at each path this one replaces or removes: a file that
        # differs was changed on the master, and scooby-apply keeps a copy of it
        "previous_files": {
            path: old["files"][path]["sha256"]
            for path in p.write + p.remove
            if path in old["files"]
        },
        "write": p.write,
        "remove": p.remove,
        "agents_added": p.agents_added,
        "agents_removed": p.agents_removed,
        "agents_changed": p.agents_changed,
        "actions": p.actions,
    }


__all__ = ["Deployed", "Target", "deploy", "deploy_ab", "request", "rollback"]
