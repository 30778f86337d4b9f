"""What this machine needs to build and test Scooby, and whether it has it: `scooby doctor`.

One list drives it: scripts/packages.txt, each Debian package with the programs and files
Scooby uses from it (scripts/setup.sh installs the same list). Beside them, the kernel
features the build and the tests use: arm64 programs under qemu-user (binfmt_misc), network
namespaces, tun/tap, and /dev/kvm where it helps (QEMU falls back to TCG without it).
Standard library only: it must run where nothing else is installed yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scooby.core.errors import Diagnostic, error
from scooby.core.paths import PACKAGES_LIST

# sbin is where most of these live; a user's PATH often lacks it, root's never does.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SETUP = "run ./scripts/setup.sh"


@dataclass(frozen=True)
class Package:
    """One line of scripts/packages.txt."""

    name: str
    line: int
    gives: tuple[str, ...] = ()  # programs (on PATH) and absolute paths of files
    tags: frozenset[str] = frozenset()


@dataclass
class Check:
    what: str  # a program, a file or a kernel feature
    ok: bool
    fix: str  # the Debian package to install, or what to do
    line: int | None = None  # in scripts/packages.txt
    optional: bool = False  # helps, never required
    package: str = ""  # the Debian package that gives it


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.optional]


def read_packages(path: Path = PACKAGES_LIST) -> list[Package]:
    packages = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        words = text.split("#", 1)[0].split()
        if not words:
            continue
        tags = frozenset(w[1:] for w in words[1:] if w.startswith("@"))
        gives = tuple(w for w in words[1:] if not w.startswith("@"))
        packages.append(Package(words[0], number, gives, tags))
    return packages


def os_id() -> str:
    try:
        for text in Path("/etc/os-release").read_text().splitlines():
            if text.startswith("ID="):
                return text[3:].strip().strip('"')
    except OSError:
        pass
    return ""


def program_path() -> str:
    parts = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(parts + [p for p in SBIN if p not in parts])


def check_packages(packages: list[Package], system: str) -> list[Check]:
    path = program_path()
    checks = []
    for package in packages:
        if "ubuntu" in package.tags and system != "ubuntu":
            continue
        fix = f"apt-get install {package.name}"
        if "backports" in package.tags and system == "debian":
            fix = f"apt-get install {package.name} (QEMU >= 9: on Debian 12, -t bookworm-backports)"
        for item in package.gives:
            found = any(
                Path(one).exists() if one.startswith("/") else shutil.which(one, path=path)
                for one in item.split("|")
            )
            checks.append(Check(item, bool(found), fix, package.line, package=package.name))
    return checks


def arm64_runs() -> bool:
    """arch-test runs a tiny arm64 program; without it, read the kernel's registration."""
    if shutil.which("arch-test", path=program_path()):
        return subprocess.run(["arch-test", "arm64"], capture_output=True).returncode == 0
    entry = BINFMT / "qemu-aarch64"
    return entry.exists() and entry.read_text().startswith("enabled")


def check_kernel() -> list[Check]:
    tun = Path("/dev/net/tun")
    kvm = Path("/dev/kvm")
    return [
        Check("arm64 programs (binfmt_misc, qemu-aarch64)", arm64_runs(),
              f"{SETUP} (mounts binfmt_misc, registers qemu-aarch64)"),
        Check("network namespaces", Path("/proc/self/ns/net").exists(),
              "a kernel with CONFIG_NET_NS (a container: run it privileged)"),
        Check("tun/tap (/dev/net/tun)", tun.is_char_device(),
              "modprobe tun (a container: pass /dev/net/tun in)"),
        Check("KVM (/dev/kvm)", kvm.is_char_device() and os.access(kvm, os.R_OK | os.W_OK),
              "optional: QEMU runs under TCG without it (slower)", optional=True),
    ]  # fmt: skip


def examine(path: Path = PACKAGES_LIST) -> Report:
    return Report(check_packages(read_packages(path), os_id()) + check_kernel())


def diagnostics(report: Report) -> list[Diagnostic]:
    """One line a missing piece: packages.txt's line, what is missing, the fix."""
    lines = []
    for check in report.missing():
        where = "scripts/packages.txt" if check.line else ""
        lines.append(error(where, check.line, f"{check.what} is missing: {check.fix}", "doctor"))
    return lines


def table(report: Report) -> str:
    """One row a package (its programs and files) or kernel feature."""
    rows: dict[str, list[Check]] = {}
    for check in report.checks:
        rows.setdefault(check.package or check.what, []).append(check)
    width = max(map(len, rows))
    out = []
    for name, checks in rows.items():
        missing = [c for c in checks if not c.ok]
        mark = "ok" if not missing else ("--" if all(c.optional for c in missing) else "MISSING")
        what = " ".join(c.what for c in checks if c.package)
        if missing:
            what = f"{' '.join(c.what for c in missing if c.package)} -> {missing[0].fix}".strip()
        out.append(f"{mark:8} {name:{width}}  {what}".rstrip())
    return "\n".join(out)


ARM64_FORMAT = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


def enable_arm64() -> None:
    """Register qemu-aarch64 with binfmt_misc from QEMU's own binfmt.d file, as systemd-binfmt
    does at boot (a container or a machine without systemd never ran it): what
    scripts/setup.sh does, for a machine rebooted since."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False)
    entry = BINFMT / "qemu-aarch64"
    try:
        if entry.exists():
            entry.write_text("-1")  # an old registration (a removed interpreter)
        (BINFMT / "register").write_text(ARM64_FORMAT.read_text())
    except OSError:
        pass  # not root, or no such file: the check that follows says what is missing


def main(argv: list[str] | None = None) -> int:
    """Print every check; one error line a missing piece; exit 1 if any."""
    quiet = "--quiet" in (argv or [])
    report = examine()
    if not quiet:
        print(table(report))
    problems = diagnostics(report)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":  # `python3 -m scooby.util.doctor`: before .venv/ exists
    sys.exit(main(sys.argv[1:]))
