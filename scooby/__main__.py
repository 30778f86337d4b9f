"""`python -m scooby`: the CLI; Ctrl-C even while it starts up is one line, exit 130."""

import os
import signal


def _interrupted_while_starting(signum, frame):
    # A KeyboardInterrupt raised while modules load can land in importlib's module-lock
    # callback, where Python can only print it ("Exception ignored in ... KeyboardInterrupt"
    # and a traceback) and carry on. Nothing needs cleaning up yet: one line, and leave.
    os.write(2, b"scooby: interrupted\n")
    os._exit(130)


# Only where Ctrl-C is live: a shell's background job keeps it ignored, as it should stay.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
from scooby.cli import main  # noqa: E402  (after the handler: Ctrl-C is covered from here on)

raise SystemExit(main(starting_handler=_interrupted_while_starting))
