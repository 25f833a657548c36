"""``python -m snapmatch.watcher`` is the ``snapmatch`` console command."""

from snapmatch.watcher.cli import main

raise SystemExit(main())
