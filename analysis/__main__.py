"""`python -m ablate.analysis inspect ...`"""

from ablate.cli import main

raise SystemExit(main(layers=("analysis",), prog="python -m ablate.analysis",
                      description="What the trained models learned."))
