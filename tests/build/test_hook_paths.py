"""Every mmdebstrap hook the base stages name by path is a file: mmdebstrap runs an argument
that is no file as a shell command, so a renamed hook fails only in a cold build, minutes in."""

from __future__ import annotations

from pathlib import Path

from scooby.build import rootfs


def test_every_hook_the_base_stages_name_exists(monkeypatch, tmp_path: Path):
    commands = []
    monkeypatch.setattr(rootfs, "_run", lambda cmd, *args, **kwargs: commands.append(cmd))
    lines = ["deb http://deb.example/debian trixie main"]
    rootfs.agent_base(tmp_path / "agent.tar", "trixie", lines, tmp_path / "debs", None)
    rootfs.master_base(
        tmp_path / "master.tar", tmp_path / "agent.tar", "trixie", lines, tmp_path / "debs", None
    )
    hooks = [
        arg.split("=", 1)[1]
        for cmd in commands
        for arg in cmd
        if arg.startswith("--") and arg.split("=", 1)[0].endswith("-hook")
    ]
    named = [hook for hook in hooks if hook.startswith("/")]  # the rest are shell commands
    assert len(named) >= 10, hooks
    assert [hook for hook in named if not Path(hook).is_file()] == []
