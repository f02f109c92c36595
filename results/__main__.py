"""`python -m ablate.results report DIR ...`: the results commands without the rest of ablate."""

from ablate.results.cli import main

raise SystemExit(main())
