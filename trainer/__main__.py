"""`python -m trainer train ...`, e.g. `torchrun --nproc_per_node=2 -m trainer train ...`."""

import sys

from trainer.cli import main

sys.exit(main())
