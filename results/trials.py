"""From loaded rows to trials: one curve each, with its final row (configs.py groups them).

Everything downstream is vectorised numpy over one flat layout: the curve points of all
trials back to back, sorted by trial then step, with `offsets` marking where each trial
starts (compressed sparse rows). Ten million points then cost a few array passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ablate.results.configs import trial_params

OUTCOMES = ("completed", "running", "diverged", "failed")
_INFO_COLUMNS = ["sweep", "trial_id", "seed", "num_iterations", "step", "train_time_ms",
                 "val_loss", "status", "params"]


@dataclass(frozen=True)
class Trials:
    """Per-trial final rows (`info`) and every trial's curve in the flat layout."""

    info: pa.Table  # one row per trial: its last row (max step), strings decoded
    outcome: np.ndarray  # per trial, one of OUTCOMES (see `outcome_of`)
    offsets: np.ndarray  # curve of trial i is [offsets[i], offsets[i + 1]) of the arrays below
    step: np.ndarray
    time_s: np.ndarray  # training time, seconds
    val_loss: np.ndarray
    rows: np.ndarray  # row of the loaded table behind each point (for the lambdas)

    def __len__(self) -> int:
        return self.info.num_rows

    def seeds(self) -> list[int | None]:
        """Each trial's seed: the `seed` column, else its params' "seed", else None."""
        column = self.info["seed"].to_pylist()
        if all(s is not None for s in column):
            return column
        params = trial_params(self.info)
        return [s if s is not None else _int_or_none(p.get("seed"))
                for s, p in zip(column, params)]

    @property
    def final_loss(self) -> np.ndarray:
        return self.val_loss[self.offsets[1:] - 1]

    @property
    def final_time_s(self) -> np.ndarray:
        return self.time_s[self.offsets[1:] - 1]


def trials_from(table: pa.Table) -> Trials:
    """Split loaded rows into trials, keyed by (sweep, trial_id), each sorted by step."""
    n = table.num_rows
    sweep = _codes(table["sweep"])
    trial = _codes(table["trial_id"])
    key = sweep * (int(trial.max(initial=0)) + 1) + trial
    step = table["step"].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    time_ms = table["train_time_ms"].to_numpy(zero_copy_only=False)
    loss = table["val_loss"].to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    order = _order(key, step)
    if order is None:  # already grouped and sorted: the usual case, no copies
        order = np.arange(n)
    else:
        key, step, time_ms, loss = key[order], step[order], time_ms[order], loss[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if n else np.zeros(0, np.int64)
    offsets = np.append(starts, n).astype(np.int64)
    last = order[offsets[1:] - 1]
    info = _decoded(table.select(_INFO_COLUMNS).take(pa.array(last)))
    final_loss = loss[offsets[1:] - 1]
    return Trials(info=info, outcome=outcome_of(info["status"].to_pylist(), final_loss),
                  offsets=offsets, step=step, time_s=time_ms / 1000.0, val_loss=loss,
                  rows=order)


def outcome_of(status: Sequence[str | None], final_loss: np.ndarray) -> np.ndarray:
    """completed | running | diverged | failed, from each trial's last status.

    A "completed" trial whose final loss is not finite counts as diverged; a missing or
    unknown status counts as running (not finished, so not averaged in).
    """
    known = {"completed", "diverged", "failed"}
    out = np.array([s if s in known else "running" for s in status], dtype="<U9")
    out[(out == "completed") & ~np.isfinite(final_loss)] = "diverged"
    return out


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integer codes of a string column (0 for null), equal for equal strings in any chunk."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices = column.combine_chunks().indices  # concatenating unifies the dictionaries
    return pc.fill_null(indices, -1).to_numpy().astype(np.int64) + 1


def _order(key: np.ndarray, step: np.ndarray) -> np.ndarray | None:
    """Row order grouping each trial's rows by step; None if they already are (O(n) check)."""
    if len(key) == 0:
        return None
    new_run = np.r_[True, key[1:] != key[:-1]]
    runs_unique = len(np.unique(key[new_run])) == int(new_run.sum())
    steps_rise = bool(np.all((step[1:] > step[:-1]) | new_run[1:]))
    if runs_unique and steps_rise:
        return None
    return np.lexsort((step, key))


def _decoded(table: pa.Table) -> pa.Table:
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
               for c in table.columns]
    return pa.table(columns, names=table.column_names)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
