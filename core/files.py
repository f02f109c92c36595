"""What ablate writes for others to read: files whole or not at all, with the user's mode,
and JSON that strict parsers accept.

`atomic_path`: a temp file beside the target, fsync, then a rename over it. A crash or a full
disk leaves the previous file (or none), never half of one. The file gets the user's umask
like any other tool's (`default_mode`): mkstemp's 0600 would hide it from teammates.

`check_out_folder`: an output folder is refused before the work, not after it.

`jsonable`: JSON has no NaN or infinity (a diverged loss), and numpy's numbers are not
Python's; every JSON ablate prints or writes for other programs goes through it. numpy is
never imported here: a value can only be numpy's if the process has loaded it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ablate.core.errors import AblateError


def default_mode() -> int:
    """The mode a new file gets from the user's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path to write `path`'s new content to; on leaving the block it replaces `path`
    (or, if the block raised, is removed and `path` is untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_out_folder(folder: Path, option: str) -> None:
    """`folder`, given by `option`, is a folder this user can write in, or can be made one
    (checked without creating anything): refused before any work is done, not after."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise AblateError(f"{option} {folder}: {probe} is not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise AblateError(f"{option} {folder}: cannot write in {probe} (permission denied)")


def jsonable(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has neither), and
    numpy arrays and scalars as plain lists and numbers."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
