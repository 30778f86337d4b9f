"""Root filesystems from Debian's archive: the `agent-base` and `master-base` stages.

Both are made by mmdebstrap (arm64, run under qemu-user through binfmt) as tarballs:

- agent-base: minbase + templates/base/packages/agent.txt: an NFS-root agent's root, with the
  kernel, Raspberry Pi firmware and ONE initramfs. Package installs don't generate initramfs
  images (update-initramfs is diverted to a no-op while they run: under qemu-user each
  generation took ~16 min with MODULES=most); scooby.build.finish makes one with
  MODULES=list after mmdebstrap, beside the master base (customize90-finish-later.sh gets
  the root ready for that, and makes the deferred byte-compilation). While packages
  install, the root's shells, text tools, Perl and dpkg-deb are this machine's own
  (hooks/native-tools.sh: extract05, essential05, customize05). The kernel's
  depmod runs in the background while the next packages install (essential60). essential20
  diverts raspi-firmware's kernel hook, which would rewrite config.txt and cmdline.txt on
  every kernel or initramfs update, and installs Scooby's (templates/base/files).
- master-base: the agent base unpacked and templates/base/packages/master.txt installed on
  top, so the kernel, initramfs and every shared package are installed once, not twice.

mmdebstrap runs in a private mount namespace (`unshare --mount`): the /proc, /sys and /dev
mounts it makes in the chroot vanish with it, even on Ctrl-C or SIGKILL. Downloaded .debs
are kept in .cache/debs and fed back in, so a rebuild of a stage downloads nothing it has.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from scooby.build import profile
from scooby.build.cache import digest_files
from scooby.core.paths import TEMPLATES_DIR

BASE_TEMPLATES = TEMPLATES_DIR / "base"
# mmdebstrap's hooks are code, not templates: they live with this module (package data).
HOOKS = Path(__file__).resolve().parent / "hooks"
COMPONENTS = "main,non-free-firmware"  # Broadcom Wi-Fi/BT firmware lives in non-free-firmware
EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: file times in the roots, not the build's clock


def packages(name: str) -> list[str]:
    """templates/base/packages/NAME.txt: one package a line, `#` comments."""
    text = (BASE_TEMPLATES / "packages" / f"{name}.txt").read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def mmdebstrap_version() -> str:
    done = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def agent_inputs(suite: str, mirrors: list[str]) -> dict:
    """`mirrors`: the suite's, -updates' and -security's `deb` lines (build.archive.sources)."""
    return {
        "suite": suite,
        "mirrors": mirrors,
        "components": COMPONENTS,
        "packages": packages("agent"),
        "templates": _base_digest(),
        "mmdebstrap": mmdebstrap_version(),
    }


def _base_digest() -> dict[str, str]:
    # hooks/NAME, as when the hooks were under templates/base: cache keys stay the same.
    base = [BASE_TEMPLATES / d for d in ("initramfs-tools", "dpkg", "files")]
    return digest_files([HOOKS], HOOKS.parent) | digest_files(base, BASE_TEMPLATES)


def master_inputs(agent_key: str, archive: dict | None, extra: tuple[str, ...] = ()) -> dict:
    """`archive`: the archive state the agent base was built from; a new one (the agent base
    was rebuilt for a newer archive) installs the master's packages from it too. `extra`:
    LC_EXTRA_PACKAGES (sorted), which make another master base. Without any, the inputs are
    what they were before the setting existed, so every cached master base still matches."""
    inputs = {"agent-base": agent_key, "archive": archive, "packages": packages("master")}
    if extra:
        inputs["extra-packages"] = list(extra)
    return inputs


