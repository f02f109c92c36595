"""The one error type for bad user input that is not a curve file (see curves.CurveError).

The CLI turns both into a single `ablate: <message>` line and exit status 2, so every
message names the file, directory or option at fault.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a missing directory, an unknown column, a bad log file."""
