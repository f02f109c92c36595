"""`python -m ablate.analysis inspect ...`"""

import sys

from ablate.analysis.cli import main

sys.exit(main())
