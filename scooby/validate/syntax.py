"""`python -m scooby.validate.syntax FILE...`: YAML and JSON syntax, for the pre-commit hook.

Only syntax: YAML is composed, not constructed, so custom tags (`!Ref`, `!reference`)
and multi-document files pass; JSON must parse with the standard library. One line per
problem, `PATH:LINE: error: MESSAGE`; exit 1 if any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scooby.core.errors import Diagnostic, error
from scooby.load import envfile


def check(path: Path, rel: str) -> list[Diagnostic]:
    text, problems = envfile.read_text(path, rel)
    if text is None:
        return problems
    if path.suffix == ".json":
        return json_problems(text, rel)
    return _yaml(text, rel)


def json_problems(text: str, rel: str) -> list[Diagnostic]:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return [error(rel, exc.lineno, f"not valid JSON: {exc.msg}")]
    except RecursionError:
        return [error(rel, 1, "not valid JSON: nested too deeply")]
    return []


def _yaml(text: str, rel: str) -> list[Diagnostic]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        while loader.check_node():
            loader.get_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [error(rel, mark.line + 1 if mark else None, f"YAML syntax error: {problem}")]
    except RecursionError:
        return [error(rel, None, "YAML nested too deeply")]
    finally:
        loader.dispose()
    return []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    problems = [d for name in args for d in check(Path(name), Path(name).as_posix())]
    for d in problems:
        print(d, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
