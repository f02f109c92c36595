"""The driver's own record of its trials, `<sweep>/trials.json`: each trial's state (the
words of core/states.py), config (its axes and seed) and step budget, written as states
change.

`ablate status` reads it, with the curves; `ablate resume` reads which trials early stopping
ended. Tune keeps a state of its own, but pickles parts of it (a sweep folder must never run
code as its reader) and saves it only every ten seconds or so. This file is plain JSON, at
most `every` seconds behind, and a stopped trial is written at once: a resume must not train
it again.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from ablate.core import states
from ablate.core.fields import coordinates_of
from ablate.sweeps.spec import step_budget
from ablate.sweeps.storage import trial_states, write_trial_states


class TrialLedger(Callback):
    """Tune's trial events -> trials.json (rewritten whole: at most once per `every` seconds,
    and at once for a stopped trial and at the end)."""

    def __init__(self, folder: str, axes: list[str], every: float = 1.0, clock=time.monotonic):
        self.folder, self.axes, self.every, self.clock = folder, axes, every, clock
        self.trials: dict[str, dict[str, Any]] = trial_states(folder)  # earlier sessions too
        self.dirty = False
        self.written = -float("inf")

    def record(self, trial, state: str, at_once: bool = False) -> None:
        entry = self.trials.get(trial.trial_id)
        if entry is not None and entry["state"] == state:
            return
        if entry is None:
            entry = self.trials[trial.trial_id] = {
                "config": coordinates_of(trial.config, self.axes),
                "num_iterations": step_budget(trial.config)}
        entry["state"] = state
        self.dirty = True
        if at_once or self.clock() - self.written >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.dirty:
            write_trial_states(self.folder, self.trials)
            self.dirty, self.written = False, self.clock()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.record(trial, states.STARTING)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.record(trial, states.RUNNING)

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = states.ended_state((trial.last_result or {}).get("status"))
        self.record(trial, state, at_once=state == states.STOPPED)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.record(trial, states.FAILED)

    def on_step_end(self, iteration, trials, **info):
        if self.dirty and self.clock() - self.written >= self.every:
            self.flush()

    def on_experiment_end(self, trials, **info):
        """Trials still active when Tune ends (Ctrl-C) were interrupted, not running."""
        for t in trials:
            entry = self.trials.get(t.trial_id)
            if entry is not None and entry["state"] in states.ACTIVE:
                entry["state"] = states.INTERRUPTED
                self.dirty = True
        self.flush()
