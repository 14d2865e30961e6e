"""`python -m flows` starts the paperdigest CLI."""

from flows.cli import main

raise SystemExit(main())
