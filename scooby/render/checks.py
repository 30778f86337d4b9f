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

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import Diagnostic, ScoobyError, error, errors_only, warning
from scooby.util.tools import not_installed

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".mount", ".path", ".target", ".automount")
# Executables the image provides that a build host normally lacks; a unit may name them.
IMAGE_EXECUTABLES = frozenset({layout.K3S_BINARY})
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
    found: list[Diagnostic] = []
    with tempfile.TemporaryDirectory(prefix="scooby-check.") as tmp:
        for checker in CHECKERS:
            found += checker(out, Path(tmp) / checker.__name__.strip("_"))
    return found


def trees(out: Path) -> list[Path]:
    """The root trees in a render: the master's and each agent's private layer."""
    agents = out / "agents"
    return [out / "master", *(sorted(agents.iterdir()) if agents.is_dir() else [])]


def rebase(text: str, root: Path, paths: Iterable[str]) -> str:
    """`text` with each absolute on-master path in `paths` moved under `root`.

    Used to run a daemon's checker (or the daemon itself, in the live test) on this host
    against the master's configuration. Only whole path components match.
    """
    for path in sorted(paths, key=len, reverse=True):
        text = re.sub(
            rf"(?<![^\s=\"'(,:]){re.escape(path)}(?=[/\"'\s,:)]|$)",
            lambda _m, p=path: f"{root}{p}",
            text,
            flags=re.MULTILINE,
        )
    return text


# -- running the tools -----------------------------------------------------------------


def _missing(tool: str, what: str) -> list[Diagnostic]:
    if shutil.which(tool):
        return []
    return [
        error("", None, f"cannot check {what}: {not_installed(tool)}; or render with --no-check")
    ]


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _grouped(files: Iterable[Path]) -> dict[bytes, list[Path]]:
    """Files by content digest: each distinct content needs checking once."""
    groups: dict[bytes, list[Path]] = {}
    for f in files:
        groups.setdefault(hashlib.sha256(f.read_bytes()).digest(), []).append(f)
    return groups


def _each(
    out: Path, paths: list[Path], line: int | None, message: str, tool: str
) -> list[Diagnostic]:
    message = message.replace(f"{out}/", "")  # paths in the tools' words, OUT-relative too
    return [error(p.relative_to(out).as_posix(), line, f"{tool}: {message}") for p in paths]


