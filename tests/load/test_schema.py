"""The schemas themselves: valid, documented, formats as the issue lists, vendored sums."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from conftest import ROOT
from jsonschema import Draft202012Validator

from scooby.load import schema

VENDOR = ROOT / "schemas" / "vendor"


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").rglob("*.json")), ids=str)
def test_every_schema_is_valid_json_schema(path):
    Draft202012Validator.check_schema(json.loads(path.read_text()))


@pytest.mark.parametrize("kind", schema.KINDS)
def test_every_key_is_described_and_defaults_are_valid(kind):
    props = schema.properties(kind)
    required = schema.schema(kind).get("required", [])
    for key, prop in props.items():
        assert prop.get("description"), key
        assert key in required or "default" in prop, key
    if not required:  # every key optional: the defaults alone are a valid file
        assert schema.check(kind, schema.defaults(kind), kind, {}) == []


FORMATS = {
    "ipv4": (["192.168.1.64", "0.0.0.0"], ["192.168.1.256", "1.2.3", "::1", ""]),
    "ipv4-network": (["192.168.64.0/24", "10.0.0.0/8"], ["192.168.64.1/24", "10.0.0.0", ""]),
    "hostname": (["buffy", "agent-01", "a"], ["Buffy", "-a", "a_b", "a" * 64, "a.b"]),
    "mac": (["b8:27:eb:81:1a:52", "B8:27:EB:81:1A:52"], ["b8-27-eb-81-1a-52", "b8:27:eb:81:1a"]),
    "partuuid": (
        ["d5f9e6c2-493c-48da-baf2-0c63dd7a36b1", "4f1c2d3e-02"],
        ["4f1c2d3e-2", "4f1c2d3e", "zzf9e6c2-493c-48da-baf2-0c63dd7a36b1"],
    ),
    "partuuid-or-uuid": (
        ["d5f9e6c2-493c-48da-baf2-0c63dd7a36b1", "4f1c2d3e-02"],
        ["4f1c2d3e", "LABEL=rancher", "/dev/sda1"],
    ),
    "netdev": (["eth0", "eth1", "eth10"], ["end0", "enx00e04c680001", "wlan0", "eth01", "lo"]),
    "sha256": (["sha256:" + "a" * 64, "A" * 64], ["a" * 63, "md5:" + "a" * 64]),
    "pxe-id": (["c6811a52"], ["C6811A52", "10000000c6811a52", "c6811a5"]),
    "uri": (["https://example.com/x.img.xz", "file:///srv/x.zip"], ["ftp://x/y", "example.com"]),
    "s3-uri": (["s3://bucket/prefix"], ["https://bucket", "s3://"]),
    "debian-packages": (
        ["", "tree", "tree htop", " tree  htop ", "libstdc++6", "g++", "python3.13", "0ad"],
        # Too short, upper case, an option, a path, an apt pattern, a version, an
        # architecture, a list with a comma or a tab between names.
        [
            "t",
            "Tree",
            "-tree",
            "--yes",
            "./x.deb",
            "~i",
            "tree=2.1.1-2",
            "htop:arm64",
            "tree,htop",
            "tree\thtop",
            "tree h",
        ],
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_formats(fmt):
    check = schema.FORMATS[fmt][0]
    good, bad = FORMATS[fmt]
    assert [v for v in good if not check(v)] == []
    assert [v for v in bad if check(v)] == []


@pytest.mark.parametrize("name", ["end0", "enx00e04c680001"])
def test_a_predictable_interface_name_is_refused_with_what_to_use(name):
    """Every Scooby cmdline has net.ifnames=0: end0 (Debian's name for the Pi's Ethernet) and
    enx<MAC> (a USB adapter) never exist; the message says which ethN they are."""
    (d,) = schema.check("config", {"LC_INTERNAL_DEVICE": name}, "config", {"LC_INTERNAL_DEVICE": 3})
    assert str(d) == (
        f"config:3: error: LC_INTERNAL_DEVICE: {name!r} is not a kernel Ethernet name: eth0, "
        "eth1, ...: the image boots with net.ifnames=0, so predictable names like this never "
        "appear; the Pi's own Ethernet is eth0, a USB adapter eth1"
    )


def test_unknown_key_gets_a_did_you_mean_hint():
    (d,) = schema.check("agent", {"AGENT_IPP": "x"} | _willow(), "agents/w.agent", {"AGENT_IPP": 7})
    assert str(d) == "agents/w.agent:7: error: AGENT_IPP: unknown key (did you mean AGENT_IP?)"


def test_missing_required_key_names_it():
    values = _willow()
    del values["AGENT_PXE_ID"]
    (d,) = schema.check("agent", values, "agents/w.agent", {})
    assert str(d).startswith("agents/w.agent: error: AGENT_PXE_ID: required key is missing: ")


def _willow() -> dict[str, str]:
    return {
        "AGENT_ETHERNET": "b8:27:eb:81:1a:52",
        "AGENT_IP": "192.168.64.65",
        "AGENT_RANCHER_PART_UUID": "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1",
        "AGENT_PXE_ID": "c6811a52",
    }


def test_vendored_schemas_match_their_recorded_sha256():
    sources = (VENDOR / "SOURCES.md").read_text()
    recorded = dict(re.findall(r"^\| `([^`]+\.json)` \| `([0-9a-f]{64})` \|", sources, re.M))
    files = {p.name for p in VENDOR.glob("*.json")}
    assert set(recorded) == files
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
