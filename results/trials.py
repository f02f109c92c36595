"""From loaded rows to trials: one curve each, with its final row (configs.py groups them).

Everything downstream is vectorised numpy over one flat layout: the curve points of all
trials back to back, sorted by trial then step, with `offsets` marking where each trial
starts (compressed sparse rows). Ten million points then cost a few array passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ablate.core.states import outcome
from ablate.results.arrays import positions, values
from ablate.results.configs import trial_params

# The loaded columns trials_from reads (a report without plots loads only these)
COLUMNS = ["sweep", "trial_id", "seed", "num_iterations", "step", "train_time_ms",
           "val_loss", "status", "params"]


@dataclass(frozen=True)
class Trials:
    """Per-trial final rows (`info`) and every trial's curve in the flat layout."""

    info: pa.Table  # one row per trial: its last row (max step), strings decoded
    outcome: np.ndarray  # per trial, one of states.OUTCOMES (see `outcome_of`)
    offsets: np.ndarray  # curve of trial i is [offsets[i], offsets[i + 1]) of the arrays below
    step: np.ndarray
    time_s: np.ndarray  # training time, seconds
    val_loss: np.ndarray
    order: np.ndarray | None  # the loaded rows in point order; None: point i is row i

    def __len__(self) -> int:
        return self.info.num_rows

    @cached_property
    def rows(self) -> np.ndarray:
        """Row of the loaded table behind each point (for the lambdas and tokens plots)."""
        return np.arange(len(self.step)) if self.order is None else self.order

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
    """Split loaded rows into trials, keyed by (sweep, trial_id), each sorted by step.

    Loaded rows usually come trial after trial, each rising in step (one file after
    another): the points are then the rows, copied once, and no key is made per row.
    """
    n = table.num_rows
    step = _flat(table["step"], np.int64)
    time_s = _flat(table["train_time_ms"], np.float64, divisor=1000.0)  # ms -> s
    loss = _flat(table["val_loss"], np.float64)
    starts = _grouped_starts(table, step)
    order = None
    if starts is None:  # rows out of order (a hand-made or merged table): sort them
        key = _trial_key(table)
        order = np.lexsort((step, key))
        key, step, time_s, loss = key[order], step[order], time_s[order], loss[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    offsets = np.append(starts, n).astype(np.int64)
    last = offsets[1:] - 1
    info = _decoded(_take(table.select(COLUMNS), last if order is None else order[last]))
    final_loss = loss[last]
    return Trials(info=info, outcome=outcome_of(info["status"].to_pylist(), final_loss),
                  offsets=offsets, step=step, time_s=time_s, val_loss=loss, order=order)


def outcome_of(status: Sequence[str | None], final_loss: np.ndarray) -> np.ndarray:
    """Each trial's outcome (core.states.outcome) from its final point's status and loss."""
    finite = np.isfinite(final_loss).tolist()
    return np.array([outcome(s, f) for s, f in zip(status, finite)], dtype="<U9")


def _flat(column: pa.ChunkedArray, dtype: type, divisor: float | None = None) -> np.ndarray:
    """A numeric column as one array (null: NaN), chunk by chunk into one allocation;
    divided by `divisor` on the way."""
    out = np.empty(len(column), dtype)
    start = 0
    for chunk in column.chunks:
        numbers = values(chunk)
        part = out[start:start + len(numbers)]
        if divisor is None:
            part[:] = numbers
        else:
            np.divide(numbers, divisor, out=part)
        start += len(numbers)
    return out


def _grouped_starts(table: pa.Table, step: np.ndarray) -> np.ndarray | None:
    """Where each trial's rows start, if every trial's rows are together and rising in
    `step`; None otherwise. Told batch by batch from the strings' dictionary codes, so
    only a key per run of equal rows is made, not one per row."""
    starts: list[np.ndarray] = []
    keys: list[tuple[object, object]] = []
    offset = 0
    for batch in table.select(["sweep", "trial_id"]).to_batches():
        length = batch.num_rows
        if length == 0:
            continue
        codes = [_batch_codes(column) for column in batch.columns]
        new = np.zeros(length, bool)
        new[0] = True
        for indices, _ in codes:
            new[1:] |= indices[1:] != indices[:-1]
        segment = step[offset:offset + length]
        if not np.all((segment[1:] > segment[:-1]) | new[1:]):
            return None
        local = np.flatnonzero(new)
        run_keys = list(zip(*(_labels(indices[local], dictionary) for indices, dictionary in codes)))
        if keys and run_keys[0] == keys[-1]:  # the previous batch's last trial goes on
            if step[offset] <= step[offset - 1]:
                return None
            local, run_keys = local[1:], run_keys[1:]
        starts.append(local + offset)
        keys += run_keys
        offset += length
    if len(set(keys)) < len(keys):  # a trial's rows in several places
        return None
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def _batch_codes(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(codes, dictionary) of one batch's string column; code -1 for null."""
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return values(indices), encoded.dictionary


def _labels(codes: np.ndarray, dictionary: pa.Array) -> list[object]:
    """The strings at `codes` of a dictionary (None at -1: a null)."""
    labels: list[object] = [None] * len(codes)
    known = np.flatnonzero(codes >= 0)
    for i, label in zip(known.tolist(), dictionary.take(positions(codes[known])).to_pylist()):
        labels[i] = label
    return labels


def _trial_key(table: pa.Table) -> np.ndarray:
    """An integer per row, equal for the rows of one (sweep, trial_id)."""
    key = _codes(table["trial_id"])
    sweep = table["sweep"]
    if sweep.null_count or len(sweep.unique()) > 1:  # several sweeps: the pair is the key
        key = (_codes(sweep).astype(np.int64) + 1) * (int(key.max(initial=0)) + 2) + key + 1
    return key


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integer codes of a string column (-1 for null), equal for equal strings in any chunk,
    numbered in order of first appearance in the chunks' dictionaries."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    indices = column.combine_chunks().indices  # concatenating unifies the dictionaries
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return values(indices)


def _take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """`table.take(rows)` batch by batch: a take over many chunks would first concatenate
    every chunk of every column, though only one row per trial is wanted."""
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    parts, start = [], 0
    for batch in table.to_batches():
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(positions(wanted[lo:hi] - start)))
        start += batch.num_rows
    taken = pa.Table.from_batches(parts, table.schema)
    if np.any(order[1:] < order[:-1]):  # rows were not ascending: put them back in order
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        taken = taken.take(positions(back))
    return taken


def _decoded(table: pa.Table) -> pa.Table:
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
               for c in table.columns]
    return pa.table(columns, names=table.column_names)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