def _output(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(s for s in (proc.stderr.strip(), proc.stdout.strip()) if s)


# -- the checkers ----------------------------------------------------------------------

DNSMASQ_LINE = re.compile(r"at line (\d+) of (\S+)")


def _dnsmasq(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        conf_dir = tree / "etc/dnsmasq.d"
        if not conf_dir.is_dir():
            continue
        if missing := _missing("dnsmasq", "dnsmasq.d"):
            return missing
        # As Debian's dnsmasq service reads it: /etc/dnsmasq.conf, then the directory.
        main = tree / "etc/dnsmasq.conf"
        proc = _run(
            [
                "dnsmasq",
                "--test",
                f"--conf-file={main if main.is_file() else os.devnull}",
                f"--conf-dir={conf_dir},.dpkg-dist,.dpkg-old,.dpkg-new",
            ]
        )
        if proc.returncode != 0:
            text = _output(proc)
            where = DNSMASQ_LINE.search(text)
            if where:
                path, line = Path(where.group(2)), int(where.group(1))
            else:
                path, line = conf_dir, None
            found += _each(out, [path], line, text.removeprefix("dnsmasq: "), "dnsmasq --test")
    return found


# lighttpd names the line where its parser stood: after a newline (pos 0) that is the next one.
LIGHTTPD_LINE = re.compile(r"source: (\S+) line: (\d+) pos: (\d+)")


def _lighttpd(out: Path, tmp: Path) -> list[Diagnostic]:
    found = []
    for tree in trees(out):
        conf = tree / "etc/lighttpd/lighttpd.conf"
        if not conf.is_file():
            continue
        if missing := _missing("lighttpd", "lighttpd.conf"):
            return missing
        # The configuration names on-master paths; move them under a temporary root so the
        # checker reads this host's modules and nothing of the master's paths is needed.
        root = tmp / tree.name
        copy = root / "lighttpd.conf"
        root.mkdir(parents=True)
        copy.write_text(rebase(conf.read_text(), root, (layout.HTTP_ROOT, "/run", "/var")))
        proc = _run(["lighttpd", "-tt", "-f", str(copy)])
        if proc.returncode != 0:
            text = _output(proc).replace(str(copy), str(conf))
            where = LIGHTTPD_LINE.search(text)
            line = None
            if where:
                line = int(where.group(2)) - (where.group(3) == "0" and where.group(2) != "1")
            found += _each(out, [conf], line, _last_lines(text), "lighttpd -tt")
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
                if missing := _missing(cmd[0], name):
                    return missing
                proc = _run([*cmd, "--test", str(rules)])
                if proc.returncode != 0:
                    text = _output(proc)
                    where = IPTABLES_LINE.search(text)
                    found += _each(
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
    if missing := _missing("cloud-init", "cloud-config files"):
        return missing
    groups = _grouped(files)
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
            return _each(out, files[:1], None, _last_lines(stderr or stdout), "cloud-init schema")
        for record in map(json.loads, stdout.splitlines()):
            for line, message in record["errors"]:
                found += _each(out, by_path[record["path"]], line, message, "cloud-init schema")
    return found


def _is_cloud_config(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(CLOUD_CONFIG)) == CLOUD_CONFIG


def _cloud_init_python() -> str:
    """The interpreter cloud-init runs under (its script's shebang): it can import cloudinit."""
    script = Path(shutil.which("cloud-init") or "cloud-init")
    first = script.read_text(errors="replace").splitlines()[0]
    return first.removeprefix("#!").split()[0] if first.startswith("#!") else "python3"


SYSTEMD_FILE_LINE = re.compile(r"^(/\S+?):(\d+): (.*)$")
SYSTEMD_UNIT_LINE = re.compile(r"^([\w@.\\:-]+\.[a-z]+): (.*)$")
SYSTEMD_NO_COMMAND = re.compile(r"Command (\S+) is not executable: No such file or directory")


UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def _unit_files(tree: Path) -> list[Path]:
    """Units and drop-ins in a tree's systemd unit directories."""
    found = []
    for unit_dir in (tree / d for d in UNIT_DIRS):
        if not unit_dir.is_dir():
            continue
        for path in sorted(unit_dir.rglob("*")):
            if not path.is_file():
                continue
            in_dropin = path.parent.name.endswith(".d")
            if path.name.endswith(UNIT_SUFFIXES) or (in_dropin and path.name.endswith(".conf")):
                found.append(path)
    return found


def _systemd(out: Path, tmp: Path) -> list[Diagnostic]:
    # Trees whose units are the same are verified once. Agents' units differ only by the
    # agent's name (in comments and descriptions), which is plain hostname text and cannot
    # change what systemd makes of a unit; so names are masked before comparing, and a unit
    # that differs in any other way is verified with its own agent.
    groups: dict[tuple, list[Path]] = {}
    for tree in trees(out):
        units = _unit_files(tree)
        if units:
            key = tuple((u.relative_to(tree).as_posix(), _masked(tree, u)) for u in units)
            groups.setdefault(key, []).append(tree)
    if not groups:
        return []
    if missing := _missing("systemd-analyze", "systemd units"):
        return missing
    found = []
    for n, same in enumerate(groups.values()):
        found += _verify_units(out, same, tmp / str(n))
    return found


def _masked(tree: Path, unit: Path) -> bytes:
    data = unit.read_bytes()
    if tree.parent.name != "agents":
        return data
    for name in sorted({tree.name, tree.name.upper()}, key=len, reverse=True):
        data = data.replace(name.encode(), b"\0AGENT\0")
    return data


def _verify_units(out: Path, same: list[Path], unit_dir: Path) -> list[Diagnostic]:
    """`systemd-analyze verify` the units of the first tree, reported for each tree."""
    tree = same[0]
    copies: dict[str, Path] = {}  # copied file -> the rendered file, relative to the tree
    names: list[str] = []
    for unit in _unit_files(tree):
        dropin = not unit.name.endswith(UNIT_SUFFIXES)
        target = unit_dir / (f"{unit.parent.name}/{unit.name}" if dropin else unit.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(unit, target)
        copies[str(target)] = unit.relative_to(tree)
        name = unit.parent.name.removesuffix(".d") if dropin else unit.name
        # A template is verified through an instance of it.
        name = name.replace("@.", "@scooby-check.")
        if name not in names:
            names.append(name)
    proc = _run(
        ["systemd-analyze", "verify", "--man=no", "--recursive-errors=yes", *names],
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"},
    )
    if proc.returncode == 0:
        return []
    by_unit = {p.name: rel for p, rel in ((Path(k), v) for k, v in copies.items())}
    found = []
    for text in _output(proc).splitlines():
        rel, line, message = _systemd_where(text, copies, by_unit)
        command = SYSTEMD_NO_COMMAND.search(message)
        if command and _provided(command.group(1), same):
            continue  # rendered into the tree, or shipped by the image: not on this host
        if rel is None:
            continue  # about the host's own units, not ours
        found += _each(out, [t / rel for t in same], line, message, "systemd-analyze verify")
    if not found and not _output(proc):  # failed without a word: report it, do not guess
        found = _each(out, [t / "etc/systemd/system" for t in same], None, "failed", "verify")
    return found


def _systemd_where(
    text: str, copies: dict[str, Path], by_unit: dict[str, Path]
) -> tuple[Path | None, int | None, str]:
    m = SYSTEMD_FILE_LINE.match(text)
    if m:
        return copies.get(m.group(1)), int(m.group(2)), m.group(3)
    m = SYSTEMD_UNIT_LINE.match(text)
    if m:
        unit = m.group(1).replace("@scooby-check.", "@.")
        return by_unit.get(unit), None, m.group(2)
    return None, None, text


def _provided(command: str, same: list[Path]) -> bool:
    if command in IMAGE_EXECUTABLES:
        return True
    rendered = same[0] / command.lstrip("/")
    return rendered.is_file() and os.access(rendered, os.X_OK)


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
        if missing := _missing(tool, "sshd configuration"):
            return missing
    tmp.mkdir(parents=True)
    if os.geteuid() == 0:  # sshd -t insists on its privilege separation directory, which
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # ssh.service creates at start
    key = tmp / "host_key"  # sshd -t wants a host key; the master makes its own at first boot
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]).check_returncode()
    found = []
    for paths in _grouped(files).values():
        proc = _run(
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
            text = _output(proc)
            where = SSHD_LINE.search(text)
            found += _each(
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
            if missing := _missing(tool, "NFS exports"):
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
        proc = _run(
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
            ]
        )
        if proc.returncode != 0:
            found += _each(out, files[:1], None, _last_lines(_output(proc)), "exportfs")
        for text in _output(proc).splitlines():
            m = EXPORTFS_LINE.match(text)
            if m and "Failed to stat" not in m.group(2):  # the paths exist on the master only
                f, n = origin[int(m.group(1)) - 1]
                found += _each(out, [f], n, m.group(2), "exportfs")
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
    _systemd,
    _sshd,
    _exportfs,
)


if __name__ == "__main__":  # `python -m scooby.render.checks exportfs TMP`, run by _exportfs
    if sys.argv[1:2] == ["exportfs"]:
        sys.exit(_exportfs_inside(Path(sys.argv[2])))
    sys.exit(2)
