"""The one error type for bad user input that is not a curve file (see curves.CurveError),
and the one edge where every expected failure of a command becomes one line.

The CLI turns both into a single `ablate: <message>` line and exit status 2, so every
message names the file, directory or option at fault.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterable
from typing import Any

# What the world can do to a command that is not a bug of ours: a file that cannot be read
# or written (a full disk, a permission, a symlink loop, a NUL byte in a name, a cluster
# that does not answer), input too large for memory or too deeply nested, a pickle. Each
# becomes one line too; anything else is a bug and keeps its traceback.
EXPECTED = (OSError, MemoryError, RecursionError, pickle.UnpicklingError)


def printable(text: str) -> str:
    """`text` with every control or format character (ESC, OSC, BEL, bidi overrides, ...)
    written as an escape (\\x1b, \\u202e): text read from a folder or a file is shown to a
    person, and must never move their cursor, retitle their window or plant a link."""
    import unicodedata

    return "".join(c if unicodedata.category(c) not in ("Cc", "Cf") or c == "\n"
                   else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in text)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the choice nearest to a mistyped `word`, or '' if none is near."""
    import difflib

    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def run_command(args: Any, errors: tuple[type[BaseException], ...]) -> int:
    """Run a parsed command (`args.func(args)`): bad input of one of `errors`, or one of the
    EXPECTED failures (or a pyarrow error), becomes one `ablate: <message>` line on stderr and
    exit status 2. Every `ablate` entry point uses it."""
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `ablate report ... | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except errors as e:
        return refuse(str(e))
    except EXPECTED as e:
        return refuse(describe(e))
    except Exception as e:
        arrow = sys.modules.get("pyarrow")
        if arrow is not None and isinstance(e, arrow.ArrowException):
            return refuse(f"{type(e).__name__}: {e}")
        raise


def refuse(message: str) -> int:
    print(f"ablate: {printable(' '.join(message.split()))}", file=sys.stderr)
    return 2


def describe(error: BaseException) -> str:
    """An expected failure in words, naming the file where the error knows it."""
    if isinstance(error, MemoryError):
        return "out of memory: the input is too large for this machine"
    if isinstance(error, RecursionError):
        return "the input is nested too deeply to read"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class InputError(ValueError):
    """Bad input from the user: a missing directory, an unknown column, a bad log file."""
