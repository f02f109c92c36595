"""Item 5 of the reliability table: a curve file is the trial its place says it is.

In `<sweep>/curves/<trial_id>.parquet` the rows must be that trial's, and their params must
agree with the sweep's ledger (`<sweep>/trials.json`); otherwise the file is foreign: named
and skipped while walking a folder, refused (one line, exit 2) when named directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ablate.cli import main
from ablate.results.curves import curve_path, write_curve
from ablate.results.load import load_curves
from ablate.results.logs import import_logs
from ablate.results.report import build_report

LOG = """step:0/20 val_loss:10.8258 train_time:0ms step_avg:0.08ms
step:10/20 val_loss:4.363417 train_time:1553ms step_avg:155.30ms
step:20/20 val_loss:3.2781 train_time:3100ms step_avg:155.00ms
"""


def trial(storage: Path, trial_id: str, seed: int, extra: int, final: float,
          sweep: str = "s") -> Path:
    """A two-point curve of one trial, its params as the trainer writes them."""
    params = {"preset": "tiny", "extra_embeddings": extra, "seed": seed, "sweep": sweep,
              "trial_id": trial_id}
    rows = [{"sweep": sweep, "trial_id": trial_id, "seed": seed, "num_iterations": 10,
             "step": step, "train_time_ms": 100.0 * step, "val_loss": loss,
             "status": "completed" if step == 10 else "running", "params": json.dumps(params)}
            for step, loss in ((0, 10.0), (10, final))]
    return write_curve(curve_path(storage, sweep, trial_id), rows)


def ledger(folder: Path, trials: dict[str, tuple[int, int]]) -> None:
    """trials.json as the driver writes it: {trial_id: {"state", "config": {axis, seed}}}."""
    entries = {t: {"state": "completed", "config": {"extra_embeddings": extra, "seed": seed},
                   "num_iterations": 10} for t, (seed, extra) in trials.items()}
    (folder / "trials.json").write_text(json.dumps(entries))


def test_item05_a_curve_copied_over_another_trials_is_named_foreign(tmp_path, capsys):
    storage = tmp_path / "runs"
    a = trial(storage, "abcde_00000", seed=0, extra=0, final=3.30)
    b = trial(storage, "abcde_00001", seed=1, extra=0, final=3.32)
    c = trial(storage, "abcde_00002", seed=0, extra=2, final=3.20)
    ledger(storage / "s", {"abcde_00000": (0, 0), "abcde_00001": (1, 0), "abcde_00002": (0, 2)})
    shutil.copyfile(b, a)  # trial 0's curve replaced by trial 1's: its rows say trial 1

    # a curve of the same id from another sweep (other params) copied over trial 2's
    elsewhere = trial(tmp_path / "other", "abcde_00002", seed=0, extra=5, final=3.0)
    shutil.copyfile(elsewhere, c)

    report = build_report([storage])
    assert report.skipped == [
        f"{a}: foreign curve: its rows say trial abcde_00001",
        f"{c}: foreign curve: its params say extra_embeddings=5, {storage / 's' / 'trials.json'} "
        "says 2 for trial abcde_00002"]
    assert report.trials.info["trial_id"].to_pylist() == ["abcde_00001"]  # the rest: reported
    assert main(["report", str(storage)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"ablate: warning: skipped {s}" for s in report.skipped]

    for foreign in (a, c):  # named directly: refused with one line, exit 2
        assert main(["report", str(foreign)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"ablate: {foreign}: foreign curve: "), err

    # without a ledger the name rule still holds; the trial's own rows load
    (storage / "s" / "trials.json").unlink()
    assert [p.path for p in load_curves([storage]).problems] == [a]
    trial(storage, "abcde_00000", seed=0, extra=0, final=3.30)
    assert load_curves([storage]).problems == []


def test_several_trials_in_one_file_are_foreign_only_under_a_trials_name(tmp_path):
    storage = tmp_path / "runs"
    one = trial(storage, "t1", seed=0, extra=0, final=3.3)
    two = trial(storage, "t2", seed=1, extra=0, final=3.3)
    part = one.parent / "part-0000.parquet"  # a combined file: no trial's name
    both = pa.concat_tables([pq.read_table(one), pq.read_table(two)])
    pq.write_table(both, part)
    one.unlink()
    two.unlink()
    assert load_curves([storage]).problems == []
    part.rename(one)  # under trial t1's name, it holds t2 as well
    problems = load_curves([storage]).problems
    assert [str(p) for p in problems] == [
        f"{one}: foreign curve: its rows say trials t1, t2 (a trial's file holds that trial only)"]


def test_imported_record_logs_named_with_their_extension_still_load(tmp_path):
    log = tmp_path / "run.txt"
    log.write_text(LOG)
    out = tmp_path / "storage"
    (path,) = import_logs([log], out).written
    assert path.name.endswith(".txt.parquet")
    loaded = load_curves([out])
    assert loaded.problems == [] and loaded.table.num_rows == 3
    assert load_curves([path]).table.num_rows == 3


@pytest.mark.parametrize("value", [True, 1.0])
def test_ledger_values_compare_as_json_values(tmp_path, value):
    """1 and 1.0 are one value; true is not 1."""
    storage = tmp_path / "runs"
    trial(storage, "t1", seed=0, extra=1, final=3.3)
    (storage / "s" / "trials.json").write_text(json.dumps(
        {"t1": {"state": "completed", "config": {"extra_embeddings": value, "seed": 0}}}))
    problems = load_curves([storage]).problems
    assert len(problems) == (1 if value is True else 0)
