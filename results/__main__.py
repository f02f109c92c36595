"""`python -m results report DIR ...`: the results commands without the rest of ablate."""

from results.cli import main

raise SystemExit(main())
