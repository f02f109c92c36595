"""`ablate status` between Tune's saves: its state file is up to ~10 s old, the curves are
written at every validation point, so a trial Tune last saved as pending but whose curve has
rows since shows what the curve says."""

from __future__ import annotations

import json

from ablate.results.curves import write_curve
from ablate.sweeps.status import sweep_status


def tune_state(folder, trials: dict[str, str]) -> None:
    data = [[json.dumps({"trial_id": t, "status": s, "config": {"seed": i, "num_iterations": 8}}),
             json.dumps({"last_result": {}})] for i, (t, s) in enumerate(trials.items())]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))


def curve(folder, trial_id: str, steps: list[int], last: str) -> None:
    params = json.dumps({"seed": 0, "num_iterations": 8})
    write_curve(folder / "curves" / f"{trial_id}.parquet",
                [dict(sweep="s", trial_id=trial_id, seed=0, num_iterations=8, step=step,
                      train_time_ms=10.0 * step, val_loss=5.0 - 0.1 * step, params=params,
                      status=last if step == steps[-1] else "running") for step in steps])


def test_a_trial_saved_as_pending_shows_what_its_curve_says(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    tune_state(folder, {"a_0": "PENDING", "a_1": "PENDING", "a_2": "PENDING", "a_3": "RUNNING"})
    curve(folder, "a_0", [0, 4], "running")  # started after Tune's last save
    curve(folder, "a_1", [0, 4, 8], "completed")  # and even finished
    curve(folder, "a_3", [0], "running")
    rows = {r["trial_id"]: r for r in sweep_status(str(folder), [])}
    assert {t: r["state"] for t, r in rows.items()} == {
        "a_0": "running", "a_1": "completed", "a_2": "pending", "a_3": "running"}
    assert rows["a_0"]["step"] == 4 and rows["a_1"]["step"] == 8
