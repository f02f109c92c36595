"""Early stopping that respects step budgets.

ASHA and HyperBand assume that a run cut short at step s is a run of budget s. Here it is
not: the lr cools down over the final fraction of *each run's own* num_iterations, so at step
500 a 1000-step run is still at full lr while a 600-step run is nearly done. Comparing them
stops the wrong trials. `SameBudgetStopper` compares a trial only with trials of the same
num_iterations, at the same step.

`ablate resume` builds the stopper again from the losses the curves hold (`seed`); which
trials it stopped is in trials.json (sweeps/ledger.py), so a resumed sweep leaves them be.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ray.tune import Stopper
from ray.tune.schedulers import ASHAScheduler

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
