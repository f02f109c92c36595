"""`python -m ablate.results report DIR ...`: the results commands without the rest of ablate."""

from ablate.cli import main

raise SystemExit(main(layers=("results",), prog="python -m ablate.results",
                      description="Results of ablate sweeps."))
