"""Loading only some columns, and splitting loaded rows into trials whatever their order:
the report's numbers are the same either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ablate.results.arrays import positions, values
from ablate.results.curves import curve_path, to_table, write_curve
from ablate.results.load import CHECKED, load_curves
from ablate.results.report import analyse, build_report
from ablate.results.trials import COLUMNS, trials_from


def rows(sweep: str, trial_id: str, seed: int, extra: int, points: int = 6) -> list[dict]:
    rng = np.random.default_rng([seed, extra, points])
    params = json.dumps({"preset": "tiny", "extra_embeddings": extra, "seed": seed})
    losses = 5.0 - np.cumsum(rng.random(points)) * 0.4
    return [{"sweep": sweep, "trial_id": trial_id, "seed": seed, "num_iterations": 10 * points,
             "step": 10 * i, "train_time_ms": 1000.0 * i + rng.random(), "val_loss": loss,
             "train_loss": loss + 0.1, "tokens_seen": 512 * i, "lr": 1.0, "peak_mem_mb": 9.0,
             "status": "completed" if i == points - 1 else "running", "params": params}
            for i, loss in enumerate(losses)]


def storage(tmp_path: Path) -> Path:
    for seed in range(3):
        for extra in range(2):
            trial = f"t{extra}{seed}"
            write_curve(curve_path(tmp_path, "s", trial), rows("s", trial, seed, extra),
                        meta={"sweep": {"axes": ["extra_embeddings"], "target": 4.0}})
    return tmp_path


def test_columns_reads_those_and_the_checked_ones(tmp_path: Path) -> None:
    full = load_curves([storage(tmp_path)])
    some = load_curves([tmp_path], columns=["val_loss"])
    assert set(some.table.column_names) == {"val_loss", *CHECKED}
    assert some.table.column_names == [n for n in full.table.column_names
                                       if n in some.table.column_names]  # the schema's order
    for name in some.table.column_names:
        assert some.table[name].to_pylist() == full.table[name].to_pylist()
    with pytest.raises(ValueError, match="columns: nosuch not in the curve schema"):
        load_curves([tmp_path], columns=["nosuch"])


def test_report_without_plots_equals_the_one_with_every_column(tmp_path: Path) -> None:
    lean = build_report([storage(tmp_path)])
    assert set(lean.table.column_names) == set(COLUMNS)
    full = build_report([tmp_path], lambdas=True)  # what --plot loads
    assert "tokens_seen" in full.table.column_names
    assert json.dumps(lean.to_dict()) == json.dumps(full.to_dict())


def table_of(*trials: list[dict]) -> pa.Table:
    return to_table([row for trial in trials for row in trial]).replace_schema_metadata(None)


def by_trial(table: pa.Table) -> dict[tuple[str, str], dict]:
    """Each trial of `table` (trials_from) by (sweep, trial_id): its final row, outcome,
    points, and the table's steps at the rows behind its points."""
    trials = trials_from(table)
    out = {}
    for i, final in enumerate(trials.info.to_pylist()):
        span = slice(trials.offsets[i], trials.offsets[i + 1])
        out[final["sweep"], final["trial_id"]] = {
            "final": final, "outcome": str(trials.outcome[i]), "step": trials.step[span].tolist(),
            "time_s": trials.time_s[span].tolist(), "val_loss": trials.val_loss[span].tolist(),
            "rows_step": table["step"].take(pa.array(trials.rows[span])).to_pylist(),
            "rows_trial": set(table["trial_id"].take(pa.array(trials.rows[span])).to_pylist())}
    return out


def same_trials(table: pa.Table, reference: pa.Table) -> None:
    """`table` (rows in any order, any chunking) holds the trials of `reference`, each
    sorted by step, and each point's row is the right one."""
    got, want = by_trial(table), by_trial(reference)
    assert got == want
    for trial in got.values():
        assert trial["rows_step"] == trial["step"] and len(trial["rows_trial"]) == 1


def test_trials_are_the_same_however_the_rows_come() -> None:
    a, b, c = rows("s", "a", 0, 0), rows("s", "b", 1, 0, points=1), rows("s", "c", 2, 1)
    other = rows("r", "a", 3, 1)  # the same trial id in another sweep: another trial
    reference = table_of(a, b, c, other)
    assert trials_from(reference).order is None  # in order already: no row index made
    chunked = pa.concat_tables([table_of(a[:2]), table_of(a[2:] + b + c[:1]), table_of(c[1:]),
                                table_of(other)])  # a trial split across chunks
    assert chunked.column("step").num_chunks == 4
    same_trials(chunked, reference)
    assert trials_from(chunked).order is None
    back = np.random.default_rng(0).permutation(reference.num_rows)
    same_trials(reference.take(pa.array(back)), reference)
    same_trials(table_of(a[:3], c, a[3:], b, other), reference)  # a trial in two places
    same_trials(table_of(a[:3], a[4:5], a[3:4], a[5:], b, c, other), reference)  # steps back
    same_trials(pa.concat_tables([table_of(a[:2], a[3:4]), table_of(a[2:3], a[4:], b, c, other)]),
                reference)  # back where a chunk ends
    # as loaded: strings dictionary-encoded, each chunk with its own dictionary
    encoded = pa.concat_tables([encode(table_of(a, b[:0])), encode(table_of(b, c, other))])
    same_trials(encoded, reference)
    same_trials(encoded.take(pa.array(back)), reference)


def encode(table: pa.Table) -> pa.Table:
    for name in ("sweep", "trial_id", "status", "params"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, table[name].dictionary_encode())
    return table


def test_a_report_of_rows_out_of_order_is_the_report_of_them_in_order(tmp_path: Path) -> None:
    loaded = load_curves([storage(tmp_path)])
    shuffled = loaded.table.take(pa.array(np.random.default_rng(1).permutation(
        loaded.table.num_rows)))
    ordered = analyse(loaded.table, target=4.0, axes=["extra_embeddings"])
    mixed = analyse(shuffled, target=4.0, axes=["extra_embeddings"])
    assert ordered.configs[0].to_target is not None and ordered.configs[0].loss["n"] == 3
    assert json.dumps(ordered.to_dict()) == json.dumps(mixed.to_dict())


def test_a_report_imports_no_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (where installed: Ray Tune installs it) at its first to_numpy
    or pa.array: a second of wall time for nothing a report needs."""
    code = ("import sys; from ablate.results.report import build_report; "
            f"build_report([{str(storage(tmp_path))!r}], resamples=10); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("array", [
    pa.array([3, 1, 2], pa.int64()), pa.array([3, 1, 2], pa.uint8()), pa.array([1.5, -2.0], pa.float32()),
    pa.array([0, 5, 7, 9], pa.int32()).slice(1, 2),  # an offset into the buffer
    pa.array([1.0, None, 3.0]), pa.array([4, None], pa.int16()),  # nulls: float64 with NaN
    pa.array([], pa.float64()), pa.array([None, None], pa.int64())])
def test_values_are_what_to_numpy_gives(array: pa.Array) -> None:
    got, want = values(array), array.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
    assert positions(np.array([2, 0])).to_pylist() == [2, 0]


def test_values_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="not an integer or floating array: string"):
        values(pa.array(["a"]))
