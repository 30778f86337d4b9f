"""The agent base's last steps, run beside the master base (a thread of `scooby build`).

mmdebstrap makes the agent root up to its last emulated work (customize90-finish-later.sh);
the master base starts from that tarball at once. Beside it, in the agent stage's folder:

    tree/        the tarball unpacked
    finish-agent.sh   the one initramfs, and the list of what cloud-init reads (chroot)
    finish.tar   every file that changed: the initrd, initramfs-tools' state
    boot/, base.squashfs   the agents' boot files and root, from the finished tree

The master base's tarball gets finish.tar appended (`append_to`), so its root is the same
as when it was built from the finished agent root: master-base's packages never touched
those files (update-initramfs is a no-op while they install). Each of the two (initramfs,
the master's installs) is mostly one process at a time: on two cores this saves the
initramfs's wall time. (The deferred byte-compilation was here too, until the installs ran
their tools natively: it now runs in customize90, beside the depmod wait.) The initramfs's
shells and text tools are this machine's too (finish-agent.sh, native-tools.sh `private`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from scooby.build import profile
from scooby.build.assemble import debian_boot_files, unpack
from scooby.build.rootfs import EPOCH, HOOKS
from scooby.build.squashfs import squashfs
from scooby.core import layout
from scooby.util import proc

FINISH_TAR = "finish.tar"
LOG = "finish.log"
# mmdebstrap's own tar options (clamped times, numeric owners, no atime/ctime): the
# appended members look like the rest of the master's tarball.
TAR_OPTIONS = [
    f"--mtime=@{EPOCH}", "--clamp-mtime", "--numeric-owner", "--format=pax",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    "--xattrs", "--xattrs-include=*",
]  # fmt: skip
# Skipped when looking for changed files: the chroot's mount points (empty again once the
# namespace is gone) and the compile's and initramfs's scratch space.
SKIP = {"proc", "sys", "dev", "tmp", "var/tmp"}


class AgentFinish:
    """finish(stage) in a thread; `wait` returns once it is done (and raises what it raised),
    `cancel` stops its processes (Ctrl-C or a failed master base)."""

    def __init__(self, stage: Path) -> None:
        self.stage, self.error, self.proc = stage, None, None
        self.seconds = 0.0
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-finish", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with open(self.stage / LOG, "w") as log:
                finish(self.stage, log, self)
        except BaseException as exc:  # re-raised by wait(), in the main thread
            self.error = exc
        self.seconds = time.monotonic() - start

    def popen(self, cmd: list[str], log, **kwargs) -> None:
        """Run one command of the finish; a cancel kills its whole process group."""
        if self._cancelled.is_set():
            raise RuntimeError("agent base: finish cancelled")
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        # A session of its own: Ctrl-C reaches the build's process group, not the chroot's
        # work; `cancel` ends it once, after the main thread decided to stop.
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        log.write(f"--- CPU (user+sys) {profile.reap(self.proc):.1f} s\n")
        if self.proc.returncode != 0:
            raise subprocess.CalledProcessError(self.proc.returncode, cmd)

    def wait(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self._cancelled.set()
        running = self.proc
        if running is not None and running.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.pid, signal.SIGTERM)
        self._thread.join()


def finish(stage: Path, log, runner: AgentFinish) -> None:
    tree = stage / "tree"
    unpack(stage / "rootfs.tar", tree)
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}  # the chroot has no such path
    env |= {"SOURCE_DATE_EPOCH": EPOCH, "LC_ALL": "C.UTF-8", "READAHEAD": layout.AGENT_READAHEAD}
    script = HOOKS / "finish-agent.sh"
    runner.popen(
        ["nice", "-n", "10", "unshare", "--mount", "--propagation", "private",
         "sh", str(script), str(tree)],
        log, env=env,
    )  # fmt: skip
    changed = changed_files(tree, int(EPOCH))
    log.write(f"finish: {len(changed)} files and folders changed\n")
    write_tar(tree, changed, stage / FINISH_TAR, log)
    debian_boot_files(tree, stage / "boot")
    squashfs(tree, stage / "base.squashfs", log)
    subprocess.run(["rm", "-rf", "--one-file-system", str(tree)], check=True)


def changed_files(tree: Path, epoch: int) -> list[str]:
    """Paths (relative, sorted) of what changed after the tarball was made: mmdebstrap clamps
    every member's time to SOURCE_DATE_EPOCH, so anything newer was written here."""
    found = []
    for folder, dirs, files in os.walk(tree):
        rel = os.path.relpath(folder, tree)
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if rel + d not in SKIP]
        for name in dirs + files:
            path = rel + name
            if os.lstat(os.path.join(folder, name)).st_mtime > epoch:
                found.append(path)
    return sorted(found)


def write_tar(tree: Path, names: list[str], tar: Path, log=None) -> None:
    """`names` (relative to `tree`, in this order, folders without their contents) as a
    tarball with mmdebstrap's own options."""
    listing = "".join(f"./{name}\0" for name in names).encode()
    proc.run(
        ["tar", "--create", f"--file={tar}", "-C", str(tree), "--no-recursion", "--null",
         "--files-from=-", *TAR_OPTIONS],
        input=listing, stdout=log, stderr=subprocess.STDOUT, check=True,
    )  # fmt: skip


def append_to(tarball: Path, finished: Path) -> None:
    """The finished agent files after the master's own members: unpacked in order, they are
    what the master's root holds (`tar --concatenate` keeps both archives' headers)."""
    subprocess.run(
        ["tar", "--concatenate", f"--file={tarball}", str(finished / FINISH_TAR)], check=True
    )
