"""The one error type for bad user input that is not a curve file (see curves.CurveError).

The CLI turns both into a single `ablate: <message>` line and exit status 2, so every
message names the file, directory or option at fault.
"""

from __future__ import annotations

import sys
from typing import Any


def run_command(args: Any, errors: tuple[type[BaseException], ...]) -> int:
    """Run a parsed command (`args.func(args)`): bad input of one of `errors` becomes one
    `ablate: <message>` line on stderr and exit status 2. Every `ablate` entry point uses it."""
    try:
        return int(args.func(args))
    except errors as e:
        print(f"ablate: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


class InputError(ValueError):
    """Bad input from the user: a missing directory, an unknown column, a bad log file."""
