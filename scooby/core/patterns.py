"""One way to match a value against a pattern: the whole value, and nothing after it.

Python's `$` also matches before a final newline, so `re.match(r"^eth0$", "eth0\\n")`
succeeds and a value with a trailing newline slips into a config file as two lines.
Every pattern Scooby applies to a user's value goes through `whole` (Python patterns,
`re.fullmatch`) or, for JSON-schema `pattern` keywords, through `ecma`, which gives `$` its
ECMA-262 meaning (the end of the input, never before a newline), as the JSON Schema
specification says patterns should be read.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any


@cache
def whole(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled to match whole values only (use `.fullmatch`)."""
    return re.compile(pattern)


def fullmatch(pattern: str | re.Pattern[str], value: str) -> bool:
    """True when `pattern` matches all of `value`: the one test for every user value."""
    compiled = pattern if isinstance(pattern, re.Pattern) else whole(pattern)
    return isinstance(value, str) and compiled.fullmatch(value) is not None


@cache
def ecma(pattern: str) -> re.Pattern[str]:
    """A JSON-schema pattern as Python searches it, with each `$` outside a character class
    meaning the very end of the input (ECMA-262 without the multiline flag)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(r"\Z" if c == "$" and not in_class else c)
        i += 1
    return re.compile("".join(out))


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any):
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def validator_class(base: Any = None) -> Any:
    """A jsonschema validator class whose `pattern` keyword is read with `ecma`."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(base or Draft202012Validator, {"pattern": _pattern_keyword})
