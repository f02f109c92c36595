"""Published record logs <-> curve files.

modded-nanogpt records ship a text log per run: the training script's source, nvidia-smi
output, then lines such as
    step:5690/5690 val_loss:2.919956 train_time:1407511ms step_avg:247.37ms
Importing them puts the records on the same tables and Pareto plots as one's own trials;
exporting a curve in that format lets a run be compared with the records by eye or script.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ablate.results.curves import curve_path, write_curve
from ablate.results.errors import InputError

# Only validation lines: training-step lines have no val_loss and are skipped, and so is
# the script source, whose print statements contain "{step}" rather than digits.
_VAL_LINE = re.compile(r"step:(\d+)/(\d+) val_loss:(\S+) train_time:(\d+(?:\.\d+)?)ms"
                       r" step_avg:\S+ms\s*")
PRESET = "record"
MAX_STEPS = 2**31 - 1  # a curve's num_iterations is an int32


@dataclass(frozen=True)
class LogPoint:
    step: int
    total: int
    val_loss: float
    train_time_ms: float


def parse_log(text: str, name: str) -> list[LogPoint]:
    """The validation points of a record log; InputError (naming `name`) if there are none
    or if they are inconsistent (several totals, steps going backwards)."""
    points = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _VAL_LINE.fullmatch(line.strip())
        if match is None:
            continue
        try:
            loss = float(match[3])
        except ValueError:
            continue
        point = LogPoint(int(match[1]), int(match[2]), loss, float(match[4]))
        if not point.step <= point.total <= MAX_STEPS:
            raise InputError(f"{name}:{number}: step {point.step}/{point.total} is not a step of "
                             f"a run of at most {MAX_STEPS:,} steps")
        if not math.isfinite(point.train_time_ms):
            raise InputError(f"{name}:{number}: train_time {match[4]}ms is not a finite number")
        if points and point.total != points[-1].total:
            raise InputError(f"{name}:{number}: total steps {point.total} differs from "
                             f"{points[-1].total} earlier in the log")
        if points and point.step <= points[-1].step:
            raise InputError(f"{name}:{number}: step {point.step} does not follow "
                             f"step {points[-1].step}")
        points.append(point)
    if not points:
        raise InputError(f"{name}: no validation lines (step:N/M val_loss:X train_time:Tms ...)")
    return points


def log_rows(points: Sequence[LogPoint], sweep: str, trial_id: str) -> list[dict[str, Any]]:
    """Curve rows for a parsed log. Sizes and seed are unknown, so those columns are null.

    The last row is "completed" if the log reaches its total step count, "diverged" if its
    loss is not finite, else "failed": a published log that stops early was cut short.
    """
    total = points[-1].total
    params = json.dumps({"num_iterations": total, "preset": PRESET}, sort_keys=True)
    last = points[-1]
    if not math.isfinite(last.val_loss):
        final = "diverged"
    else:
        final = "completed" if last.step == total else "failed"
    return [{"sweep": sweep, "trial_id": trial_id, "num_iterations": total,
             "step": p.step, "train_time_ms": p.train_time_ms, "val_loss": p.val_loss,
             "status": final if p is last else "running", "params": params}
            for p in points]


def trial_id_for(path: Path) -> str:
    """A trial id from a log's file name: its stem, reduced to [A-Za-z0-9._-]."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "log"


def import_logs(files: Sequence[str | os.PathLike], out: str | os.PathLike,
                sweep: str = "records") -> list[Path]:
    """Write each log as `<out>/<sweep>/curves/<trial_id>.parquet`; returns the paths.

    Every log is parsed and every destination checked before anything is written, so bad
    input writes nothing. An existing curve is never overwritten (InputError).
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", sweep) or sweep.strip(".") == "":
        raise InputError(f"--sweep: {sweep!r} is not a usable folder name")
    jobs = []
    targets: dict[Path, Path] = {}
    for file in map(Path, files):
        if file.exists() and not file.is_file():  # a folder, or a FIFO that would block
            raise InputError(f"{file}: not a regular file")
        try:
            data = file.read_bytes()
        except OSError as e:
            raise InputError(f"{file}: cannot read ({e.strerror or e})") from None
        points = parse_log(data.decode("utf-8", errors="replace"), str(file))
        trial_id = trial_id_for(file)
        dest = curve_path(out, sweep, trial_id)
        if dest in targets:
            raise InputError(f"{file}: trial id {trial_id!r} is also that of {targets[dest]}; "
                             f"rename one of them")
        if dest.exists():
            raise InputError(f"{dest}: already exists; refusing to overwrite it")
        targets[dest] = file
        meta = {"source": str(file), "sha256": hashlib.sha256(data).hexdigest(),
                "imported_by": "ablate import-logs"}
        jobs.append((dest, log_rows(points, sweep, trial_id), meta))
    written = []
    for dest, rows, meta in jobs:
        try:
            written.append(write_curve(dest, rows, meta))
        except OSError as e:
            raise InputError(f"{dest}: cannot write ({e.strerror or e})") from None
    return written


def to_record_log(table: pa.Table) -> str:
    """One trial's curve in the record log format (val_loss to 4 decimals, integer ms).

    The total is the trial's num_iterations (its last step if unknown); step_avg is the
    training time per step so far, as the record scripts print it.
    """
    if len(set(table["trial_id"].to_pylist())) > 1:
        raise ValueError("to_record_log: the table holds more than one trial")
    rows = sorted(table.select(["step", "num_iterations", "train_time_ms", "val_loss"])
                  .to_pylist(), key=lambda r: r["step"])
    rows = [r for r in rows if r["val_loss"] is not None and r["train_time_ms"] is not None]
    if not rows:
        return ""
    total = rows[-1]["num_iterations"] or rows[-1]["step"]
    lines = [record_line(r["step"], total, r["val_loss"], r["train_time_ms"]) for r in rows]
    return "\n".join(lines) + "\n"


def record_line(step: int, total: int, val_loss: float, train_time_ms: float) -> str:
    """One validation point as the record scripts print it (the trainer's log uses it too)."""
    return (f"step:{step}/{total} val_loss:{val_loss:.4f} train_time:{train_time_ms:.0f}ms "
            f"step_avg:{train_time_ms / max(step, 1):.2f}ms")
