"""A trial's checkpoints in the sweep folder: `checkpoints/<trial id>/step_<N>/`, each holding
the trainer's state file and `point.json` (its step and val loss; JSON, so choosing which to
keep never unpickles anything).

Rank 0 writes each one whole (a temp name, then a rename; on object stores a file appears
whole or not at all) and then keeps only the latest and the best (lowest val loss): a long
trial holds two checkpoints, not one per point. A restarted or resumed trial continues from
the latest one. The folder names are ours, so nothing read from it names a path elsewhere.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ablate.sweeps.storage import exists, filesystem, is_uri, join, read_text, upload, write_text

POINT_FILE = "point.json"
STATE_FILE = "state.pt"  # the trainer's (trainer/train.py CHECKPOINT_FILE)
STEP_DIR = re.compile(r"step_(\d{9})")


def trial_checkpoints(storage: str, sweep: str, trial_id: str) -> str:
    return join(storage, sweep, "checkpoints", trial_id)


def keep_checkpoint(local: Path, folder: str, metrics: dict[str, Any]) -> str:
    """Copy a checkpoint rank 0 just wrote (a local folder holding the state file) into the
    trial's `folder` as `step_<N>`, then drop all but the latest and the best; returns its
    location."""
    step = int(metrics["step"])
    name = f"step_{step:09d}"
    point = json.dumps({"step": step, "val_loss": metrics.get("val_loss")})
    if is_uri(folder):
        upload(local / STATE_FILE, join(folder, name, STATE_FILE))
        write_text(join(folder, name, POINT_FILE), point)  # after the state: a complete point
    else:
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            shutil.copyfile(local / STATE_FILE, tmp / STATE_FILE)
            (tmp / POINT_FILE).write_text(point)
            if (root / name).exists():  # the same point again (a restart before it): the new one
                shutil.rmtree(root / name)
            tmp.rename(root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    prune(folder)
    return join(folder, name)


def points(folder: str) -> dict[str, float | None]:
    """The complete checkpoints in a trial's folder (both files there), by name, with their
    val loss (None where unknown), in step order."""
    import pyarrow.fs

    fs, root = filesystem(folder)
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except OSError:
        return {}
    found = {}
    for entry in sorted(entries, key=lambda e: e.base_name):
        if entry.type != pyarrow.fs.FileType.Directory or not STEP_DIR.fullmatch(entry.base_name):
            continue
        location = join(folder, entry.base_name)
        if not exists(join(location, STATE_FILE)):
            continue
        try:
            loss = json.loads(read_text(join(location, POINT_FILE))).get("val_loss")
        except (OSError, ValueError, AttributeError, RecursionError):
            loss = None
        found[entry.base_name] = loss if isinstance(loss, (int, float)) and math.isfinite(loss) else None
    return found


def latest_checkpoint(folder: str) -> str | None:
    """The location of the trial's latest complete checkpoint, or None."""
    names = list(points(folder))
    return join(folder, names[-1]) if names else None


def prune(folder: str) -> list[str]:
    """Delete all checkpoints of a trial but its latest and its best; returns the names
    deleted."""
    found = points(folder)
    if not found:
        return []
    latest = list(found)[-1]
    finite = {name: loss for name, loss in found.items() if loss is not None}
    best = min(finite, key=finite.__getitem__) if finite else latest
    fs, root = filesystem(folder)
    deleted = []
    for name in found:
        if name not in (latest, best):
            fs.delete_dir(f"{root.rstrip('/')}/{name}")
            deleted.append(name)
    return deleted


def local_copy(location: str) -> str:
    """A checkpoint's state file on this node: in place for local (shared) storage, else
    downloaded into a temp folder."""
    if not is_uri(location):
        return str(Path(location) / STATE_FILE)
    import pyarrow.fs

    fs, path = filesystem(join(location, STATE_FILE))
    local = Path(tempfile.mkdtemp(prefix="ablate-resume-")) / STATE_FILE
    pyarrow.fs.copy_files(path, str(local), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return str(local)
