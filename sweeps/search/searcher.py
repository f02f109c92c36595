"""The step search on Ray Tune: a Tune Searcher whose suggestions are StepSearch's probes.

Each probe is an ordinary Tune trial of the sweep's trainable (`ablate.sweeps.worker.Trial`: W
warm workers writing its curve under <storage>/<name>/curves/, as sweep trials do), so the cluster,
gang placement, retries and `ablate report` all work as for sweeps. Tune asks the searcher for
a trial whenever it has room; the searcher answers with the next probe, None while the search
waits for results, or FINISHED once it has its answer or has spent its budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Callback
from ray.tune.search import Searcher

from ablate.results.curves import curve_path, final_loss
from ablate.sweeps.search.method import Probe, StepSearch, Verdict
from ablate.sweeps.search.spec import SearchSpec
from ablate.sweeps.search.study import curve_loss

OnProbe = Callable[[Probe, str, "float | None", "Verdict | None"], None]


class StudySearcher(Searcher):
    """A Tune searcher whose whole state is an Optuna study in an RDB storage: Tune's own
    searcher checkpoints (pickles, in the sweep's folder) hold nothing, and nothing of them is
    read back; a resumed run reopens the study instead."""

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:  # the Tuner pickles its config; the study stays
        return {"_metric": self._metric, "_mode": self._mode}


class StepSearcher(StudySearcher):
    """Tune's side of a StepSearch. Its state is the Optuna study, so Tune's own searcher
    checkpoints are skipped; a step search resumes from the study, not from Tuner.restore.

    A probe's loss is read from its curve, the record every other command reads (Tune's last
    result can miss the final report, which Train forwards through a queue); the result is
    the fallback where the driver cannot see the curves."""

    def __init__(self, search: StepSearch, storage: Path, sweep: str,
                 on_probe: OnProbe | None = None):
        super().__init__(metric="val_loss", mode="min")
        self.search, self.storage, self.sweep, self.on_probe = search, storage, sweep, on_probe
        self.probes: dict[str, Probe] = {}  # Tune trial id -> probe
        self.failed: list[str] = []

    # Ray annotates suggest as Optional[Dict], but its docs and SearchGenerator take Searcher.FINISHED.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # pyright: ignore[reportIncompatibleMethodOverride]
        if self.failed or self.search.finished:
            return Searcher.FINISHED  # after a failure, let the user look before spending more
        probe = self.search.ask(trial_id=trial_id)
        if probe is None:
            return None
        self.probes[trial_id] = probe
        if self.on_probe:
            self.on_probe(probe, trial_id, None, None)
        return {"num_iterations": probe.steps, "seed": probe.seed}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        probe = self.probes.pop(trial_id, None)
        if probe is None:
            return
        r = result or {}
        loss = curve_loss(curve_path(self.storage, self.sweep, trial_id))
        if loss is None and not error:
            loss = final_loss(r)  # the last report: a curve row's keys
        if loss is None:
            self.failed.append(trial_id)
        verdict = self.search.tell(probe.number, loss)
        if self.on_probe:
            self.on_probe(probe, trial_id, loss, verdict)


class ResultFeed(Callback):
    """Each validation report of a probe, as Tune hands it to the driver, to
    `on_result(trial_id, result)`: the log's progress within a probe."""

    def __init__(self, on_result: Callable[[str, dict], None] | None):
        self.on_result = on_result

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.on_result is not None:
            self.on_result(trial.trial_id, result)

    def __reduce__(self):  # the Tuner pickles its callbacks; a live log is not for the file
        return (ResultFeed, (None,))


def run_search(spec: SearchSpec, storage: Path, data: Path, search: StepSearch,
               on_probe: OnProbe | None = None,
               on_result: Callable[[str, dict], None] | None = None) -> StepSearcher:
    """Run probes on the Ray this process is connected to until the search is finished;
    `on_probe` hears of each probe's start and end, `on_result` of each validation report."""
    from ablate.sweeps import tracking
    from ablate.sweeps.tuner import concurrent_trials, trainable, trial_settings

    storage = storage.resolve()
    sweep = spec.sweep
    settings = trial_settings(sweep, storage, data)
    searcher = StepSearcher(search, storage, sweep.name, on_probe)
    tuner = tune.Tuner(
        trainable(settings),
        param_space={"preset": sweep.preset, **sweep.fixed},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1, reuse_actors=True,
            max_concurrent_trials=sweep.max_concurrent_trials or concurrent_trials(sweep)),
        run_config=tune.RunConfig(name="search", storage_path=str(storage / sweep.name),
                                  verbose=0, callbacks=[ResultFeed(on_result), *tracking.callbacks(
                                      sweep.tracking, sweep.name, str(storage / sweep.name))]),
    )
    tuner.fit()
    return searcher
