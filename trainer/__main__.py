"""`python -m ablate.trainer train ...`, e.g. `torchrun --nproc_per_node=2 -m ablate.trainer train ...`."""

from ablate.cli import main

raise SystemExit(main(layers=("trainer",), prog="python -m ablate.trainer",
                      description="One training run, and token shards."))
