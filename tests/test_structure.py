"""The package's shape, as docs/architecture.md describes it: small modules and classes, and
stages that import only the stages before them (import-linter, run here too)."""

from __future__ import annotations

import ast
import subprocess

from conftest import ROOT

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
PACKAGE = ROOT / "scooby"


def _modules():
    # templates/ and schemas/ are symlinked data, not modules
    skip = {"templates", "schemas"}
    return sorted(p for p in PACKAGE.rglob("*.py") if not skip & set(p.relative_to(PACKAGE).parts))


def test_no_module_over_400_lines() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _modules()}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_class_over_200_lines() -> None:
    big = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    big[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = lines
    assert big == {}


def test_stages_import_only_earlier_stages() -> None:
    # import-linter is in the test extra: a missing `lint-imports` fails here, never skips.
    done = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
