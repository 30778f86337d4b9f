"""Stage cache keys and the cache's commit/discard rules (no build needed)."""

from __future__ import annotations

import os
from pathlib import Path

from scooby.build import archive, cache, rootfs

SECURITY = "http://deb.debian.org/debian-security"


def test_key_is_stable_and_input_sensitive():
    a = cache.key("agent-base", {"suite": "bookworm", "packages": ["a", "b"]})
    assert a == cache.key("agent-base", {"packages": ["a", "b"], "suite": "bookworm"})
    assert a != cache.key("agent-base", {"suite": "trixie", "packages": ["a", "b"]})
    assert a != cache.key("master-base", {"suite": "bookworm", "packages": ["a", "b"]})
    assert len(a) == 16


def test_digest_files_sees_contents_and_exec_bit(tmp_path: Path):
    (tmp_path / "d").mkdir()
    hook = tmp_path / "d" / "hook.sh"
    hook.write_text("echo\n")
    before = cache.digest_files([tmp_path / "d"], tmp_path)
    hook.chmod(0o755)
    after_chmod = cache.digest_files([tmp_path / "d"], tmp_path)
    hook.write_text("echo 2\n")
    assert (
        len({str(before), str(after_chmod), str(cache.digest_files([tmp_path / "d"], tmp_path))})
        == 3
    )


def test_base_inputs_cover_what_changes_the_root():
    lines = archive.sources("trixie", "http://deb.debian.org/debian", "", SECURITY)
    inputs = rootfs.agent_inputs("trixie", lines)
    assert "linux-image-arm64" in inputs["packages"]
    assert "raspi-firmware" in inputs["packages"] and "firmware-brcm80211" in inputs["packages"]
    assert any(k.startswith("hooks/") for k in inputs["templates"])
    assert "initramfs-tools/modules" in inputs["templates"]
    assert inputs["mirrors"][2] == f"deb {SECURITY} trixie-security main non-free-firmware"
    snapshot = "http://snapshot.debian.org/archive/debian/20250101T000000Z"
    other = rootfs.agent_inputs("trixie", archive.sources("trixie", snapshot, "", SECURITY))
    assert cache.key("agent-base", inputs) != cache.key("agent-base", other)
    state = {"http://x/dists/trixie-security/InRelease": {"main/binary-arm64/Packages.xz": "a"}}
    master = rootfs.master_inputs(cache.key("agent-base", inputs), state)
    assert "dnsmasq" in master["packages"] and "nfs-kernel-server" in master["packages"]
    # A newer archive state under the same agent-base key: the master's packages follow.
    newer = {"http://x/dists/trixie-security/InRelease": {"main/binary-arm64/Packages.xz": "b"}}
    assert cache.key("master-base", master) != cache.key(
        "master-base", rootfs.master_inputs(cache.key("agent-base", inputs), newer)
    )


def test_a_stage_built_again_under_the_same_key_replaces_it(tmp_path: Path):
    c = cache.Cache(tmp_path / ".cache")
    first = c.staging("agent-base", "k")
    (first / "archive.json").write_text("old")
    c.commit("agent-base", "k", first)
    again = c.staging("agent-base", "k")
    (again / "archive.json").write_text("new")
    final = c.commit("agent-base", "k", again)
    assert (final / "archive.json").read_text() == "new"


def _built(c: cache.Cache, stage: str, stage_key: str, when: int) -> Path:
    tmp = c.staging(stage, stage_key)
    (tmp / "rootfs.tar").write_text(stage_key)
    final = c.commit(stage, stage_key, tmp)
    os.utime(final, (when, when))
    return final


def test_commit_keeps_the_two_most_recently_used_outputs_and_discard_cleans(tmp_path: Path):
    c = cache.Cache(tmp_path / ".cache")
    _built(c, "agent-base", "a", 1000)
    _built(c, "agent-base", "b", 2000)
    _built(c, "master-base", "m", 500)
    assert c.lookup("agent-base", "a") is not None  # used now: the most recent other one
    new = c.staging("agent-base", "c")
    assert c.lookup("agent-base", "c") is None  # a staging dir is not a cache hit
    (new / "rootfs.tar").write_text("c")
    final = c.commit("agent-base", "c", new)
    assert c.lookup("agent-base", "c") == final
    assert c.lookup("agent-base", "a") is not None
    assert c.lookup("agent-base", "b") is None  # the least recently used one went
    assert c.lookup("master-base", "m") is not None  # other stages are not touched
    c.staging("master-base", "x")
    c.discard_staging()
    assert not list((tmp_path / ".cache" / "stages").glob(".*"))
    (tmp_path / ".cache" / "pre-commit").mkdir()
    (c.debs).mkdir()
    c.clean()
    assert sorted(p.name for p in (tmp_path / ".cache").iterdir()) == ["pre-commit"]


def test_builds_sharing_a_cache_take_turns(tmp_path: Path):
    import threading

    c = cache.Cache(tmp_path / ".cache")
    events: list[str] = []

    def other_build():
        with c.locked(lambda: events.append("waited")):
            events.append("got it")

    with c.locked():
        other = threading.Thread(target=other_build)
        other.start()
        other.join(timeout=0.5)
        assert events == ["waited"] and other.is_alive()
    other.join(timeout=5)
    assert events == ["waited", "got it"]
