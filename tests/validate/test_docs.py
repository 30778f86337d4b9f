"""The README's settings table, --explain and --settings-table all come from the schemas."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from scooby.load import schema
from scooby.validate.explain import settings_table

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def test_readme_settings_block_is_the_generated_table():
    text = (ROOT / "README.md").read_text("utf-8")
    assert START in text and END in text, "README.md lacks the settings markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block == "\n" + settings_table(), (
        "README.md's settings table is stale: regenerate it with "
        "`scooby validate --settings-table` between the markers"
    )


def test_settings_table_lists_every_key_once():
    table = settings_table()
    for key in schema.all_keys():
        assert table.count(f"| `{key}` |") == 1, key
    assert "| `AGENT_IP` | `agents/NAME.agent` | *required* |" in table
    assert "| `LC_HOSTNAME` | `config` | `buffy` |" in table


def scooby(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scooby", "validate", *args], capture_output=True, text=True
    )


def test_explain_describes_a_key_from_its_schema():
    run = scooby("--explain", "lc_internal_net")
    assert run.returncode == 0
    assert run.stdout == (
        "LC_INTERNAL_NET  in config\n"
        "  Internal (cluster) network, CIDR.\n"
        "  default: '192.168.64.0/24'\n"
        "  format:  an IPv4 network in CIDR form with no host bits set, e.g. 192.168.64.0/24\n"
    )


def test_explain_a_required_agent_key_and_a_secret():
    assert "default: (required)" in scooby("--explain", "AGENT_PXE_ID").stdout
    assert "in .env (secrets)" in scooby("--explain", "LC_SSH_AUTH_KEY").stdout


def test_explain_an_unknown_key_is_a_usage_error_with_a_hint():
    run = scooby("--explain", "LC_HOSTNAM")
    assert run.returncode == 2
    assert run.stderr == (
        "scooby validate: error: no setting named LC_HOSTNAM (did you mean LC_HOSTNAME?)\n"
    )
    assert "Traceback" not in run.stderr


def test_settings_table_command_prints_the_table():
    run = scooby("--settings-table")
    assert run.returncode == 0 and run.stdout == settings_table()