def _env(debs: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SCOOBY_BASE_TEMPLATES": str(BASE_TEMPLATES),
        "SCOOBY_DEB_CACHE": str(debs),
        "SOURCE_DATE_EPOCH": EPOCH,
        "LC_ALL": "C.UTF-8",
        # mmdebstrap passes PATH on to the chroot: native-tools.sh's folder of this machine's
        # tools comes first there while the essential packages install (absent elsewhere)
        "PATH": f"/usr/lib/scooby-native:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}",
        # mmdebstrap's chroot lives here, beside the cache: `tmp_dir` empties it before a
        # build, so even a SIGKILLed build leaves nothing behind for long.
        "TMPDIR": str(tmp_dir(debs)),
    }


def tmp_dir(debs: Path) -> Path:
    return debs.parent / "tmp"


def clean_tmp(debs: Path) -> None:
    """Remove what an earlier, killed mmdebstrap left (its mounts died with its namespace)."""
    folder = tmp_dir(debs)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def _common(debs: Path) -> list[str]:
    return [
        "nice", "-n", "10",
        "unshare", "--mount", "--propagation", "private",
        # --verbose: apt's and dpkg's output too, for the log's per-step profile
        "mmdebstrap", "--mode=root", "--verbose", "--architectures=arm64",
        f"--components={COMPONENTS}",
        f"--dpkgopt={BASE_TEMPLATES / 'dpkg' / 'excludes'}",
        '--aptopt=Apt::Install-Recommends "false"',
        "--skip=essential/unlink",
        f"--setup-hook={HOOKS / 'setup10-debs.sh'}",
    ]  # fmt: skip


