"""`run`: subprocess.run, except that an interrupt returns only once the child has ended.

subprocess.run, interrupted (Ctrl-C, or the SIGTERM `scooby build` turns into one), waits a
quarter of a second for the child, SIGKILLs it and returns without waiting for it to end
(CPython's bpo-25942 behaviour). The build then removes the child's work tree while the child
may still be writing into it (a `tar` untarring a root, a `mke2fs` filling an image): the
removal fails, or leaves files behind. Here the child is killed and waited for first.
"""

from __future__ import annotations

import subprocess


def run(cmd: list[str], *, check: bool = False, input=None, capture_output: bool = False,
        **kwargs) -> subprocess.CompletedProcess:  # fmt: skip
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(cmd, **kwargs) as proc:
        try:
            out, err = proc.communicate(input)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done
