"""Early stopping that respects step budgets.

ASHA and HyperBand assume that a run cut short at step s is a run of budget s. Here it is
not: the lr cools down over the final fraction of *each run's own* num_iterations, so at step
500 a 1000-step run is still at full lr while a 600-step run is nearly done. Comparing them
stops the wrong trials. `SameBudgetStopper` compares a trial only with trials of the same
num_iterations, at the same step.

`ablate resume` builds the stopper again from the losses the curves hold (`seed`); which
trials it stopped is in trials.json (sweeps/ledger.py), so a resumed sweep leaves them be.

`StopControl` stops the whole sweep when `ablate stop` asks (sweeps/control.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.schedulers import ASHAScheduler

from ablate.sweeps.control import clear_request, stop_request
from ablate.sweeps.spec import EarlyStopping


class SameBudgetStopper(Stopper):
    """Stop a trial whose val loss at step s exceeds the best val loss that any trial of the
    same num_iterations reached at step s by more than `margin`, once s >= `grace_steps`.

    Trials are compared as they report, so a trial can only be judged at steps that another
    same-budget trial reached first; the first trial of each budget always runs to the end.
    """

    def __init__(self, margin: float = 0.1, grace_steps: int = 0):
        self.margin, self.grace_steps = margin, grace_steps
        self.best: dict[tuple[int, int], float] = {}  # (num_iterations, step) -> best val loss

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        step, budget, loss = result.get("step"), result.get("num_iterations"), result.get("val_loss")
        if step is None or budget is None or loss is None or not math.isfinite(loss):
            return False  # not a validation point (or a diverged one: the trainer ends it)
        key = (budget, step)
        best = self.best.get(key, math.inf)
        self.best[key] = min(best, loss)
        return step > 0 and step >= self.grace_steps and loss > best + self.margin

    def stop_all(self) -> bool:
        return False

    def seed(self, points: Iterable[tuple[int, int, float]]) -> SameBudgetStopper:
        """Remember (num_iterations, step, val_loss) points of an earlier session."""
        for budget, step, loss in points:
            if loss is not None and math.isfinite(loss):
                self.best[(budget, step)] = min(self.best.get((budget, step), math.inf), loss)
        return self


def early_stopping(cfg: EarlyStopping | None, longest: int,
                   history: Iterable[tuple[int, int, float]] = ()
                   ) -> tuple[Stopper | None, ASHAScheduler | None]:
    """The spec's [early_stopping] as Tune objects: (stopper, scheduler), at most one set.

    ASHA's time attribute is the reported `step`, not Tune's training_iteration (which
    restarts at 0 after a restore, and counts validation points rather than steps).
    `history`: (num_iterations, step, val_loss) points of earlier sessions, for same_budget
    (ASHA starts its rungs afresh)."""
    if cfg is None:
        return None, None
    if cfg.kind == "same_budget":
        return SameBudgetStopper(cfg.margin, cfg.grace_steps).seed(history), None
    return None, ASHAScheduler(time_attr="step", metric="val_loss", mode="min", max_t=longest,
                               grace_period=max(1, cfg.grace_steps),
                               reduction_factor=cfg.reduction_factor, brackets=cfg.brackets)


class StopControl(Callback, Stopper):
    """`ablate stop` in the driver (sweeps/control.py): reads the folder's stop request at
    most every `every` seconds; as a Tune callback it sees which trials run, as a stopper it
    ends the run once the stop is due, and it holds Tune's scheduler (Tune has no "start no
    more trials": its scheduler picks which pending trial runs next, so while a stop is asked
    it picks none)."""

    def __init__(self, folder: str, every: float = 1.0, clock=time.monotonic):
        self.folder, self.every, self.clock = folder, every, clock
        self.request: dict[str, Any] | None = None
        self.read_at = -float("inf")
        self.running = 0

    def __reduce__(self):  # the Tuner pickles its config (nothing of ours reads it back)
        return (StopControl, (self.folder, self.every))

    def _poll(self) -> dict[str, Any] | None:
        if self.request is None and self.clock() - self.read_at >= self.every:
            self.request, self.read_at = stop_request(self.folder), self.clock()
        return self.request

    @property
    def stopping(self) -> bool:
        return self._poll() is not None

    def hold(self, scheduler):
        """`scheduler` (Tune's FIFO one where the sweep has none), starting no pending trial
        while a stop is asked."""
        if scheduler is None:
            from ray.tune.schedulers import FIFOScheduler
            scheduler = FIFOScheduler()
        pick = scheduler.choose_trial_to_run
        scheduler.choose_trial_to_run = (  # with the signature Tune declares for it
            lambda tune_controller: None if self.stopping else pick(tune_controller))
        return scheduler

    # Callback: which trials hold resources now
    def on_step_begin(self, iteration, trials, **info):
        self.running = sum(1 for t in trials if t.status == "RUNNING")

    def on_experiment_end(self, trials, **info):
        if self.request is not None:
            clear_request(self.folder)

    # Stopper: no trial is stopped on its own; the whole run ends once the stop is due
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        request = self._poll()
        return request is not None and (request["now"] or self.running == 0)
