"""The JSON Schemas in `schemas/`: the single source of keys, defaults, formats and docs."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft202012Validator, FormatChecker

from scooby.core.errors import Diagnostic, error
from scooby.core.paths import SCHEMAS_DIR
from scooby.core.patterns import fullmatch, validator_class
from scooby.core.redact import shown

KINDS = ("config", "agent", "env")

# Whole-value patterns: applied with patterns.fullmatch only (never `^...$` with .match).
_HOSTNAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = rf"{_HOSTNAME}(\.{_HOSTNAME})*"
_MAC = r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_MBR_PARTUUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{2}"
_SHA256 = r"(sha256:)?[0-9a-fA-F]{64}"
_PXE_ID = r"[0-9a-f]{8}"
# Every Scooby kernel command line has net.ifnames=0: the kernel's own names (eth0, eth1, ...
# for wired Ethernet, built-in or USB) are the only ones a device can have (so never lo,
# '.' or '..').
_NETDEV = r"eth(0|[1-9][0-9]{0,2})"
# Names udev's predictable naming would give (systemd.net-naming-scheme): none exist here.
_PREDICTABLE = r"(en|wl|ww|sl|ib)[a-z0-9]+"
_USERNAME = r"[a-z_][a-z0-9_-]{0,31}"
# Debian Policy 5.6.1 (Source, which 5.6.7 Package follows): "lower case letters (a-z),
# digits (0-9), plus (+) and minus (-) signs, and periods (.)", "at least two characters
# long", starting "with an alphanumeric character". Nothing else can name a package, and
# nothing else reaches apt-get's command line (no option, no apt pattern, no version).
DEBIAN_PACKAGE = r"[a-z0-9][a-z0-9+.-]+"
_SSH_KEY = (
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+=*( [^\x00-\x1f\x7f]*)?"
)
# Every KEY=VALUE value lands on one line of some file (a unit, an fstab, apt's sources):
# a control character (a newline above all) would split it or change what it means.
CONTROL = r"[\x00-\x08\x0a-\x1f\x7f]"


def _ipv4(v: str) -> bool:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return False
    return True


def _ipv4_network(v: str) -> bool:
    if "/" not in v:
        return False
    try:
        ipaddress.IPv4Network(v, strict=True)
    except ValueError:
        return False
    return True


def _uri(v: str) -> bool:
    if any(c.isspace() for c in v):  # one word in apt's sources and in every message
        return False
    u = urlparse(v)
    return u.scheme in ("http", "https", "file") and bool(u.netloc or u.scheme == "file")


def debian_packages(v: str) -> bool:
    """Space-separated Debian package names; empty is none."""
    return all(fullmatch(DEBIAN_PACKAGE, word) for word in v.split(" ") if word)


def _s3_uri(v: str) -> bool:
    u = urlparse(v)
    return u.scheme == "s3" and bool(u.netloc)


# format name -> (check, what a valid value is, for messages)
FORMATS: dict[str, tuple[Any, str]] = {
    "ipv4": (_ipv4, "an IPv4 address"),
    "ipv4-network": (
        _ipv4_network,
        "an IPv4 network in CIDR form with no host bits set, e.g. 192.168.64.0/24",
    ),
    "hostname": (
        lambda v: fullmatch(_HOSTNAME, v),
        "a lower-case RFC 1123 hostname (a-z, 0-9, '-', at most 63)",
    ),
    "domain": (lambda v: fullmatch(_DOMAIN, v) and len(v) <= 253, "a lower-case DNS domain"),
    "mac": (lambda v: fullmatch(_MAC, v), "a MAC address like b8:27:eb:81:1a:52"),
    "uuid": (lambda v: fullmatch(_UUID, v), "a UUID"),
    "partuuid": (
        lambda v: bool(fullmatch(_UUID, v) or fullmatch(_MBR_PARTUUID, v)),
        "a PARTUUID: a GPT UUID or an MBR form like 4f1c2d3e-02",
    ),
    "partuuid-or-uuid": (
        lambda v: bool(fullmatch(_UUID, v) or fullmatch(_MBR_PARTUUID, v)),
        "a PARTUUID (a GPT UUID or an MBR form like 4f1c2d3e-02) or an ext4 file system UUID",
    ),
    "sha256": (
        lambda v: fullmatch(_SHA256, v),
        "a sha256 digest (64 hex digits, optionally 'sha256:' first)",
    ),
    "pxe-id": (lambda v: fullmatch(_PXE_ID, v), "8 lower-case hex digits"),
    "netdev": (lambda v: fullmatch(_NETDEV, v), "a kernel Ethernet name: eth0, eth1, ..."),
    "username": (lambda v: fullmatch(_USERNAME, v), "a lower-case Unix user name"),
    "ssh-public-key": (
        lambda v: fullmatch(_SSH_KEY, v),
        "an SSH public key line like 'ssh-ed25519 AAAA... me@host'",
    ),
    "uri": (_uri, "an http(s):// or file:// URL"),
    "s3-uri": (_s3_uri, "an s3://bucket/prefix URI"),
    "debian-packages": (
        debian_packages,
        "a list of Debian package names separated by spaces (each: lower-case letters, "
        "digits, '+', '-' and '.', at least two characters, the first a letter or digit)",
    ),
}


def _checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, (check, _) in FORMATS.items():
        checker.checks(name)(check)
        # An empty value means "not set" for optional keys, as in the original's files.
        checker.checks(f"{name}-or-empty")(lambda v, _c=check: v == "" or _c(v))
    return checker


@cache
def schema(kind: str) -> dict[str, Any]:
    text = (SCHEMAS_DIR / f"{kind}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(kind: str) -> Draft202012Validator:
    return validator_class(Draft202012Validator)(schema(kind), format_checker=_checker())


def properties(kind: str) -> dict[str, dict[str, Any]]:
    return schema(kind)["properties"]


def defaults(kind: str) -> dict[str, str]:
    return {k: p["default"] for k, p in properties(kind).items() if "default" in p}


def find_key(key: str) -> tuple[str, dict[str, Any]] | None:
    for kind in KINDS:
        if key in properties(kind):
            return kind, properties(kind)[key]
    return None


def all_keys() -> list[str]:
    return [k for kind in KINDS for k in properties(kind)]


def suggest(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key.upper(), candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


MAX_ERRORS_PER_FILE = 20  # beyond this the first ones are the ones to fix


def secret(kind: str, key: str) -> bool:
    """A key whose value no message may show (`writeOnly` in its schema)."""
    return bool(properties(kind).get(key, {}).get("writeOnly"))


def check(
    kind: str, values: Mapping[str, str], path: str, lines: Mapping[str, int]
) -> list[Diagnostic]:
    """Validate one file's KEY=VALUE mapping against its schema; one diagnostic per problem."""
    known = list(properties(kind))
    out: list[Diagnostic] = []
    controlled = {k for k, v in values.items() if isinstance(v, str) and re.search(CONTROL, v)}
    for key in sorted(controlled, key=lambda k: lines.get(k, 0)):
        out.append(
            error(
                path,
                lines.get(key),
                "contains a line break or another control character: every value must be "
                "one line of plain text",
                key,
            )
        )
    for err in _validator(kind).iter_errors(dict(values)):
        if err.validator == "additionalProperties":
            for key in sorted(set(values) - set(known), key=lambda k: lines.get(k, 0)):
                out.append(error(path, lines.get(key), _unknown(kind, key, known), key))
        elif err.validator == "required":
            key = re.findall(r"'([^']+)'", err.message)[0]
            out.append(
                error(
                    path,
                    None,
                    f"required key is missing: {properties(kind)[key]['description']}",
                    key,
                )
            )
        elif err.path:
            key = str(err.path[0])
            if key not in controlled:
                out.append(error(path, lines.get(key), _message(err, kind, key), key))
        else:  # pragma: no cover - the schemas have no other top-level rules
            out.append(error(path, None, err.message))
    return capped(sorted(out, key=lambda d: (d.line or 0, d.key or "")), path)


