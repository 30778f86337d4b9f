"""The build log's per-step profile of mmdebstrap (scooby.build.profile), without a build."""

from __future__ import annotations

import io
import subprocess

from scooby.build import profile

# mmdebstrap --verbose output as a cold agent-base prints it (shortened), with the second at
# which each line arrives.
LINES = [
    (0.0, "I: running --setup-hook directly: /x/setup10-debs.sh /tmp/m"),
    (0.5, "I: running apt-get update..."),
    (2.5, "I: downloading packages with apt..."),
    (12.5, "I: extracting archives..."),
    (20.5, "I: installing essential packages..."),
    (21.0, "Setting up base-files (13.8) ..."),
    (24.0, "I: running --essential-hook directly: /x/essential10-defer-initramfs.sh /tmp/m"),
    (25.0, "I: installing remaining packages inside the chroot..."),
    (26.0, "Selecting previously unselected package python3.13."),
    (27.0, "Unpacking python3.13 (3.13.5-2) ..."),
    (30.0, "Setting up python3.13 (3.13.5-2) ..."),
    (31.0, "Created symlink '/etc/x' -> '/usr/lib/y'."),  # still python3.13's step
    (70.0, "Processing triggers for man-db (2.13.1-1) ..."),
    (75.0, "Setting up cloud-init (25.1.4-1) ..."),
    (100.0, "I: running --customize-hook directly: /x/hooks/customize90-initramfs.sh /tmp/mm.1"),
    (101.0, "update-initramfs: Generating /boot/initrd.img-6.12.57+deb13-arm64"),
    (160.0, "I: running special hook: tar-in /a/rootfs.tar /"),
    (161.0, "I: creating tarball..."),
]
END = 170.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def profiled() -> tuple[profile.Profile, list[str]]:
    clock = Clock()
    timing = profile.Profile(clock)
    out = []
    for when, text in LINES:
        clock.now = when
        out.append(timing.line(text + "\n"))
    clock.now = END
    timing.finish(0.0)  # no process here: no CPU time
    return timing, out


def test_each_line_gets_its_elapsed_time():
    _, out = profiled()
    assert out[0] == "[   0.0] I: running --setup-hook directly: /x/setup10-debs.sh /tmp/m\n"
    assert out[10] == "[  30.0] Setting up python3.13 (3.13.5-2) ...\n"
    assert out[-1] == "[ 161.0] I: creating tarball...\n"


def test_time_goes_to_the_phase_each_i_line_starts():
    timing, _ = profiled()
    assert timing.phases == {
        "start": 0.0,
        "setup-hook setup10-debs.sh": 0.5,
        "apt update": 2.0,
        "download": 10.0,
        "extract": 8.0,
        "essential install": 3.5,
        "essential-hook essential10-defer-initramfs.sh": 1.0,
        "install remaining": 75.0,
        "customize-hook customize90-initramfs.sh": 60.0,
        "special hook tar-in": 1.0,
        "tarball": 9.0,
    }


def test_dpkg_steps_last_until_the_next_step_or_phase():
    timing, _ = profiled()
    assert timing.steps == {
        "setup base-files": 3.0,
        "setup python3.13": 40.0,  # its Created symlink line is part of it
        "trigger man-db": 5.0,
        "setup cloud-init": 25.0,
        "initramfs": 59.0,
    }  # unpacking is not a step: python3.13's unpack (4 s) is the phase's own


def test_table_lists_phases_in_order_then_the_slowest_steps():
    timing, _ = profiled()
    table = timing.table("agent-base", top=2).splitlines()
    assert table[0] == "--- profile: agent-base: wall 170.0 s, CPU (user+sys) 0.0 s"
    assert table[1:4] == ["      0.0 s  start", "      0.5 s  setup-hook setup10-debs.sh",
                          "      2.0 s  apt update"]  # fmt: skip
    assert table[-3:] == [
        "  slowest dpkg steps (5 in all):",
        "     59.0 s  initramfs",
        "     40.0 s  setup python3.13",
    ]


def test_stamp_copies_a_real_process_output_and_counts_its_cpu_time():
    log = io.StringIO()
    timing = profile.Profile()
    script = "print('I: running apt-get update...')\nsum(range(9**7))\nprint('Setting up a (1)')"
    proc = subprocess.Popen(["python3", "-c", script], stdout=subprocess.PIPE)
    profile.stamp(proc.stdout, log, timing)
    timing.finish(profile.reap(proc))
    assert proc.returncode == 0
    lines = log.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "I: running apt-get update...",
        "Setting up a (1)",
    ]
    assert all(line.startswith("[") for line in lines)
    assert set(timing.phases) == {"start", "apt update"} and set(timing.steps) == {"setup a"}
    assert timing.cpu > 0


def test_lines_that_start_nothing_keep_the_phase():
    assert profile.phase_of("using /tmp/mm.1 as tempdir") is None
    assert profile.step_of("Created symlink /a -> /b.") is None
    assert profile.step_of("Unpacking zstd (1.5.7) ...") == ""
    assert profile.step_of("update-initramfs: Generating /boot/initrd.img-6.12") == "initramfs"


def test_a_native_step_gets_one_line_with_its_wall_and_cpu_time():
    log = io.StringIO()
    with profile.timed(log, "agent-base unpack + squashfs"):
        # a child that spends 0.5 s of CPU whatever the machine's speed (a fixed amount of
        # work took under 0.05 s on a fast machine: "CPU 0.0 s")
        busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
        subprocess.run(["python3", "-c", busy], check=True)
    line = log.getvalue()
    assert line.startswith("--- profile: agent-base unpack + squashfs: wall ")
    cpu = float(line.split("CPU (user+sys) ")[1].split(" s")[0])
    assert cpu >= 0.4 and line.count("\n") == 1
