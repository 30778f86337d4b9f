"""The daemons' own checkers over a rendered tree: a file its daemon rejects is a bug.

    dnsmasq --test                      OUT/*/etc/dnsmasq.d (as Debian's dnsmasq reads it)
    lighttpd -tt -f                     OUT/*/etc/lighttpd/lighttpd.conf (paths under a temp root)
    iptables-restore --test             OUT/*/etc/iptables/rules.v4|v6, nft AND legacy backends
                                        (the nft one accepts a misspelt target)
    cloud-init schema --config-file     every file under OUT that starts with #cloud-config
    systemd-analyze verify              every unit and drop-in under OUT/*/…/systemd/system
    sshd -t -f                          OUT/*/etc/ssh/sshd_config and sshd_config.d/*.conf
    exportfs -r                         OUT/*/etc/exports and exports.d/*.exports (exportfs has
                                        no test mode: it runs in a private mount namespace with
                                        the rendered files bound over /etc/exports, as root)

Every problem becomes one `OUT-relative-path:LINE: error: MESSAGE` diagnostic. Files with the
same content (250 agents' identical units) are checked once and reported for each path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import Diagnostic, ScoobyError, error, errors_only, warning
from scooby.render.checktools import (
    each,
    grouped,
    missing_tool,
    output,
    rebase,
    run,
    trees,
)
from scooby.render.systemd_check import systemd

# Executables the image provides that a build host normally lacks; a unit may name them.
CLOUD_CONFIG = b"#cloud-config"


def check(out: Path) -> list[Diagnostic]:
    """Raise ScoobyError with every problem the checkers find in the rendered tree `out`;
    else the warnings (a checker that cannot run here, e.g. exportfs without root)."""
    found = problems(out)
    if errors_only(found):
        raise ScoobyError(found)
    return found


def problems(out: Path) -> list[Diagnostic]:
    out = out.resolve()
    # A checker parses what it is given: a directive that runs a program would run it here,
    # on the build host. None is allowed in (validate refuses them in server/ already).
    if found := _executing(out):
        return found
    with tempfile.TemporaryDirectory(prefix="scooby-check.") as tmp:
        for checker in CHECKERS:
            found += checker(out, Path(tmp) / checker.__name__.strip("_"))
    return found


def _package_root() -> str:
    import scooby

    root = str(Path(scooby.__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{rest}" if rest else root


def _executing(out: Path) -> list[Diagnostic]:
    from scooby.validate.repo_files import EXECUTING

    found = []
    paths = []
    for tree in trees(out):
        etc = tree / "etc"
        paths += [etc / "dnsmasq.conf", *etc.glob("dnsmasq.d/**/*"), *etc.glob("lighttpd/**/*")]
    for path in sorted(p for p in paths if p.is_file() and not p.is_symlink()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern, daemon in EXECUTING:
                if m := pattern.match(line):
                    found.append(
                        error(
                            path.relative_to(out).as_posix(),
                            number,
                            f"{m.group(1)} would run a program when {daemon} reads this: "
                            "not checked, and refused",
                        )
                    )
    return found


# -- the checkers ----------------------------------------------------------------------

DNSMASQ_LINE = re.compile(r"at line (\d+) of (\S+)")


def _dnsmasq(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        conf_dir = tree / "etc/dnsmasq.d"
        if not conf_dir.is_dir():
            continue
        if missing := missing_tool("dnsmasq", "dnsmasq.d"):
            return missing
        # As Debian's dnsmasq service reads it: /etc/dnsmasq.conf, then the directory.
        main = tree / "etc/dnsmasq.conf"
        proc = run(
            [
                "dnsmasq",
                "--test",
                f"--conf-file={main if main.is_file() else os.devnull}",
                f"--conf-dir={conf_dir},.dpkg-dist,.dpkg-old,.dpkg-new",
            ]
        )
        if proc.returncode != 0:
            text = output(proc)
            where = DNSMASQ_LINE.search(text)
            if where:
                path, line = Path(where.group(2)), int(where.group(1))
            else:
                path, line = conf_dir, None
            found += each(out, [path], line, text.removeprefix("dnsmasq: "), "dnsmasq --test")
    return found


# lighttpd names the line where its parser stood: after a newline (pos 0) that is the next one.
LIGHTTPD_LINE = re.compile(r"source: (\S+) line: (\d+) pos: (\d+)")


def _lighttpd(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        conf = tree / "etc/lighttpd/lighttpd.conf"
        if not conf.is_file():
            continue
        if missing := missing_tool("lighttpd", "lighttpd.conf"):
            return missing
        # The configuration names on-master paths; move them under a temporary root so the
        # checker reads this host's modules and nothing of the master's paths is needed.
        root = tmp / tree.name
        copy = root / "lighttpd.conf"
        root.mkdir(parents=True)
        copy.write_text(rebase(conf.read_text(), root, (layout.HTTP_ROOT, "/run", "/var")))
        proc = run(["lighttpd", "-tt", "-f", str(copy)])
        if proc.returncode != 0:
            text = output(proc).replace(str(copy), str(conf))
            where = LIGHTTPD_LINE.search(text)
            line = None
            if where:
                line = int(where.group(2)) - (where.group(3) == "0" and where.group(2) != "1")
            found += each(out, [conf], line, _last_lines(text), "lighttpd -tt")
    return found


IPTABLES_LINE = re.compile(r"line:? (\d+)")


def _iptables(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        for name, nft, legacy in (
            ("rules.v4", ["iptables-nft-restore"], ["xtables-legacy-multi", "iptables-restore"]),
            ("rules.v6", ["ip6tables-nft-restore"], ["xtables-legacy-multi", "ip6tables-restore"]),
        ):
            rules = tree / "etc/iptables" / name
            if not rules.is_file():
                continue
            for cmd in (nft, legacy):
                if missing := missing_tool(cmd[0], name):
                    return missing
                proc = run([*cmd, "--test", str(rules)])
                if proc.returncode != 0:
                    text = output(proc)
                    where = IPTABLES_LINE.search(text)
                    found += each(
                        out,
                        [rules],
                        int(where.group(1)) if where else None,
                        _last_lines(text),
                        f"{' '.join(cmd)} --test",
                    )
    return found


def _cloud_config(out: Path, tmp: Path) -> list[Diagnostic]:
    files = [p for p in sorted(out.rglob("*")) if p.is_file() and _is_cloud_config(p)]
    if not files:
        return []
    if missing := missing_tool("cloud-init", "cloud-config files"):
        return missing
    groups = grouped(files)
    firsts = [str(paths[0]) for paths in groups.values()]
    by_path = {str(paths[0]): paths for paths in groups.values()}
    # One process per core (the schema check is CPU-bound), each taking a share of the files.
    n = max(1, min(os.cpu_count() or 1, len(firsts) // 50))
    helper = [_cloud_init_python(), str(Path(__file__).with_name("cloudinit_schema.py"))]
    procs = [
        subprocess.Popen(
            [*helper, *firsts[i::n]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(n)
    ]
    results = [(proc, *proc.communicate(timeout=300)) for proc in procs]
    found = []
    for proc, stdout, stderr in results:
        if proc.returncode != 0:
            return each(out, files[:1], None, _last_lines(stderr or stdout), "cloud-init schema")
        for record in map(json.loads, stdout.splitlines()):
            for line, message in record["errors"]:
                found += each(out, by_path[record["path"]], line, message, "cloud-init schema")
    return found


def _is_cloud_config(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(CLOUD_CONFIG)) == CLOUD_CONFIG


def _cloud_init_python() -> str:
    """The interpreter cloud-init runs under (its script's shebang): it can import cloudinit."""
    script = Path(shutil.which("cloud-init") or "cloud-init")
    first = script.read_text(errors="replace").splitlines()[0]
    return first.removeprefix("#!").split()[0] if first.startswith("#!") else "python3"


SSHD_LINE = re.compile(r"line (\d+):")


def _sshd(out: Path, tmp: Path) -> list[Diagnostic]:
    files = []
    for tree in trees(out):
        ssh = tree / "etc/ssh"
        files += [p for p in [ssh / "sshd_config"] if p.is_file()]
        files += sorted((ssh / "sshd_config.d").glob("*.conf"))
    if not files:
        return []
    for tool in ("sshd", "ssh-keygen"):
        if missing := missing_tool(tool, "sshd configuration"):
            return missing
    tmp.mkdir(parents=True)
    if os.geteuid() == 0:  # sshd -t insists on its privilege separation directory, which
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # ssh.service creates at start
    key = tmp / "host_key"  # sshd -t wants a host key; the master makes its own at first boot
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]).check_returncode()
    found = []
    for paths in grouped(files).values():
        proc = run(
            [
                shutil.which("sshd") or "sshd",
                "-t",
                "-f",
                str(paths[0]),
                "-h",
                str(key),
            ]
        )
        if proc.returncode != 0:
            text = output(proc)
            where = SSHD_LINE.search(text)
            found += each(
                out, paths, int(where.group(1)) if where else None, _last_lines(text), "sshd -t"
            )
    return found


