"""Talking to a running master over SSH (OpenSSH's client, with the user's own keys).

Two connections per deploy: one reads the master's record of deployed files, one streams a
tar into `sudo scooby-apply` on the master. ssh's own configuration, agent and known_hosts
apply; nothing is copied to a temporary file on the master.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from scooby.core import layout
from scooby.core.errors import ScoobyError, error

APPLY = "/usr/local/sbin/scooby-apply"


@dataclass(frozen=True)
class Target:
    host: str  # [user@]host, as ssh takes it
    port: int | None = None
    identity: Path | None = None
    options: tuple[str, ...] = ()  # extra `-o` options (tests: a throwaway known_hosts)

    def ssh(self, command: str) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes"]
        for opt in self.options:
            argv += ["-o", opt]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return argv + [self.host, command]


def _fail(target: Target, what: str, done: subprocess.CompletedProcess) -> ScoobyError:
    detail = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return ScoobyError(
        error(
            target.host,
            None,
            f"{what} (ssh exit {done.returncode}): {detail[-1] if detail else 'no message'}",
        )
    )


def read_record(target: Target, path: str = layout.DEPLOY_RECORD, timeout: float = 120) -> dict:
    """A deploy record on the master: the current one (layout.DEPLOY_RECORD), or the one
    before the last deploy (under layout.DEPLOY_PREVIOUS)."""
    done = subprocess.run(target.ssh(f"sudo cat {path}"), capture_output=True, timeout=timeout)
    if done.returncode != 0:
        why = (
            " (an image built before `scooby deploy` existed has none: flash once more)"
            if path == layout.DEPLOY_RECORD
            else " (no deploy has been made to this master yet: nothing to roll back to)"
        )
        raise _fail(target, f"cannot read {path} on the master{why}", done)
    try:
        record = json.loads(done.stdout)
        assert record["format"] == 1 and {"files", "agents", "release"} <= set(record)
    except (ValueError, KeyError, AssertionError, TypeError) as e:
        raise ScoobyError(
            error(target.host, None, f"{path}: not a deploy record this scooby reads ({e})")
        ) from None
    return record


def stream(plan_json: dict, files: dict[str, Path]) -> bytes:
    """The tar scooby-apply reads: plan.json, then files/<path> for each file to write;
    gzip'd, since plan.json holds the whole new record (every file's sha256)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(plan_json, sort_keys=True).encode()
        info = tarfile.TarInfo("plan.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for path in [] if plan_json.get("rollback") else plan_json["write"]:
            src = files[path]  # a rollback's files are on the master already
            info = tarfile.TarInfo("files" + path)
            info.size = src.stat().st_size
            info.mode = src.stat().st_mode & 0o7777
            with open(src, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def apply(target: Target, payload: bytes, timeout: float = 900) -> str:
    """Run scooby-apply on the master with `payload` on its stdin; its output."""
    done = subprocess.run(
        target.ssh(f"sudo {APPLY}"), input=payload, capture_output=True, timeout=timeout
    )
    out = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise _fail(target, "scooby-apply failed on the master", done)
    return out