def capped(
    found: list[Diagnostic], path: str, limit: int = MAX_ERRORS_PER_FILE
) -> list[Diagnostic]:
    """The first `limit` problems of one file and a line saying how many more there are."""
    if len(found) <= limit:
        return found
    return [*found[:limit], error(path, None, f"{len(found) - limit} more problem(s) not shown")]


# Where each kind's keys live, for "this key belongs elsewhere" hints.
_HOMES = {"config": "config", "agent": "agents/NAME.agent", "env": ".env"}


def _unknown(kind: str, key: str, known: list[str]) -> str:
    home = next((k for k in KINDS if k != kind and key in properties(k)), None)
    if home == "env":
        return (
            "is a secret: put it in .env (never committed) or a CI repository secret, "
            f"not in {_HOMES[kind]}"
        )
    if home is not None:
        return f"belongs in {_HOMES[home]}, not here"
    return f"unknown key{suggest(key, known)}"


def _pxe_hint(value: str) -> str:
    """The original's README printed the whole 16-digit serial; the boot ROM sends 8."""
    if re.fullmatch(r"[0-9a-fA-F]{16}", value):
        return f": that is the full serial number; use its last 8 digits, {value[8:].lower()!r}"
    if re.fullmatch(r"[0-9a-fA-F]{8}", value):
        return f": use lower case, {value.lower()!r}"
    return ""


def _netdev_hint(value: str) -> str:
    """end0 (Debian's name for the Pi's own Ethernet) or enx00e04c680001 (a USB adapter) never
    appear: the image boots with net.ifnames=0, which keeps the kernel's ethN."""
    if fullmatch(_PREDICTABLE, value):
        return (
            ": the image boots with net.ifnames=0, so predictable names like this never "
            "appear; the Pi's own Ethernet is eth0, a USB adapter eth1"
        )
    return ""


def _packages_hint(value: str) -> str:
    """Name the words that are no package name (a tab or comma between names included)."""
    bad = [w for w in value.split(" ") if w and not fullmatch(DEBIAN_PACKAGE, w)]
    return f": {', '.join(shown(w) for w in bad)} {'is' if len(bad) == 1 else 'are'} not" + (
        " a Debian package name" if len(bad) == 1 else " Debian package names"
    )


def _message(err: Any, kind: str, key: str) -> str:
    # A secret's value is never shown; anything else is cut to a few dozen characters.
    value = "the value" if secret(kind, key) else shown(err.instance)
    if err.validator == "format":
        fmt = err.validator_value.removesuffix("-or-empty")
        hints = {"pxe-id": _pxe_hint, "netdev": _netdev_hint, "debian-packages": _packages_hint}
        hint = hints.get(fmt, lambda _: "")(err.instance)
        return f"{value} is not {FORMATS[fmt][1]}{hint}"
    if err.validator == "enum":
        allowed = ", ".join(repr(v) for v in err.validator_value if v)
        return f"{value} is not one of {allowed}"
    if err.validator == "pattern":
        return f"{value} is not valid: {properties(kind)[key]['description']}"
    return f"{value}: {err.validator} {err.validator_value!r} not met"