def _run(cmd: list[str], debs: Path, log, title: str, **env: str) -> None:
    """Run mmdebstrap, its output stamped into the log and profiled (scooby.build.profile);
    on Ctrl-C or SIGTERM give it time to clean up its chroot first."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    clean_tmp(debs)
    timing = profile.Profile()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**_env(debs), **env}
    )
    try:
        profile.stamp(proc.stdout, log, timing)
        timing.finish(profile.reap(proc))
        returncode = proc.returncode
        log.write(timing.table(title))
        log.flush()
    except BaseException:
        # Ctrl-C reached mmdebstrap too (same process group); a SIGTERM to us did not.
        proc.send_signal(signal.SIGINT)
        try:
            # keep reading its output while it cleans up: a full pipe would block it
            rest, _ = proc.communicate(timeout=120)
            log.write(rest.decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        clean_tmp(debs)
        raise
    if returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({returncode}); see the build log")


def _snapshot(mirrors: list[str]) -> list[str]:
    """snapshot.debian.org serves Release files whose Valid-Until has passed: that is the point
    of a snapshot, so apt is told to accept them (only for such a mirror)."""
    if any("snapshot.debian.org" in mirror for mirror in mirrors):
        return ['--aptopt=Acquire::Check-Valid-Until "false"']
    return []


def agent_base(
    out: Path, suite: str, mirrors: list[str], debs: Path, log, native_python: Path | None = None
) -> None:
    """mmdebstrap the agent base root into the tarball `out`. `native_python`: the folder
    scooby.build.nativepy prepared (the standard library's compile runs with it), or None."""
    cmd = [
        *_common(debs),
        *_snapshot(mirrors),
        "--variant=minbase",
        f"--include={','.join(packages('agent'))}",
        # extract05 to customize05: this machine's shells, text tools, Perl and dpkg-deb in
        # the root (hooks/native-tools.sh): first in PATH, then over the root's own files
        f"--extract-hook={HOOKS / 'extract05-native-tools.sh'}",
        f"--essential-hook={HOOKS / 'essential05-native-tools.sh'}",
        f"--essential-hook={HOOKS / 'essential10-defer-initramfs.sh'}",
        f"--essential-hook={HOOKS / 'essential20-boot-files.sh'}",
        f"--essential-hook={HOOKS / 'essential30-no-host-keys.sh'}",
        f"--essential-hook={HOOKS / 'essential40-defer-ca-certificates.sh'}",
        f"--essential-hook={HOOKS / 'essential50-defer-py3compile.sh'}",
        f"--essential-hook={HOOKS / 'essential60-defer-depmod.sh'}",
        f"--customize-hook={HOOKS / 'customize05-native-tools-off.sh'}",
        f"--customize-hook={HOOKS / 'customize20-ca-certificates.sh'}",
        # customize90 makes the deferred byte-compilation while it waits for the background
        # depmod (deferred-depmod.sh), and leaves the initramfs to scooby.build.finish
        f"--customize-hook={HOOKS / 'customize90-finish-later.sh'}",
        f"--customize-hook={HOOKS / 'customize95-cache-debs.sh'}",
        f"--customize-hook={HOOKS / 'customize85-archive.sh'}",
        # /etc/.updated, /var/.updated: no first boot redoes dpkg's triggers (the master's
        # base is this root plus packages, so it inherits them)
        f"--customize-hook={HOOKS / 'customize75-update-done.sh'}",
        # the .pyc files (the stdlib's and customize90's deferred compile's) are checked
        # hash-based ones: made unchecked, no import reads the .py too (over NFS, on agents)
        f"--customize-hook={HOOKS / 'customize76-pyc-unchecked.sh'}",
        f"--customize-hook={HOOKS / 'customize80-scrub.sh'}",
        suite,
        str(out),
        *mirrors,
    ]
    # SCOOBY_NATIVE_PYTHON: read by native-tools.sh (extract05, essential05)
    native = {"SCOOBY_NATIVE_PYTHON": str(native_python)} if native_python else {}
    _run(cmd, debs, log, "agent-base", **native)


def master_base(
    out: Path,
    agent_tar: Path,
    suite: str,
    mirrors: list[str],
    debs: Path,
    log,
    keyring: Path | None = None,
    extra: tuple[str, ...] = (),
) -> None:
    """The agent base plus the master's packages, installed by apt inside it.

    `mirrors`: mirror URLs or whole `deb ...` lines (a Raspberry Pi OS base brings its own,
    with its `keyring` directory). `extra`: LC_EXTRA_PACKAGES, installed with the master's
    own by the same apt-get (not mmdebstrap's --include: this stage's root is the unpacked
    agent base, which its customize hook installs into), so apt resolves them together.
    """
    cmd = [
        *_common(debs),
        *([f"--keyring={keyring}"] if keyring else []),
        *_snapshot(mirrors),
        "--variant=custom",
        # The agent root, unpacked by tar itself (root mode: hooks run outside the chroot, as
        # root), with the options mmdebstrap's `tar-in` special hook uses. Not `tar-in`: it
        # streams the tarball through mmdebstrap's hook socket, and in a fresh Debian 13 root
        # that failed ("special hook failed with exit code 13", mmdebstrap got SIGPIPE) where
        # an earlier run of the same stage had passed.
        "--setup-hook=tar --numeric-owner --xattrs --xattrs-include='*' "
        f'--directory="$1" --extract --file={shlex.quote(str(agent_tar))}',
        f"--customize-hook={HOOKS / 'customize10-master-packages.sh'}",
        f"--customize-hook={HOOKS / 'customize95-cache-debs.sh'}",
        f"--customize-hook={HOOKS / 'customize85-archive.sh'}",
        f"--customize-hook={HOOKS / 'customize76-pyc-unchecked.sh'}",  # the master's packages'
        f"--customize-hook={HOOKS / 'customize80-scrub.sh'}",
        suite,
        str(out),
        *mirrors,
    ]
    # SCOOBY_PACKAGES: read by customize10-master-packages.sh
    _run(cmd, debs, log, "master-base", SCOOBY_PACKAGES=" ".join(master_packages(extra)))


def master_packages(extra: tuple[str, ...] = ()) -> list[str]:
    """What customize10-master-packages.sh installs: the master's list, then LC_EXTRA_PACKAGES."""
    return [*packages("master"), *extra]
