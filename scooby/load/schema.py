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

KINDS = ("config", "agent", "env")

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MBR_PARTUUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{2}$")
_SHA256 = re.compile(r"^(sha256:)?[0-9a-fA-F]{64}$")
_PXE_ID = re.compile(r"^[0-9a-f]{8}$")
# Every Scooby kernel command line has net.ifnames=0: the kernel's own names (eth0, eth1, ...
# for wired Ethernet, built-in or USB) are the only ones a device can have.
_NETDEV = re.compile(r"^eth(0|[1-9][0-9]{0,2})$")
# Names udev's predictable naming would give (systemd.net-naming-scheme): none exist here.
_PREDICTABLE = re.compile(r"^(en|wl|ww|sl|ib)[a-z0-9]+$")
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_KEY = re.compile(
    r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+=* ?.*$"
)


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
    u = urlparse(v)
    return u.scheme in ("http", "https", "file") and bool(u.netloc or u.scheme == "file")


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
        lambda v: bool(_HOSTNAME.match(v)),
        "a lower-case RFC 1123 hostname (a-z, 0-9, '-', at most 63)",
    ),
    "domain": (lambda v: bool(_DOMAIN.match(v)) and len(v) <= 253, "a lower-case DNS domain"),
    "mac": (lambda v: bool(_MAC.match(v)), "a MAC address like b8:27:eb:81:1a:52"),
    "uuid": (lambda v: bool(_UUID.match(v)), "a UUID"),
    "partuuid": (
        lambda v: bool(_UUID.match(v) or _MBR_PARTUUID.match(v)),
        "a PARTUUID: a GPT UUID or an MBR form like 4f1c2d3e-02",
    ),
    "partuuid-or-uuid": (
        lambda v: bool(_UUID.match(v) or _MBR_PARTUUID.match(v)),
        "a PARTUUID (a GPT UUID or an MBR form like 4f1c2d3e-02) or an ext4 file system UUID",
    ),
    "sha256": (
        lambda v: bool(_SHA256.match(v)),
        "a sha256 digest (64 hex digits, optionally 'sha256:' first)",
    ),
    "pxe-id": (lambda v: bool(_PXE_ID.match(v)), "8 lower-case hex digits"),
    "netdev": (lambda v: bool(_NETDEV.match(v)), "a kernel Ethernet name: eth0, eth1, ..."),
    "username": (lambda v: bool(_USERNAME.match(v)), "a lower-case Unix user name"),
    "ssh-public-key": (
        lambda v: bool(_SSH_KEY.match(v)),
        "an SSH public key line like 'ssh-ed25519 AAAA... me@host'",
    ),
    "uri": (_uri, "an http(s):// or file:// URL"),
    "s3-uri": (_s3_uri, "an s3://bucket/prefix URI"),
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
    return Draft202012Validator(schema(kind), format_checker=_checker())


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


def check(
    kind: str, values: Mapping[str, str], path: str, lines: Mapping[str, int]
) -> list[Diagnostic]:
    """Validate one file's KEY=VALUE mapping against its schema; one diagnostic per problem."""
    known = list(properties(kind))
    out: list[Diagnostic] = []
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
            out.append(error(path, lines.get(key), _message(err, kind, key), key))
        else:  # pragma: no cover - the schemas have no other top-level rules
            out.append(error(path, None, err.message))
    return sorted(out, key=lambda d: (d.line or 0, d.key or ""))


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
    if _PREDICTABLE.match(value):
        return (
            ": the image boots with net.ifnames=0, so predictable names like this never "
            "appear; the Pi's own Ethernet is eth0, a USB adapter eth1"
        )
    return ""


def _message(err: Any, kind: str, key: str) -> str:
    value = err.instance
    if err.validator == "format":
        fmt = err.validator_value.removesuffix("-or-empty")
        hint = {"pxe-id": _pxe_hint, "netdev": _netdev_hint}.get(fmt, lambda _: "")(value)
        return f"{value!r} is not {FORMATS[fmt][1]}{hint}"
    if err.validator == "enum":
        allowed = ", ".join(repr(v) for v in err.validator_value if v)
        return f"{value!r} is not one of {allowed}"
    if err.validator == "pattern":
        return f"{value!r} is not valid: {properties(kind)[key]['description']}"
    return err.message
