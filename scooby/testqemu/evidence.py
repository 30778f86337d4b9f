"""What a run leaves under --out: the journals, the phase table (text and JSON)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from scooby.testqemu.phases import PASSED, one_line, table


def save(s) -> None:
    """The master's (and agent's) journal while they still run; consoles are already
    files under `out`."""
    jobs = []
    if s.phases.status("master-ssh") == PASSED and s.master and s.master.running():
        jobs.append(("master-journal.txt", s.master_cmd))
    if agent_answers(s) and not (s.out / AGENT_JOURNAL).exists():
        jobs.append((AGENT_JOURNAL, s.agent_cmd))
    with ThreadPoolExecutor(max(len(jobs), 1)) as pool:  # both at once
        list(pool.map(lambda job: save_journal(s, *job), jobs))


AGENT_JOURNAL = "agent-journal.txt"


def agent_answers(s) -> bool:
    agent_up = s.agent_vm is not None and s.agent_vm.running()
    return agent_up and s.phases.status("agent-banner") == PASSED


def save_agent_journal(s) -> None:
    """The agent's journal before the master reboots: its root is on the master's NFS, so
    while the master is away and its NFS client recovers after (about 10 s under QEMU),
    reading it waits. Nothing on the agent is checked after this."""
    if agent_answers(s):
        save_journal(s, AGENT_JOURNAL, s.agent_cmd)


def save_journal(s, name: str, command) -> None:
    try:
        timeout = 30 if s.interrupted else 180
        done = command("sudo journalctl -b --no-pager -o short-monotonic", timeout=timeout)
        (s.out / name).write_text(done.stdout + done.stderr)
    except Exception as exc:  # noqa: BLE001 - evidence is best effort; the phases say why
        (s.out / name).write_text(f"could not read the journal: {one_line(exc)}\n")


def write_table(console, out, phases, fields: dict, title: str = "scooby test-qemu") -> None:
    """The phase table on the console, and as phases.txt and phases.json in `out` (with
    `fields`, what the run was: image, agent or board, ...). Both test-qemu sessions use it."""
    from rich.console import Console

    t = table(phases, title)
    console.print(t)
    with (out / "phases.txt").open("w") as f:
        Console(file=f, width=160, no_color=True).print(t)
    data = {**fields, "phases": [asdict(p) for p in phases]}
    (out / "phases.json").write_text(json.dumps(data, indent=2) + "\n")


def report(s) -> None:
    fields = {"image": str(s.image), "agent": s.agent.name, "k3s_mode": s.k3s_mode}
    write_table(s.console, s.out, s.phases.phases, {**fields, "timings": s.timings})
    if not s.phases.ok:
        s.console.print(f"evidence: {s.out}/ (consoles, journal, phase table)", soft_wrap=True)
