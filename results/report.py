"""The report: every number the CLI shows, per config, computed once from loaded rows.

Only completed trials enter the loss/time statistics, time to target and Pareto
frontiers: a diverged or failed trial has no valid final loss, and a running one has not
reached its final step (its learning-rate schedule is not finished, so its last loss is not
that of a shorter run). They are counted per config and shown apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ablate.results.pareto import budget_frontier, nondominated, p_nondominated
from ablate.results.stats import mean_ci, summarize, ttest_less
from ablate.results.target import time_to_target
from ablate.results.trials import DEFAULT_BY, OUTCOMES, Groups, Trials, group_configs, trials_from


@dataclass(frozen=True)
class ConfigResult:
    key: dict[str, Any]  # the config: value of each `by` column
    counts: dict[str, int]  # trials per outcome (completed, running, diverged, failed)
    loss: dict[str, Any]  # summary of final val loss over completed seeds
    time: dict[str, Any]  # summary of final training time (s) over completed seeds
    loss_ci: float  # half-width of the two-sided 1-alpha t interval of the mean loss
    time_ci: float
    pareto: bool  # (mean time, mean loss) is non-dominated among configs
    p_nondominated: float  # share of bootstrap resamples in which it is non-dominated
    ttest: dict[str, Any] | None  # one-sided t-test of the mean loss against the target
    to_target: dict[str, Any] | None  # reached/of + summary of times of those that reached


@dataclass(frozen=True)
class BudgetPoint:
    """A step of the best-loss-within-budget line, and the curve point it comes from."""

    time_s: float
    val_loss: float
    sweep: str
    trial_id: str
    step: int
    config: int


@dataclass(frozen=True)
class Report:
    by: tuple[str, ...]
    target: float | None
    alpha: float
    resamples: int
    configs: list[ConfigResult]
    budget: list[BudgetPoint]
    trials: Trials
    groups: Groups
    info: pa.Table  # trials.info plus a column per `by` key

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return jsonable({
            "by": list(self.by), "target": self.target, "alpha": self.alpha,
            "resamples": self.resamples,
            "configs": [asdict(c) for c in self.configs],
            "budget_frontier": [asdict(b) for b in self.budget],
        })


def build_report(table: pa.Table, target: float | None = None, alpha: float = 0.05,
                 by: Sequence[str] = DEFAULT_BY, resamples: int = 1000,
                 seed: int = 0) -> Report:
    """Trials, configs and all statistics of the loaded rows (see module doc)."""
    trials = trials_from(table)
    groups, info = group_configs(trials.info, by)
    n = len(groups)
    done = trials.outcome == "completed"
    g = groups.index[done]
    loss, time = trials.final_loss[done], trials.final_time_s[done]
    loss_sum, time_sum = summarize(loss, g, n), summarize(time, g, n)
    loss_ci, time_ci = mean_ci(loss_sum, alpha), mean_ci(time_sum, alpha)
    frontier = nondominated(time_sum.mean, loss_sum.mean)
    p_nd = p_nondominated(time, loss, g, n, resamples=resamples, seed=seed)
    counts = {o: np.bincount(groups.index[trials.outcome == o], minlength=n) for o in OUTCOMES}
    ttest = reached = ttt_sum = None
    if target is not None:
        ttest = ttest_less(loss, target, alpha, g, n)
        ttt = time_to_target(trials.offsets, trials.time_s, trials.val_loss, target)[done]
        hit = ~np.isnan(ttt)
        reached = np.bincount(g[hit], minlength=n)
        ttt_sum = summarize(ttt[hit], g[hit], n)

    configs = [
        ConfigResult(
            key=groups.key_dict(i),
            counts={o: int(counts[o][i]) for o in OUTCOMES},
            loss=loss_sum.at(i), time=time_sum.at(i),
            loss_ci=float(loss_ci[i]), time_ci=float(time_ci[i]),
            pareto=bool(frontier[i]), p_nondominated=float(p_nd[i]),
            ttest=None if ttest is None else ttest.at(i),
            to_target=None if ttt_sum is None else
            {"reached": int(reached[i]), "of": int(counts["completed"][i]), **ttt_sum.at(i)},
        )
        for i in range(n)
    ]
    return Report(by=groups.by, target=target, alpha=alpha, resamples=resamples,
                  configs=configs, budget=_budget(trials, groups), trials=trials,
                  groups=groups, info=info)


def _budget(trials: Trials, groups: Groups) -> list[BudgetPoint]:
    points = budget_frontier(trials.time_s, trials.val_loss)
    trial_of = np.searchsorted(trials.offsets, points, side="right") - 1
    sweeps = trials.info["sweep"].to_pylist()
    ids = trials.info["trial_id"].to_pylist()
    return [BudgetPoint(time_s=float(trials.time_s[p]), val_loss=float(trials.val_loss[p]),
                        sweep=sweeps[t], trial_id=ids[t], step=int(trials.step[p]),
                        config=int(groups.index[t]))
            for p, t in zip(points, trial_of)]


def jsonable(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
