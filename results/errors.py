"""The results layer's refusal of bad input that is not a curve file (see curves.CurveError).

An AblateError (core/errors.py): the CLI's one edge prints it as one `ablate: <message>`
line and exits with status 2, so every message names the file, directory or option at fault.
"""

from __future__ import annotations

from ablate.core.errors import AblateError


class InputError(AblateError):
    """Bad input from the user: a missing directory, an unknown column, a bad log file."""