SETUP_FAILED = 3
EXPORTFS_LINE = re.compile(r"^exportfs: /etc/exports:(\d+): (.*)$")


def _exportfs(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        files = [p for p in [tree / "etc/exports"] if p.is_file()]
        files += sorted((tree / "etc/exports.d").glob("*.exports"))
        if not files:
            continue
        for tool in ("exportfs", "unshare"):
            if missing := missing_tool(tool, "NFS exports"):
                return missing
        if os.geteuid() != 0:
            return [
                warning(
                    files[0].relative_to(out).as_posix(),
                    None,
                    "exportfs: not checked: that needs root (a private mount namespace)",
                )
            ]
        # exportfs reads /etc/exports and /etc/exports.d only: give it every rendered file as
        # one /etc/exports, and map its line numbers back.
        tmp.mkdir(parents=True, exist_ok=True)
        joined, origin = [], []
        for f in files:
            for n, line in enumerate(f.read_text().splitlines(), 1):
                # exportfs does not count the lines its comments end: drop comments.
                joined.append(line.split("#", 1)[0])
                origin.append((f, n))
        (tmp / "exports").write_text("\n".join(joined) + "\n")
        proc = run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                sys.executable,
                "-m",
                "scooby.render.checks",
                "exportfs",
                str(tmp),
            ],
            env={"PYTHONPATH": _package_root()},  # run from "/": find this very package
        )
        if proc.returncode != 0:
            found += each(out, files[:1], None, _last_lines(output(proc)), "exportfs")
        for text in output(proc).splitlines():
            m = EXPORTFS_LINE.match(text)
            if m and "Failed to stat" not in m.group(2):  # the paths exist on the master only
                f, n = origin[int(m.group(1)) - 1]
                found += each(out, [f], n, m.group(2), "exportfs")
    return found


