from ipaddress import IPv4Address

import pytest
from conftest import WILLOW, write_repo

from scooby.load import envfile
from scooby.load import reader as load


def test_defaults_are_the_originals(repo):
    loaded = load.load(repo, environ={})
    assert loaded.diagnostics == ()
    m = loaded.cluster.master
    assert (m.hostname, str(m.external.address), str(m.gateway)) == (
        "buffy",
        "192.168.1.64/24",
        "192.168.1.1",
    )
    assert (str(m.internal.address), m.internal.domain) == ("192.168.64.1/24", "sunnydale")
    assert loaded.cluster.secrets.default_user == "spike"
    assert m.base.kind == "debian"
    (willow,) = loaded.cluster.agents
    assert (willow.name, willow.ip, willow.pxe_id) == (
        "willow",
        IPv4Address("192.168.64.65"),
        "c6811a52",
    )


# --- parsing as the original's `sh`-sourced files did ------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("LC_HOSTNAME=giles\n", "giles"),
        ('LC_HOSTNAME="giles"\n', "giles"),
        ("LC_HOSTNAME='giles'\n", "giles"),
        ("export LC_HOSTNAME=giles\n", "giles"),
        ("LC_HOSTNAME=giles # the watcher\n", "giles"),
        ("LC_HOSTNAME=giles\r\n", "giles"),
        ("# LC_HOSTNAME=xander\nLC_HOSTNAME=giles", "giles"),
        ("LC_SECONDARY_DNS=\nLC_HOSTNAME=giles\n", "giles"),
    ],
)
def test_values_parse_as_sh_would(tmp_path, text, value):
    repo = write_repo(tmp_path / "r", {"config": text})
    assert load.load(repo, environ={}).cluster.master.hostname == value


def test_every_value_keeps_its_line_also_after_blank_lines_and_crlf():
    text = "\r\n# c\r\n\r\nA=1\r\n\r\n\r\n  export B='x y'\r\nC=\r\n"
    parsed, problems = envfile.parse(text, "config")
    assert problems == []
    assert [(e.key, e.value, e.line) for e in parsed.entries] == [
        ("A", "1", 4),
        ("B", "x y", 7),
        ("C", "", 8),
    ]


def test_a_dollar_is_kept_literally():
    parsed, _ = envfile.parse("A=$HOME\n", "config")
    assert parsed.values() == {"A": "$HOME"}


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"LC_HOSTNAME=giles\nLC_HOSTNAME=xander\n", "config:2: error: LC_HOSTNAME: set twice "),
        (b"\nLC_HOSTNAME\n", "config:2: error: LC_HOSTNAME: has no '=': expected KEY=VALUE"),
        (b"\n\n'broken\n", "config:3: error: cannot parse"),
        (b"A=1\n\xff\n", "config:2: error: not valid UTF-8 text"),
        (b"A=1\n\x00\n", "config:2: error: contains a NUL byte: not a text file"),
        (b"LC_HOSTNAME=Buffy\n", "config:1: error: LC_HOSTNAME: 'Buffy' is not a lower-case"),
    ],
)
def test_broken_files_are_reported_with_their_line(tmp_path, data, expected):
    repo = write_repo(tmp_path / "r", {"agents/willow.agent": WILLOW})
    (repo / "config").write_bytes(data)
    loaded = load.load(repo, environ={})
    assert loaded.cluster is None
    assert any(str(d).startswith(expected) for d in loaded.diagnostics), loaded.diagnostics


def test_config_values_with_defaults_are_kept_for_the_rules(repo):
    (repo / "config").write_text("LC_EXTERNAL_NET=10.1.0.0/16\nLC_EXTERNAL_IP=10.1.0.5\n")
    loaded = load.load(repo, environ={})
    assert loaded.config["LC_EXTERNAL_NET"] == "10.1.0.0/16"
    assert loaded.config["LC_INTERNAL_NET"] == "192.168.64.0/24"
    assert loaded.cluster.master.source.line("LC_EXTERNAL_IP") == 2


def test_secrets_come_from_dot_env_and_the_environment_wins(repo):
    (repo / ".env").write_text("LC_DEFAULT_USER=dawn\nLC_PACKER_GITHUB_API_TOKEN=from-file\n")
    loaded = load.load(repo, environ={"LC_PACKER_GITHUB_API_TOKEN": "from-env"})
    assert loaded.cluster.secrets.default_user == "dawn"
    assert loaded.cluster.secrets.github_token == "from-env"
    assert "from-env" not in repr(loaded.cluster.secrets)


def test_a_bad_agent_is_left_out_and_the_rest_load(repo):
    (repo / "agents/xander.agent").write_text(WILLOW.replace("192.168.64.65", "192.168.64.300"))
    loaded = load.load(repo, environ={})
    assert [a.name for a in loaded.cluster.agents] == ["willow"]
    assert [str(d) for d in loaded.diagnostics] == [
        "agents/xander.agent:2: error: AGENT_IP: '192.168.64.300' is not an IPv4 address"
    ]


def test_load_or_raise_raises_with_every_problem(repo):
    (repo / "config").write_text("LC_HOSTNAME=Buffy\nLC_FOO=1\n")
    with pytest.raises(load.ScoobyError) as err:
        load.load_or_raise(repo, environ={})
    assert [d.line for d in err.value.diagnostics] == [1, 2]
