"""`python -m scooby`: the CLI; Ctrl-C even while it starts up is one line, exit 130."""

import sys

try:
    from scooby.cli import main
except KeyboardInterrupt:
    print("scooby: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
