"""Every refusal is an AblateError, and the words that make one line of a failure.

Bad input (an unknown key, a wrong type, an out-of-range or non-finite value, a missing,
corrupt or hostile file) is refused by raising an AblateError whose message names the field,
option or file at fault: `field or file: why`. Each layer has its own subclass, in its own
module (sweeps.spec.SpecError, trainer.config.TrainConfigError, trainer.data.DataError,
trainer.weights.WeightsError, results.errors.InputError, results.curves.CurveError,
results.logparse.LogError, ablate.cli.UsageError), so a layer's callers can catch its own
refusals, and the CLI's one edge (ablate.cli.run_command) catches them all with one
`except AblateError`: it prints one `ablate: <message>` line and exits with status 2. The
failures the world causes (EXPECTED, and pyarrow's errors: see `expected`) become one line
too; anything else is a bug and keeps its traceback.

The model's ConfigError is the one refusal not born an AblateError: model/ imports nothing of
ours, so it stays a plain ValueError there. The trainer builds every model config that comes
from a person (TrainConfig.from_flat, the `ablate train` run), and translates it at that door
(trainer.config.model_refusals) into a TrainConfigError, which is both an AblateError and the
model's ConfigError: `except ConfigError` keeps catching either.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterable

# What the world can do to a command that is not a bug of ours: a file that cannot be read
# or written (a full disk, a permission, a symlink loop, a NUL byte in a name, a cluster
# that does not answer), input too large for memory or too deeply nested, a pickle. Each
# becomes one line too (as do pyarrow's errors: `expected`).
EXPECTED = (OSError, MemoryError, RecursionError, pickle.UnpicklingError)


class AblateError(ValueError):
    """Bad input, refused: the message is one line of the form `field or file: why`.

    `where` is the field, option or file the message names: given, or else the message's
    text before its first ': ' (None for a message that names nothing). A ValueError, so
    code that catches ValueError around a parse keeps working."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        head, sep, _ = message.partition(": ")
        self.where = where if where is not None else (head if sep and "\n" not in head else None)


def expected(error: BaseException) -> bool:
    """Whether `error` is a failure of the world (EXPECTED, or a pyarrow error: a corrupt or
    foreign Parquet file), not a bug. pyarrow is looked up, never imported: a process that
    has not loaded it cannot have raised its errors."""
    if isinstance(error, EXPECTED):
        return True
    arrow = sys.modules.get("pyarrow")
    return arrow is not None and isinstance(error, arrow.ArrowException)


def describe(error: BaseException) -> str:
    """An expected failure in words, naming the file where the error knows it."""
    if isinstance(error, MemoryError):
        return "out of memory: the input is too large for this machine"
    if isinstance(error, RecursionError):
        return "the input is nested too deeply to read"
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def refuse(message: str) -> int:
    """Print `message` as one `ablate: ...` line on stderr; the exit status of a refusal (2)."""
    print(f"ablate: {printable(' '.join(message.split()))}", file=sys.stderr)
    return 2


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
