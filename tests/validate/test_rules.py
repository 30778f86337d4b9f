"""Cross-file rules: each with a bad input (exact file, line and key) and a good one."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WILLOW, write_repo

from scooby.validate.validator import validate

XANDER = """\
AGENT_ETHERNET=b8:27:eb:00:00:02
AGENT_IP=192.168.64.66
AGENT_RANCHER_PART_UUID=0c1d2e3f-02
AGENT_PXE_ID=00000002
"""


def problems(root: Path, files: dict[str, str]) -> list[str]:
    repo = write_repo(root / "repo", {"config": "", **files})
    _, diagnostics = validate(repo, environ={})
    return [str(d) for d in diagnostics]


def agent(**changes: str) -> str:
    """willow.agent with some keys replaced (same line numbers)."""
    lines = []
    for line in WILLOW.splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={changes.pop(key)}" if key in changes else line)
    return "\n".join(lines + [f"{k}={v}" for k, v in changes.items()]) + "\n"


def test_a_good_repository_has_no_problems(tmp_path):
    assert problems(tmp_path, {"agents/willow.agent": WILLOW, "agents/xander.agent": XANDER}) == []


BAD = {
    "master address outside its net": (
        {"config": "LC_EXTERNAL_IP=192.168.2.64\n"},
        "config:1: error: LC_EXTERNAL_IP: the master's address 192.168.2.64 is not inside "
        "LC_EXTERNAL_NET=192.168.1.0/24 (config (default))",
    ),
    "net changed, address defaulted": (
        {"config": "#\nLC_INTERNAL_NET=10.0.0.0/24\n"},
        "config:2: error: LC_INTERNAL_NET: the master's address 192.168.64.1 is not inside "
        "LC_INTERNAL_NET=10.0.0.0/24 (config:2)",
    ),
    "network address": (
        {"config": "LC_INTERNAL_IP=192.168.64.0\n"},
        "config:1: error: LC_INTERNAL_IP: the master's address 192.168.64.0 is the network "
        "address of 192.168.64.0/24",
    ),
    "broadcast address": (
        {"config": "LC_EXTERNAL_IP=192.168.1.255\n"},
        "config:1: error: LC_EXTERNAL_IP: the master's address 192.168.1.255 is the broadcast "
        "address of 192.168.1.0/24",
    ),
    "gateway outside the external net": (
        {"config": "\n\nLC_EXTERNAL_GW=10.1.1.1\n"},
        "config:3: error: LC_EXTERNAL_GW: the gateway 10.1.1.1 is not inside "
        "LC_EXTERNAL_NET=192.168.1.0/24 (config (default))",
    ),
    "gateway is the master": (
        {"config": "LC_EXTERNAL_GW=192.168.1.64\n"},
        "config:1: error: LC_EXTERNAL_GW: the gateway cannot be the master's own external address",
    ),
    "overlapping nets": (
        {"config": "LC_INTERNAL_NET=192.168.0.0/16\nLC_INTERNAL_IP=192.168.64.1\n"},
        "config:1: error: LC_INTERNAL_NET: 192.168.0.0/16 overlaps "
        "LC_EXTERNAL_NET=192.168.1.0/24 (config (default)): the internal and external "
        "networks must be disjoint",
    ),
    "one device for both nets": (
        {"config": "LC_INTERNAL_DEVICE=eth0\n"},
        "config:1: error: LC_INTERNAL_DEVICE: eth0 is also LC_EXTERNAL_DEVICE (config (default)):"
        " the master needs two different network devices",
    ),
    "agent ip outside the internal net": (
        {"agents/willow.agent": agent(AGENT_IP="192.168.1.65")},
        "agents/willow.agent:2: error: AGENT_IP: 192.168.1.65 is not inside the internal network "
        "LC_INTERNAL_NET=192.168.64.0/24 (config (default))",
    ),
    "agent ip is the broadcast address": (
        {"agents/willow.agent": agent(AGENT_IP="192.168.64.255")},
        "agents/willow.agent:2: error: AGENT_IP: 192.168.64.255 is the broadcast address of "
        "192.168.64.0/24",
    ),
    "agent ip is the master's": (
        {"config": "\nLC_INTERNAL_IP=192.168.64.65\n", "agents/willow.agent": WILLOW},
        "agents/willow.agent:2: error: AGENT_IP: 192.168.64.65 is the master's LC_INTERNAL_IP "
        "(config:2)",
    ),
    "duplicate agent ip": (
        {"agents/willow.agent": WILLOW, "agents/xander.agent": agent(AGENT_IP="192.168.64.65")},
        "agents/xander.agent:2: error: AGENT_IP: 192.168.64.65 is already used by "
        "agents/willow.agent:2",
    ),
    "duplicate MAC, other case": (
        {
            "agents/willow.agent": WILLOW,
            "agents/xander.agent": XANDER.replace("b8:27:eb:00:00:02", "B8:27:EB:81:1A:52"),
        },
        "agents/xander.agent:1: error: AGENT_ETHERNET: b8:27:eb:81:1a:52 is already used by "
        "agents/willow.agent:1",
    ),
    "multicast MAC": (
        {"agents/willow.agent": agent(AGENT_ETHERNET="01:00:5e:00:00:01")},
        "agents/willow.agent:1: error: AGENT_ETHERNET: 01:00:5e:00:00:01 is a multicast address;"
        " a network card's MAC is unicast (the first byte is even)",
    ),
    "duplicate PXE id": (
        {"agents/willow.agent": WILLOW, "agents/xander.agent": agent(AGENT_IP="192.168.64.70")},
        "agents/xander.agent:4: error: AGENT_PXE_ID: c6811a52 is already used by "
        "agents/willow.agent:4",
    ),
    "PXE id as the full 16-digit serial": (
        {"agents/willow.agent": agent(AGENT_PXE_ID="10000000c6811a52")},
        "agents/willow.agent:4: error: AGENT_PXE_ID: '10000000c6811a52' is not 8 lower-case hex "
        "digits: that is the full serial number; use its last 8 digits, 'c6811a52'",
    ),
    "PXE id in upper case": (
        {"agents/willow.agent": agent(AGENT_PXE_ID="C6811A52")},
        "agents/willow.agent:4: error: AGENT_PXE_ID: 'C6811A52' is not 8 lower-case hex digits: "
        "use lower case, 'c6811a52'",
    ),
    "agent named like the master": (
        {"agents/buffy.agent": WILLOW},
        "agents/buffy.agent: error: agent name 'buffy' is the master's LC_HOSTNAME "
        "(config (default)): rename the file",
    ),
    "agent file name not a hostname": (
        {"agents/Willow_1.agent": WILLOW},
        "agents/Willow_1.agent: error: file name 'Willow_1' is not a valid agent hostname: use a "
        "lower-case RFC 1123 hostname (a-z, 0-9, '-', at most 63)",
    ),
    "agent file without .agent": (
        {"agents/ted": "# ted\n" + WILLOW},
        "agents/ted:2: error: AGENT_ETHERNET: this file holds agent settings but is not read: "
        "only *.agent files are; rename it to agents/ted.agent",
    ),
    "swap and rancher on one partition": (
        {
            "agents/willow.agent": WILLOW
            + "AGENT_SWAP_PART_UUID=D5F9E6C2-493C-48DA-BAF2-0C63DD7A36B1\n"
        },
        "agents/willow.agent:6: error: AGENT_SWAP_PART_UUID: same partition as "
        "AGENT_RANCHER_PART_UUID (agents/willow.agent:3): swap and /var/lib/rancher need two "
        "partitions",
    ),
    "k3s args do not parse": (
        {"agents/willow.agent": agent(AGENT_K3S_ARGS='"--node-label \'a=b"')},
        "agents/willow.agent:5: error: AGENT_K3S_ARGS: does not parse as shell words: "
        "No closing quotation",
    ),
    "k3s args set --server": (
        {"agents/willow.agent": agent(AGENT_K3S_ARGS='"--server=https://10.0.0.1:6443"')},
        "agents/willow.agent:5: error: AGENT_K3S_ARGS: sets --server, which Scooby manages: "
        "Scooby points every agent at the master",
    ),
    "k3s args set --node-ip": (
        {"agents/willow.agent": agent(AGENT_K3S_ARGS='"--node-label x=y --node-ip 1.2.3.4"')},
        "agents/willow.agent:5: error: AGENT_K3S_ARGS: sets --node-ip, which Scooby manages: "
        "set AGENT_IP instead",
    ),
    "k3s args set the token": (
        {"agents/willow.agent": agent(AGENT_K3S_ARGS="'-t abc'")},
        "agents/willow.agent:5: error: AGENT_K3S_ARGS: sets -t, which Scooby manages: "
        "Scooby hands each agent the cluster token",
    ),
    "secret key in config": (
        {"config": "\nLC_PACKER_GITHUB_API_TOKEN=x\n"},
        "config:2: error: LC_PACKER_GITHUB_API_TOKEN: is a secret: put it in .env (never "
        "committed) or a CI repository secret, not in config",
    ),
    "agent key in config": (
        {"config": "AGENT_IP=192.168.64.2\n"},
        "config:1: error: AGENT_IP: belongs in agents/NAME.agent, not here",
    ),
}

SECRET = (
    "secrets never go in committed files; put them in .env (git-ignored) or a CI repository secret"
)
SECRETS = {
    "private key in server/": (
        "server/root/.ssh/id_ed25519",
        "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n",
        "server/root/.ssh/id_ed25519:2: error: looks like a private key: ",
    ),
    "RSA key in agents/": (
        "agents/notes.txt",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "agents/notes.txt:1: error: looks like a private key: ",
    ),
    "k3s token in config": (
        "config",
        "# join with\n#K3S_TOKEN=K10" + "ab" * 32 + "::server:0123456789abcdef\n",
        "config:2: error: looks like a K3S join token: ",
    ),
    "k3s token in a manifest": (
        "server/var/lib/rancher/k3s/server/token",
        "K10" + "0f" * 32 + "::server:abcdef0123456789\n",
        "server/var/lib/rancher/k3s/server/token:1: error: looks like a K3S join token: ",
    ),
    "AWS key id": (
        "server/etc/aws.env",
        "\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n",
        "server/etc/aws.env:2: error: AWS_ACCESS_KEY_ID: looks like an AWS access key id: ",
    ),
    "AWS secret": (
        "server/etc/boto.cfg",
        "[default]\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "server/etc/boto.cfg:2: error: aws_secret_access_key: looks like an AWS secret access "
        "key: ",
    ),
    "GitHub classic token": (
        "server/etc/gh",
        "TOKEN=ghp_" + "a1B2" * 9 + "\n",
        "server/etc/gh:1: error: TOKEN: looks like a GitHub token: ",
    ),
    "GitHub fine-grained token": (
        "agents/willow.agent",
        WILLOW.replace("AGENT_K3S_ARGS=", "#github_pat_11ABCDEFG0123456789_abcdefghijklmnop\n"),
        "agents/willow.agent:5: error: looks like a GitHub token: ",
    ),
    "sha512-crypt password hash": (
        "server/etc/cloud/cloud.cfg.d/99-user.cfg",
        "users:\n  - name: spike\n    passwd: $6$rounds=4096$saltsalt$" + "x" * 86 + "\n",
        "server/etc/cloud/cloud.cfg.d/99-user.cfg:3: error: passwd: looks like a password hash: ",
    ),
    "yescrypt password hash": (
        "server/etc/shadow",
        "spike:$y$j9T$abcdefghijklmnop$" + "A" * 43 + ":19000:0:99999:7:::\n",
        "server/etc/shadow:1: error: looks like a password hash: ",
    ),
}


@pytest.mark.parametrize("files, expected", BAD.values(), ids=BAD.keys())
def test_bad_input_is_reported_at_its_file_line_and_key(tmp_path, files, expected):
    files = {"agents/willow.agent": WILLOW, **files}
    assert expected in problems(tmp_path, files)


@pytest.mark.parametrize("rel, text, expected", SECRETS.values(), ids=SECRETS.keys())
def test_secrets_in_committed_files_are_rejected(tmp_path, rel, text, expected):
    found = problems(tmp_path, {"agents/willow.agent": WILLOW, rel: text})
    assert expected + SECRET in found


@pytest.mark.parametrize(
    "text",
    [
        'echo "$1$HOME_DIRECTORY_IS_HERE_AND_LONG"\n',  # shell, not a crypt hash
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@host\n",  # a public key is fine
        "-----BEGIN CERTIFICATE-----\n",
        "token: ${K3S_TOKEN}\n",
        "ghp_short\n",
    ],
)
def test_things_that_are_not_secrets_pass(tmp_path, text):
    assert problems(tmp_path, {"agents/willow.agent": WILLOW, "server/etc/x.conf": text}) == []


@pytest.mark.parametrize(
    "args",
    [
        "\"--node-label 'smarter-device-manager=enabled'\"",
        '"--node-taint key=value:NoSchedule --kubelet-arg=max-pods=50"',
        "",
    ],
)
def test_k3s_args_scooby_does_not_manage_pass(tmp_path, args):
    assert problems(tmp_path, {"agents/willow.agent": agent(AGENT_K3S_ARGS=args)}) == []


def test_cloned_usb_keys_only_warn(tmp_path):
    xander = XANDER.replace("0c1d2e3f-02", "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1")
    found = problems(tmp_path, {"agents/willow.agent": WILLOW, "agents/xander.agent": xander})
    assert found == [
        "agents/xander.agent:3: warning: AGENT_RANCHER_PART_UUID: "
        "d5f9e6c2-493c-48da-baf2-0c63dd7a36b1 is already used by agents/willow.agent:3"
    ]


def test_documentation_in_agents_is_not_a_stray_agent(tmp_path):
    readme = "# Agents\n\nAGENT_IP=192.168.64.65 is an example.\n"
    assert problems(tmp_path, {"agents/willow.agent": WILLOW, "agents/README.md": readme}) == []


def test_every_problem_is_reported_in_one_run(tmp_path):
    found = problems(
        tmp_path,
        {
            "config": "LC_INTERNAL_DEVICE=eth0\n",
            "agents/willow.agent": agent(AGENT_IP="10.0.0.1"),
            "agents/ted": WILLOW,
        },
    )
    assert [f.split(": ")[0] for f in found] == [
        "agents/ted:1",
        "agents/willow.agent:2",
        "config:1",
    ]


def test_a_broken_dot_env_does_not_hide_the_other_problems(tmp_path):
    found = problems(
        tmp_path,
        {
            ".env": "LC_DEFAULT_USER=Spike\n",
            "agents/willow.agent": WILLOW,
            "agents/xander.agent": agent(AGENT_IP="192.168.64.70"),
        },
    )
    assert [f.split(": ")[0] for f in found] == [
        ".env:1",  # LC_DEFAULT_USER is not a lower-case user name
        "agents/xander.agent:1",  # the same MAC as willow
        "agents/xander.agent:3",  # the same PARTUUID (a warning)
        "agents/xander.agent:4",  # the same PXE id
    ]
