from scooby.cli import main

raise SystemExit(main())
