"""`python -m ablate.cli ...`: the `ablate` command, from a checkout or an environment
without the script."""

from ablate.cli import main

raise SystemExit(main())
