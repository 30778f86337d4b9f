"""`scooby build`: validate, render, then the image from named, cached stages.

    render       validate + render (always: it is the cluster's description)
    k3s          the pinned K3S files (cached download) or first-boot / none
    agent-base   Debian arm64 root for the agents, its squashfs and boot files   (cached)
    master-base  the agent base + the master's packages                         (cached);
                 beside it, the agent base's initramfs, byte-compilation and squashfs
                 (scooby.build.finish), which the master's root gets too
    assemble     master root, data and boot trees (render output, agent base, TFTP, K3S,
                 release; the state folders in the data tree)
    firmware-view  what the Pi firmware loads, per supported model: every file present
    pack         MBR + FAT + root A + (unwritten) root B + data into images/scooby.img,
                 without loop devices or mounts

A cached stage is reused when the hash of its inputs matches (scooby.cache), so changing
only config, agents/ or server/ reruns render, assemble and pack. With a Raspberry Pi OS
base (LC_IMAGE_HREF), `raspios-base` replaces agent-base. Every command's output goes to
build/build.log; the terminal shows one line per stage (the command adds a summary table).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error


@dataclass
class StageResult:
    name: str
    seconds: float
    cached: bool
    note: str = ""


@dataclass
class Report:
    stages: list[StageResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    base: str = ""
    k3s: object = None  # the K3sPlan


class Stages:
    """Runs named stages: a status line while each runs, its time and cache hit after."""

    def __init__(self, console, log) -> None:
        self.console, self.log, self.report = console, log, Report()

    def run(self, name: str, fn: Callable[[], tuple[object, bool, str]]):
        start = time.monotonic()
        self.log.write(f"\n=== stage {name} ===\n")
        self.log.flush()
        try:
            with self.console.status(f"[bold]{name}[/bold] ..."):
                value, cached, note = fn()
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            # A tool failed (network, disk, a package): one line, details in the log.
            self.log.write(f"=== stage {name} failed: {exc}\n")
            self.log.flush()
            raise ScoobyError(
                error("", None, f"{exc} (full output: {self.log.name})", f"build: {name}")
            ) from None
        seconds = time.monotonic() - start
        self.report.stages.append(StageResult(name, seconds, cached, note))
        hit = " [green](cached)[/green]" if cached else ""
        self.console.print(f"[green]✓[/green] {name}{hit} {seconds:.1f} s {note}")
        self.log.write(f"=== stage {name}: {seconds:.1f} s, cached={cached} {note}\n")
        self.log.flush()
        return value


def check_host(console) -> None:
    """Fail before any slow work when this machine can't build: `scooby doctor`'s checks
    (scripts/packages.txt and the kernel's features), one line per missing piece."""
    from scooby.util import doctor

    if os.geteuid() != 0:
        raise ScoobyError(
            error("", None, "must run as root (or use ./scripts/build.sh --vagrant)", "build")
        )
    if not doctor.arm64_runs():  # a machine rebooted since set-up: register it again
        console.print("enabling arm64 emulation (binfmt_misc, qemu-aarch64)")
        doctor.enable_arm64()
    problems = doctor.diagnostics(doctor.examine())
    if problems:
        raise ScoobyError(problems)


def build(repo: Path, out: Path, k3s_mode: str, clean: bool, console, log):
    from scooby.build.cache import Cache
    from scooby.render.renderer import render
    from scooby.validate.validator import validated

    cache = Cache.of(repo)
    stages = Stages(console, log)

    def do_render():
        from scooby.render import checks

        cluster = validated(repo)
        # The same daemon checks as `scooby render`: an image never ships a rejected config.
        rendered = render(cluster, repo / "build" / "render", check=checks.check)
        for d in rendered.diagnostics:
            console.print(str(d))
        return (cluster, rendered), False, f"{len(rendered.files)} files"

    cluster, rendered = stages.run("render", do_render)
    check_host(console)

    def waiting():
        console.print(f"waiting for another build that uses {cache.root} ...")

    with cache.locked(waiting):
        if clean:
            cache.clean()
        image = image_stages(repo, out, k3s_mode, cluster, rendered.out, cache, stages)
    return stages.report, image


def image_stages(repo, out, k3s_mode, cluster, rendered: Path, cache, stages: Stages):
    """Every stage after render, with the cache locked."""
    from scooby.build import k3s as k3s_mod
    from scooby.build import pack, rootfs
    from scooby.build.assemble import assemble
    from scooby.build.cache import key

    log, work, base = stages.log, repo / "build" / "work", cluster.master.base
    stages.report.base = base.kind
    # K3S first: `--k3s=embed` without the files fails before the slow stages.
    plan = stages.run("k3s", lambda: k3s_stage(k3s_mod, k3s_mode, cluster, cache, repo))
    stages.report.k3s = plan
    if plan.warning:
        stages.report.warnings.append(plan.warning)
    agent = None
    try:
        if base.kind == "raspios":
            from scooby.build import raspios

            agent_dir, agent_key = stages.run(
                "raspios-base", lambda: raspios.stage(base, cache, log)
            )
        else:
            agent = stages.run("agent-base", lambda: agent_stage(base, cache, log, key, rootfs))
            agent_dir, agent_key = agent.folder, agent.key
        master_dir = stages.run(
            "master-base",
            lambda: master_stage(base, cache, log, key, rootfs, agent_dir, agent_key, agent),
        )
        agent_dir = agent.folder if agent else agent_dir
        assembled = stages.run(
            "assemble",
            lambda: (
                assemble(
                    cluster,
                    rendered,
                    master_dir / "rootfs.tar",
                    agent_dir / "base.squashfs",
                    agent_dir / "boot",
                    base.kind,
                    plan,
                    work,
                ),
                False,
                "",
            ),
        )
        stages.run("firmware-view", lambda: firmware_stage(cluster, assembled))
        hostname = cluster.master.hostname
        return stages.run(
            "pack",
            lambda: (
                pack.pack(assembled.boot, assembled.root, assembled.data, hostname, out, log),
                False,
                "",
            ),
        )
    finally:
        if agent is not None:  # a failed or interrupted master base: stop the finish first
            agent.cancel()
        cache.discard_staging()
        if work.exists():
            shutil.rmtree(work)


def firmware_stage(cluster, assembled):
    """What the Pi firmware loads for each supported model, from the boot partition and from
    every agent's TFTP folder (scooby.build.firmware): a missing file fails the build here,
    not on the Pi."""
    from scooby.build import firmware
    from scooby.build.assemble import at
    from scooby.core import layout

    tftp = at(assembled.root, layout.TFTP_ROOT)
    problems = firmware.check(assembled.boot, tftp, [a.pxe_id for a in cluster.agents])
    if problems:
        raise RuntimeError("the Pi firmware would not find every file: " + "; ".join(problems))
    views = len(firmware.MASTERS) + len(firmware.AGENTS) * len(cluster.agents)
    return None, False, f"{views} model views, every file present"


@dataclass
class AgentBase:
    """The agent stage's folder and key; while its finish runs (a new base), `finishing`."""

    folder: Path
    key: str
    finishing: object = None  # scooby.build.finish.AgentFinish
    cache: object = None

    def finished(self, log) -> Path:
        """Wait for the finish, put its log into the build log, commit the stage."""
        if self.finishing is None:
            return self.folder
        from scooby.build.finish import LOG

        finishing, self.finishing = self.finishing, None
        try:
            finishing.wait()
        finally:
            log.write("\n--- agent-base finish (beside master-base) ---\n")
            log.write((self.folder / LOG).read_text(errors="replace"))
            log.write(f"--- profile: agent-base finish: wall {finishing.seconds:.1f} s\n")
            log.flush()
        (self.folder / LOG).unlink()
        self.folder = self.cache.commit("agent-base", self.key, self.folder)
        return self.folder

    def cancel(self) -> None:
        if self.finishing is not None:
            self.finishing.cancel()
            self.finishing = None


def agent_stage(base, cache, log, key, rootfs):
    """Debian agent base: rootfs.tar, finish.tar, base.squashfs and boot/ (cached by its
    inputs). mmdebstrap runs here; the finish (scooby.build.finish: initramfs, compile,
    squashfs) starts in the background, and master_stage commits the stage once it is done.

    A cached root is also checked against the archive's current state (its archive.json):
    when a pocket changed (a security fix) it is rebuilt; offline, it is used as it is.
    """
    from scooby.build import archive, nativepy
    from scooby.build.finish import AgentFinish

    lines = archive.sources(base.suite, base.mirror, base.updates_mirror, base.security_mirror)
    stage_key = key("agent-base", rootfs.agent_inputs(base.suite, lines))
    current = archive.state(lines)
    hit = cache.lookup("agent-base", stage_key)
    if hit:
        if current is None:
            note = "archive unreachable: not checked for updates"
            return AgentBase(hit, stage_key), True, note
        if archive.built_from(hit) == current:
            return AgentBase(hit, stage_key), True, "archive unchanged"
    tmp = cache.staging("agent-base", stage_key)
    native, said = nativepy.prepare(lines, cache.downloads)
    log.write(f"agent-base: {said}\n")
    rootfs.agent_base(tmp / "rootfs.tar", base.suite, lines, cache.debs, log, native)
    archive.record(tmp, current)
    note = ("archive changed: rebuilt; " if hit else "") + "initramfs beside master-base"
    note += "; native Python for the stdlib's compile" if native else ""
    return AgentBase(tmp, stage_key, AgentFinish(tmp), cache), False, note


def master_stage(base, cache, log, key, rootfs, agent_dir, agent_key, agent=None):
    from scooby.build import archive, finish

    built = archive.built_from(agent_dir)  # None for a Raspberry Pi OS base
    stage_key = key("master-base", rootfs.master_inputs(agent_key, built, base.extra_packages))
    hit = cache.lookup("master-base", stage_key)
    extra = f"+ {' '.join(base.extra_packages)}" if base.extra_packages else ""
    if hit:
        if agent:
            agent.finished(log)
        return hit, True, extra
    tmp = cache.staging("master-base", stage_key)
    suite, keyring = base.suite, None
    mirrors = archive.sources(base.suite, base.mirror, base.updates_mirror, base.security_mirror)
    apt = agent_dir / "apt"
    if apt.is_dir():  # a Raspberry Pi OS base: its own suite, sources and keys
        suite = (apt / "suite").read_text().strip()
        mirrors = (apt / "sources").read_text().splitlines()
        keyring = apt / "keyrings"
    try:
        rootfs.master_base(
            tmp / "rootfs.tar", agent_dir / "rootfs.tar", suite, mirrors, cache.debs, log,
            keyring, base.extra_packages,
        )  # fmt: skip
    except RuntimeError as exc:
        if not base.extra_packages:
            raise
        # apt's "Unable to locate package" is deep in the log: name the setting it came from.
        raise RuntimeError(
            f"{exc}; LC_EXTRA_PACKAGES={' '.join(base.extra_packages)}: is each one a package "
            "of the base's archive?"
        ) from None
    if agent:  # a Debian base: its finished files (initramfs, .pyc) belong to this root too
        finish.append_to(tmp / "rootfs.tar", agent.finished(log))
    return cache.commit("master-base", stage_key, tmp), False, extra


def k3s_stage(k3s_mod, mode, cluster, cache, repo):
    k3s = cluster.master.k3s
    folder = k3s_mod.cache_dir(cache.downloads, k3s.version)
    was_cached = (folder / k3s_mod.BINARY).is_file() and (folder / k3s_mod.AIRGAP).is_file()
    plan = k3s_mod.plan(mode, k3s, cache.downloads, repo)
    note = {
        layout.EMBEDDED: f"{k3s.version} embedded",
        layout.FIRST_BOOT: "first-boot install",
    }.get(plan.mode, "without K3S")
    return plan, was_cached and plan.mode == layout.EMBEDDED, note
