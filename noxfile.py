"""Every task, locally and in CI: `nox -s lint tests`, `nox -s validate render build ...`.

The sessions are thin: each installs Scooby and calls the same `scooby` command or test
suite a developer would. Nothing here downloads a Python interpreter (offline machines).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True

# The interpreter nox runs on: the project's .venv/ (scripts/setup.sh), whatever Python 3.11+
# the machine has (3.11 on Debian 12, 3.12 on Ubuntu 24.04, 3.13 on Debian 13).
PYTHON = None


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, the stages' import rule (import-linter), the schemas against their metaschema,
    and every pre-commit hook on all files."""
    _install(session, "lint", "test")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", ".")
    session.run("lint-imports")  # pyproject.toml's [tool.importlinter] contracts
    session.run("check-jsonschema", "--check-metaschema", *sorted(map(str, _schemas())))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *_workflows())
    session.run("zizmor", "--offline", *_workflows())
    session.run(
        "pre-commit",
        "run",
        "--all-files",
        "--show-diff-on-failure",
        env={"PRE_COMMIT_HOME": str(_cache(session) / "pre-commit")},
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (pass pytest arguments after `--`)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def validate(session: nox.Session) -> None:
    """Check the repository: `scooby validate`."""
    _install(session)
    session.run("scooby", "validate", *session.posargs)


@nox.session(python=PYTHON)
def render(session: nox.Session) -> None:
    """Render the master's and agents' files into build/render, checked by the daemons'
    own checkers (dnsmasq, lighttpd, iptables, cloud-init, systemd, sshd): `scooby render`."""
    _install(session)
    session.run("scooby", "render", *session.posargs)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build images/scooby.img: `scooby build` (as root; options after `--`, e.g. `--k3s=none`)."""
    _install(session)
    session.run("scooby", "build", *session.posargs)


@nox.session(python=PYTHON)
def test_qemu(session: nox.Session) -> None:
    """Boot the default image in QEMU and network-boot an agent from it (as root; builds the
    image first, `--k3s=none`): `pytest -m qemu tests/testqemu/test_qemu.py` (pytest arguments after
    `--`). For your own image: `scooby test-qemu`."""
    _install(session, "test")
    session.run("pytest", "-m", "qemu", "tests/testqemu/test_qemu.py", *session.posargs)


@nox.session(python=PYTHON)
def test_day2(session: nox.Session) -> None:
    """Day two in QEMU (as root; builds the image first, `--k3s=none`): boot a master with
    agent A, `scooby deploy` v2 live adding agent B (which network-boots), then v3 removing A,
    then the master pulls a release over HTTPS with `scooby-update`, then A/B: v4 (one more
    master package) committed after a trial boot, v5 (dnsmasq cannot start) back on v4 by
    itself, and QEMU killed during a slot write boots v4 (docs/day2.md):
    `pytest -m qemu tests/deploy/test_day2.py`."""
    _install(session, "test")
    session.run(
        "pytest", "-m", "qemu", "tests/deploy/test_day2.py", *session.posargs,
        env={"SCOOBY_TEST_DAY2": "1"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def test_slots(session: nox.Session) -> None:
    """The master's root slots in QEMU (as root; builds the image first, `--k3s=none`): write
    slot B over SSH and commit its trial, a trial that fails its health check and returns by
    itself, QEMU killed mid-write (docs/day2.md, 4.3): `pytest -m qemu
    tests/testqemu/test_slots.py`."""
    _install(session, "test")
    session.run(
        "pytest", "-m", "qemu", "tests/testqemu/test_slots.py", "-s", *session.posargs,
        env={"SCOOBY_TEST_SLOTS": "1"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def test_qemu_pi(session: nox.Session) -> None:
    """Boot the default image's master on QEMU's Raspberry Pi boards with the files the Pi
    firmware would load (as root; builds the image first): raspi3b from SD and from USB,
    raspi4b from SD (QEMU >= 9). `pytest -m pi tests/testqemu/test_qemu_pi.py`. For your own
    image: `scooby test-qemu --board raspi3b|raspi4b`."""
    _install(session, "test")
    session.run("pytest", "-m", "pi", "tests/testqemu/test_qemu_pi.py", *session.posargs)


@nox.session(python=PYTHON)
def release(session: nox.Session) -> None:
    """Compress, checksum and publish images/scooby.img: `scooby release` (options after `--`)."""
    _install(session)
    session.run("scooby", "release", *session.posargs)


def _workflows() -> list[str]:
    from pathlib import Path

    return sorted(str(p) for p in Path(".github/workflows").glob("*.y*ml"))


def _schemas():
    from pathlib import Path

    return Path("schemas").rglob("*.json")  # ours and the vendored CRD schemas


def _cache(session: nox.Session):
    from pathlib import Path

    path = Path(".cache")
    path.mkdir(exist_ok=True)
    return path.resolve()
