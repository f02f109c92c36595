"""Where a log sits in modded-nanogpt's `records/` tree, and what its track asks for.

The tree is `records/track_1_short/<record>/...`, `records/track_2_medium/<record>/...` and
`records/track_3_optimization/results/<record>/...`; a record folder may hold a subfolder per
variant (`12-19-Baseline`, `this_pr`). A log outside such a tree (one's own folder of logs)
gets its record and variant from the path below the folder given instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ablate.results.logparse import checked_date

# The loss a record must beat, per track (the optimization track counts steps to 3.28).
TARGETS = {"short": 3.28, "medium": 2.92, "optimization": 3.28}
TRACK_ORDER = ("short", "medium", "optimization")
RECORD_ALPHA = 0.01  # the record rules ask p < 0.01 that the mean is below the target
_TRACK_FOLDER = re.compile(r"track_\d+_([a-z]+)")
_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?!\d)")
MAX_ID = 160  # characters of a trial id from a path; longer ones end in a hash of the path


@dataclass(frozen=True)
class Place:
    """A log's place: its path below the folder given, and what the tree says of it."""

    source: str  # posix path relative to the PATH given (the file's name for a file given)
    record: str
    variant: str
    date: str  # YYYY-MM-DD or ""
    track: str  # "short", "medium", "optimization", or "" (decided from the loss)


def place_of(file: Path, root: Path | None) -> Place:
    """The place of `file`, found under `root` (a folder given), or given itself (None)."""
    file = Path(file)
    relative = file.relative_to(root) if root is not None else PurePosixPath(file.name)
    source = PurePosixPath(*relative.parts).as_posix()
    parts = file.absolute().parts
    track, below = "", list(relative.parts)
    for i in range(len(parts) - 2, -1, -1):  # the innermost track folder
        match = _TRACK_FOLDER.fullmatch(parts[i])
        if match is not None:
            track, below = match[1], list(parts[i + 1:])
            if track == "optimization" and below[:1] == ["results"]:
                below = below[1:]
            break
    else:
        if root is not None and len(below) == 1:
            below = [Path(root).absolute().name, *below]
        elif root is None:
            below = [file.absolute().parent.name, file.name]
    if len(below) == 1:  # a log right in the track folder: a record of its own
        record, variant = Path(below[0]).stem, ""
    else:
        record, variant = below[0], (below[1] if len(below) > 2 else "")
    return Place(source, record, variant, date_of(record), track)


def date_of(name: str) -> str:
    """YYYY-MM-DD from a record folder's name that starts with YYYY-MM-DD or YYYYMMDD."""
    match = _DATE.match(name)
    return checked_date(int(match[1]), int(match[2]), int(match[3])) if match else ""


def track_by_loss(final_loss: float) -> str:
    """The track whose target is nearest a run's final loss: a log outside the tree still
    says which race it ran (a medium run ends near 2.92, a short one near 3.28)."""
    if final_loss != final_loss:  # NaN: a diverged run says nothing
        return ""
    return min(("short", "medium"), key=lambda t: abs(TARGETS[t] - final_loss))


def trial_id_of(source: str, run: int | None = None) -> str:
    """A trial id from a source path: its parts joined by `--`, reduced to [A-Za-z0-9._-],
    plus `-run<k>` for the k-th run of a file holding several; too long, it keeps its
    start and ends in a hash of the whole path (still unique, still stable)."""
    import hashlib

    text = "--".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "_"
                     for part in PurePosixPath(source).parts)
    if run is not None:
        text += f"-run{run}"
    if len(text) > MAX_ID:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        text = f"{text[:MAX_ID - 13]}-{digest}"
    return text
