"""Shared fixtures: temporary Scooby repositories built from small, readable parts."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

# A shell runs a background job with SIGINT ignored when job control is off (POSIX), and
# an ignored signal stays ignored across exec: every Scooby the tests start would then
# shrug off the Ctrl-C that the interrupt tests send. With a handler here, the children
# start with the default again (exec resets handled signals, not ignored ones).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
EXAMPLE = TESTS / "data" / "example-repo"  # the example the golden render tree comes from
GOLDEN = TESTS / "golden" / "example"

WILLOW = """\
AGENT_ETHERNET=b8:27:eb:81:1a:52
AGENT_IP=192.168.64.65
AGENT_RANCHER_PART_UUID=d5f9e6c2-493c-48da-baf2-0c63dd7a36b1
AGENT_PXE_ID=c6811a52
AGENT_K3S_ARGS=
"""


def write_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A minimal valid repository: default config, one agent."""
    return write_repo(tmp_path / "repo", {"config": "", "agents/willow.agent": WILLOW})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current templates instead of comparing with it",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def big_repo(root: Path, n: int) -> Path:
    """The example's config and .env with n agents: Pi 3s and Pi 4s, some with swap."""
    root.mkdir(parents=True)
    for name in ("config", ".env"):
        shutil.copyfile(EXAMPLE / name, root / name)
    rng = random.Random(n)
    (root / "agents").mkdir()
    for i in range(n):
        oui = ("b8:27:eb", "dc:a6:32", "e4:5f:01")[i % 3]
        tail = rng.getrandbits(24).to_bytes(3, "big")
        swap = f"AGENT_SWAP_PART_UUID={rng.getrandbits(32):08x}-02\n" if i % 4 == 0 else ""
        (root / f"agents/node{i:03d}.agent").write_text(
            f"AGENT_ETHERNET={oui}:{tail.hex(':')}\n"
            f"AGENT_IP=192.168.64.{i + 2}\n"
            f"AGENT_RANCHER_PART_UUID={rng.getrandbits(32):08x}-01\n"
            f"{swap}"
            f"AGENT_PXE_ID={rng.getrandbits(32):08x}\n"
            f"AGENT_K3S_ARGS=\"--node-label 'rack={i // 40}'\"\n"
        )
    return root
