"""`python -m ablate.trainer train ...`, e.g. `torchrun --nproc_per_node=2 -m ablate.trainer train ...`."""

import sys

from ablate.trainer.cli import main

sys.exit(main())
