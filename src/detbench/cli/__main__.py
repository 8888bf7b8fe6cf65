"""``python -m detbench.cli``: the ``detbench`` command without the console script."""

from detbench.cli import main

raise SystemExit(main())
