"""The driver's trial ledger (trials.json) and `ablate status`, which reads only it and the
curves: states as they change, a stopped trial written at once, trials still active when a
sweep is interrupted marked so, and a curve newer than the ledger having the last word."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ablate.results.curves import write_curve
from ablate.sweeps.control import driver_lock
from ablate.sweeps.ledger import TrialLedger
from ablate.sweeps.spec import SpecError
from ablate.sweeps.status import sweep_status
from ablate.sweeps.storage import TRIALS_FILE, stopped_trials, trial_states


def trial(trial_id: str, seed: int = 0, status: str | None = None):
    return SimpleNamespace(trial_id=trial_id, config={"lr_head": 0.01, "seed": seed, "num_iterations": 8},
                           last_result={"status": status} if status else {})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_ledger_writes_states_as_they_change_at_most_once_a_second(tmp_path):
    clock = Clock()
    ledger = TrialLedger(str(tmp_path), ["lr_head"], every=1.0, clock=clock)
    a, b = trial("t_0"), trial("t_1", seed=1)
    ledger.on_trial_start(0, [], a)  # the first write goes out at once
    assert trial_states(str(tmp_path)) == {"t_0": {"state": "starting", "num_iterations": 8,
                                                   "config": {"lr_head": 0.01, "seed": 0}}}
    ledger.on_trial_result(0, [], a, {})
    ledger.on_trial_start(0, [], b)  # within the second: held back
    assert trial_states(str(tmp_path))["t_0"]["state"] == "starting"
    clock.now = 1.5
    ledger.on_step_end(0, [])
    assert {t: v["state"] for t, v in trial_states(str(tmp_path)).items()} == {
        "t_0": "running", "t_1": "starting"}
    b.last_result = {"status": "running"}  # its last report was not its last step: stopped
    ledger.on_trial_complete(0, [], b)  # written at once: a resume must not train it again
    assert stopped_trials(str(tmp_path)) == {"t_1"}
    ledger.on_experiment_end([a, b])  # Ctrl-C: a was still running
    assert {t: v["state"] for t, v in trial_states(str(tmp_path)).items()} == {
        "t_0": "interrupted", "t_1": "stopped"}

    again = TrialLedger(str(tmp_path), ["lr_head"], clock=clock)  # a resumed sweep keeps them
    again.on_trial_start(0, [], a)
    assert {t: v["state"] for t, v in trial_states(str(tmp_path)).items()} == {
        "t_0": "starting", "t_1": "stopped"}


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"t": {"state": "asleep"}}', '{"t": {"state": "running", "config": 3}}'])
def test_a_corrupt_ledger_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / TRIALS_FILE).write_text(text)
    with pytest.raises(SpecError, match="trials.json: corrupt"):
        trial_states(str(tmp_path))


def curve(folder, trial_id: str, steps: list[int], last: str) -> None:
    params = json.dumps({"seed": 0, "num_iterations": 8, "lr_head": 0.01})
    write_curve(folder / "curves" / f"{trial_id}.parquet",
                [dict(sweep="s", trial_id=trial_id, seed=0, num_iterations=8, step=step,
                      train_time_ms=10.0 * step, val_loss=5.0 - 0.1 * step, params=params,
                      status=last if step == steps[-1] else "running") for step in steps])


def test_status_reads_the_ledger_and_lets_a_newer_curve_have_the_last_word(tmp_path):
    folder = tmp_path / "s"
    entry = {"config": {"lr_head": 0.01, "seed": 0}, "num_iterations": 8}
    (folder / "curves").mkdir(parents=True)
    (folder / TRIALS_FILE).write_text(json.dumps({
        "a_0": entry | {"state": "starting"},  # has reported since the last write
        "a_1": entry | {"state": "running"},  # and this one has even finished
        "a_2": entry | {"state": "starting"},  # no curve yet
        "a_3": entry | {"state": "stopped"},  # its curve ends `running`: the ledger knows better
        "a_4": entry | {"state": "interrupted"}}))
    curve(folder, "a_0", [0, 4], "running")
    curve(folder, "a_1", [0, 4, 8], "completed")
    curve(folder, "a_3", [0, 4], "running")
    curve(folder, "a_4", [0], "running")
    curve(folder, "b_9", [0, 4, 8], "completed")  # a curve the ledger does not know (yet)
    (folder / "experiment_state-2026-01-01.json").write_text("not read")  # Tune's is never read
    with driver_lock(str(folder)):  # a live driver
        rows = {r["trial_id"]: r for r in sweep_status(str(folder), ["lr_head"])}
    assert {t: r["state"] for t, r in rows.items()} == {
        "a_0": "running", "a_1": "completed", "a_2": "starting", "a_3": "stopped",
        "a_4": "interrupted", "b_9": "completed"}
    gone = {r["trial_id"]: r["state"] for r in sweep_status(str(folder), ["lr_head"])}
    assert gone["a_0"] == gone["a_2"] == "interrupted"  # no driver holds the lock: it died
    assert rows["a_0"]["step"] == 4 and rows["a_1"]["step"] == 8 and rows["a_2"]["step"] is None
    assert rows["a_2"]["config"] == {"lr_head": 0.01, "seed": 0}
    assert rows["a_2"]["num_iterations"] == 8