def _exportfs_inside(tmp: Path) -> int:
    """In a private mount namespace: the rendered exports over the host's, then exportfs -r."""
    empty = tmp / "empty"
    (tmp / "nfs").mkdir()
    empty.mkdir()
    binds = [(tmp / "exports", "/etc/exports"), (tmp / "nfs", "/var/lib/nfs")]
    if Path("/etc/exports.d").is_dir():
        binds.append((empty, "/etc/exports.d"))
    for source, target in binds:
        if not Path(target).exists():  # never create anything on the host
            print(f"scooby: {target} does not exist on this host", file=sys.stderr)
            return SETUP_FAILED
        subprocess.run(["mount", "--bind", str(source), target], check=True)
    subprocess.run(["exportfs", "-r"], check=False)  # fails on the master-only paths; see output
    return 0


def _last_lines(text: str, n: int = 3) -> str:
    """The useful end of a tool's output, on one line."""
    lines = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: ", "", s) for s in text.splitlines()]
    return " | ".join(s for s in lines[-n:] if s.strip())


CHECKERS: tuple[Callable[[Path, Path], list[Diagnostic]], ...] = (
    _dnsmasq,
    _lighttpd,
    _iptables,
    _cloud_config,
    systemd,
    _sshd,
    _exportfs,
)


if __name__ == "__main__":  # `python -m scooby.render.checks exportfs TMP`, run by _exportfs
    if sys.argv[1:2] == ["exportfs"]:
        sys.exit(_exportfs_inside(Path(sys.argv[2])))
    sys.exit(2)
