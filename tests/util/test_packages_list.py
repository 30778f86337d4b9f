"""scripts/packages.txt names every program Scooby runs on the build machine.

The programs are read from the code itself: in Python, the argument lists given to
subprocess (and to the package's own run helpers), `shutil.which` look-ups and TOOLS tuples;
in shell (scripts/, the build's mmdebstrap hooks, .ci/run), the first word of each command.
A program the list doesn't name would be missing on a fresh machine, and `scooby doctor`
couldn't say so.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

from scooby.util import doctor

# Calls whose first argument is a command line: subprocess's and the package's wrappers.
RUNNERS = re.compile(r"^(_?run\w*|Popen|check_output|check_call|call|exec\w*|spawn\w*)$")
COMMAND_NAMES = re.compile(r"^(cmd|command|argv|\w*_CMD|\w*_COMMAND)$")
PROGRAM = re.compile(r"^[a-z][a-z0-9._+-]*$")
# What the shell itself runs (builtins and keywords), never a package's program.
SHELL = {
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "return", "exit", "set", "local", "export", "readonly", "declare",
    "unset", "shift", "cd", "echo", "printf", "read", "test", "[", "[[", "]]", "true", "false",
    ".", "source", "eval", "exec", "trap", "wait", "kill", "command", "type", "mapfile",
    "break", "continue", "umask",
}  # fmt: skip


# ./scripts/build.sh --vagrant, on a machine that can't build natively: the user's own.
USERS_OWN = {"vagrant"}


SUBST = re.compile(r"\$\(([^()]*)\)")
CASE_PATTERN = re.compile(r"^\s*[^\s()=;]+(\s*\|\s*[^\s()=;]+)*\)", re.M)
# `PROGRAM <<'EOF'` ... `EOF`: the body is the program's input, not commands for this shell
HEREDOC = re.compile(r"^([^\n]*?)<<-?\s*(['\"]?)(\w+)\2([^\n]*\n)(.*?)^\t*\3$", re.M | re.S)
SHELLS = {"sh", "bash", "dash"}
# Words before a command's program: keywords, and wrappers that run the next word.
PREFIXES = {"if", "elif", "while", "until", "!", "exec", "sudo", "$sudo", "env"}


def listed() -> set[str]:
    return {item for p in doctor.read_packages() for item in p.gives if not item.startswith("/")}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def python_programs(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name) and isinstance(n.value.value, str)
    }

    def word(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    def first(node: ast.AST) -> str | None:
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            return word(node.elts[0])
        return None

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            name = _name(node.func)
            if name == "which":
                found.add(word(node.args[0]))
            elif RUNNERS.match(name):
                found.add(first(node.args[0]))
        elif isinstance(node, ast.Assign):
            names = [_name(t) for t in node.targets]
            if any(n.endswith("TOOLS") for n in names) and isinstance(node.value, ast.Tuple):
                found.update(word(e) for e in node.value.elts)
            elif any(COMMAND_NAMES.match(n) for n in names):
                found.add(first(node.value))
    return {w for w in found if w and PROGRAM.match(w)}


def _heredoc(m: re.Match) -> str:
    """A here-document's body is data (a file written, often a script for the target root),
    unless a shell on this machine runs it: then its lines stay commands."""
    words = re.split(r"[;&|(]", m[1])[-1].split()
    fed_to_shell = bool(words) and words[0] in SHELLS
    return m[1] + m[4] + (m[5] if fed_to_shell else "\n" * m[5].count("\n"))


def shell_programs(path: Path) -> set[str]:
    """The first word of each simple command; functions the script defines are not programs;
    what runs in another root (`chroot ROOT PROGRAM`) is that root's, not this machine's."""
    text = path.read_text().replace("\\\n", " ")  # continued lines are one line
    text = HEREDOC.sub(_heredoc, text)
    functions = set(re.findall(r"^\s*(\w[\w-]*)\s*\(\)", text, re.M))
    text = "\n".join(re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines())
    text = re.sub(r"'[^']*'", "''", text)  # single-quoted text is data (awk programs, formats)
    text = re.sub(r"\$\(\(.*?\)\)", "0", text)  # arithmetic
    # double-quoted text too, but for the commands it substitutes: "$(date +%s) s"
    text = re.sub(r'"((?:[^"\\]|\\.)*)"', lambda m: " ; ".join(SUBST.findall(m[1])), text)
    text = CASE_PATTERN.sub("", text)  # `a | b)` in a case: patterns, not a pipe
    found = set()
    for line in text.splitlines():
        for part in re.split(r"&&|\|\||[;|({]|\$\(|\bthen\b|\bdo\b|\belse\b", line):
            words = part.split()
            while words and ("=" in words[0] or words[0] in PREFIXES):
                words.pop(0)  # assignments, keywords and wrappers: the program comes next
            if words and words[0] == "chroot":
                found.add("chroot")
                continue
            if words and PROGRAM.match(words[0]) and words[0] not in SHELL | functions:
                found.add(words[0])
    return found


def code_files() -> tuple[list[Path], list[Path]]:
    python = sorted((ROOT / "scooby").rglob("*.py"))
    shell = [
        *sorted((ROOT / "scripts").glob("*.sh")),
        *sorted((ROOT / "scooby").rglob("hooks/*.sh")),  # mmdebstrap's hooks, run on this machine
        *sorted((ROOT / "templates").rglob("hooks/*.sh")),
        ROOT / ".ci" / "run",
    ]
    return python, shell


def test_every_program_the_code_runs_is_in_the_list():
    python, shell = code_files()
    used = {}
    for path in python:
        for program in python_programs(path):
            used.setdefault(program, path.relative_to(ROOT))
    for path in shell:
        for program in shell_programs(path):
            used.setdefault(program, path.relative_to(ROOT))
    missing = {p: str(where) for p, where in used.items() if p not in listed() | USERS_OWN}
    assert not missing, f"programs the code runs but scripts/packages.txt doesn't name: {missing}"


def test_the_scanner_sees_a_program_in_each_form(tmp_path: Path):
    """The check itself: an unlisted program in any of the forms above is found."""
    py = tmp_path / "m.py"
    py.write_text(
        'import shutil, subprocess\nTOOL = "frob"\nTOOLS = ("alpha",)\n'
        'subprocess.run([TOOL, "-x"])\nsubprocess.Popen(["beta"])\n'
        'shutil.which("gamma")\ncmd = ["delta", "x"]\n_run(["epsilon"], log)\n'
    )
    assert python_programs(py) == {"frob", "alpha", "beta", "gamma", "delta", "epsilon"}
    sh = tmp_path / "s.sh"
    sh.write_text(
        "set -eu\nhelper() { zeta; }\nif eta --x; then theta | iota; fi\n"
        'X=1 kappa "$1" && $sudo lambda\nchroot "$root" inside-image\n'
        "v=$(mu 'nu xi')  # omicron\n"
        "cat >\"$root/usr/sbin/x\" <<'EOF'\n#!/bin/sh\npi --in-the-image\nEOF\n"
        "sh -s <<EOF\nrho\nEOF\n"
    )
    expected = {"zeta", "eta", "theta", "iota", "kappa", "lambda", "chroot", "mu", "cat", "sh"}
    assert shell_programs(sh) == expected | {"rho"}
