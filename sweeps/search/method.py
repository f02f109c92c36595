"""The step search itself: a noisy bisection over the step grid, its memory an Optuna study.

The final loss falls with the step count (noisily, but monotonically in expectation), so the
fewest passing steps lie between the largest step count known to fail and the smallest known
to pass: probe the midpoint of that bracket. A step count *passes* when a one-sided one-sample
t-test says its mean final loss is below the target at `alpha`; it *fails* when the same test
says the mean is above, or when `max_seeds` seeds have not shown it below. In between it gets
one more seed at a time, so seeds go only where the decision is uncertain. Every step count
uses the same seeds (0, 1, 2, ...): common seeds make neighbouring step counts comparable.

No Ray here: a Tune searcher (sweeps/search/searcher.py) and the benchmark's oracle
(bench/step_search.py) drive the same StepSearch through `ask` and `tell`. Each probe is an
Optuna trial (params `steps`, `seed`; value: the final val loss), enqueued with the chosen
params and asked, so the study records the search as it goes and a new StepSearch on the same
study resumes it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from ablate.results.stats import ttest_less
from ablate.sweeps.search.spec import SearchSettings

PASS, FAIL, MORE = "pass", "fail", "more seeds"


@dataclass(frozen=True)
class Verdict:
    """What the losses at one step count say about the target."""

    steps: int
    n: int
    mean: float
    std: float
    t: float
    p: float  # one-sided: H1 is mean < target
    decision: str  # PASS, FAIL or MORE


def decide(steps: int, losses: list[float], s: SearchSettings) -> Verdict:
    x = np.asarray(losses, dtype=float)
    n = len(x)
    if not np.isfinite(x).all():  # a diverged run never beats the target
        return Verdict(steps, n, math.inf, math.nan, math.nan, math.nan, FAIL)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        return Verdict(steps, n, mean, std, math.nan, math.nan, MORE)
    test = ttest_less(x, s.target, s.alpha)  # identical losses: t = +-inf, which decides correctly
    t, p = float(test.t[0]), float(test.p[0])
    if n < s.seeds_per_probe:
        decision = MORE
    elif p < s.alpha:
        decision = PASS
    elif 1 - p < s.alpha or n >= s.max_seeds:  # 1 - p: the same test with H1 mean > target
        decision = FAIL
    else:
        decision = MORE
    return Verdict(steps, n, mean, std, t, p, decision)


def distributions(s: SearchSettings, seed: int = 0) -> dict[str, BaseDistribution]:
    """A probe's params as Optuna sees them: a step count on the grid, and a seed."""
    return {"steps": IntDistribution(s.min_steps, s.max_steps, step=s.granularity),
            "seed": IntDistribution(0, max(s.max_seeds - 1, seed))}


def _name_metric(study: optuna.Study, name: str) -> None:
    """Name a study's objective where optuna-dashboard shows it (set once)."""
    with warnings.catch_warnings():  # experimental in Optuna, and stable since 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names is None:
            study.set_metric_names([name])


@dataclass(frozen=True)
class Probe:
    number: int  # the Optuna trial's number
    steps: int
    seed: int


class StepSearch:
    """Proposes (steps, seed) probes with `ask` and takes their final losses with `tell`.

    Reads the study's completed trials when made; trials another run left RUNNING are not
    its own (the runner settles them first, see sweeps/search/study.py).

    The probes' study minimises their final val loss (its metric is named so), which is not
    the search's objective: its best trial is a lucky seed. `verdicts`, a second study, holds
    one trial per decided step count, completed with the step count as its value where it
    passes and failed where it fails, so that its best trial (in optuna-dashboard too) is the
    fewest steps that beat the target."""

    def __init__(self, settings: SearchSettings, study: optuna.Study,
                 verdicts: optuna.Study | None = None):
        self.settings, self.study, self.verdict_study = settings, study, verdicts
        self.grid = settings.grid
        self.losses: dict[int, dict[int, float]] = {steps: {} for steps in self.grid}
        self.running: dict[int, tuple[int, int]] = {}  # trial number -> (steps, seed)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            steps, seed = t.params.get("steps"), t.params.get("seed")
            if steps in self.losses and seed is not None and t.value is not None:
                self.losses[steps][seed] = t.value
        self._verdicts = {st: self._decide(st) for st, seen in self.losses.items() if seen}
        _name_metric(study, "final val loss")
        if verdicts is not None:
            _name_metric(verdicts, "steps that beat the target")
            for verdict in self._verdicts.values():
                self._publish(verdict)

    # --- the state, derived from the losses ------------------------------------------------
    def _decide(self, steps: int) -> Verdict:
        return decide(steps, list(self.losses[steps].values()), self.settings)

    def verdicts(self) -> list[Verdict]:
        """Every probed step count's verdict, by step count."""
        return [self._verdicts[st] for st in sorted(self._verdicts)]

    def bracket(self) -> tuple[int, int]:
        """Grid indices (lo, hi) of the bracket: hi the smallest passing step count, lo the
        largest failing one below it (-1 and len(grid) stand for "none yet")."""
        decided = {self.grid.index(st): v.decision for st, v in self._verdicts.items()}
        hi = min((i for i, d in decided.items() if d == PASS), default=len(self.grid))
        lo = max((i for i, d in decided.items() if d == FAIL and i < hi), default=-1)
        return lo, hi

    @property
    def answered(self) -> bool:
        lo, hi = self.bracket()
        return hi - lo <= 1

    @property
    def answer(self) -> int | None:
        """The fewest passing steps, once answered; None: no step count in range passes."""
        lo, hi = self.bracket()
        return self.grid[hi] if hi - lo <= 1 and hi < len(self.grid) else None

    @property
    def trials(self) -> int:
        """Trials spent: completed ones (including earlier runs') and running ones."""
        return sum(map(len, self.losses.values())) + len(self.running)

    @property
    def spent(self) -> bool:
        return self.trials >= self.settings.max_trials

    @property
    def finished(self) -> bool:
        return not self.running and (self.answered or self.spent)

    # --- ask and tell ------------------------------------------------------------------------
    def next_steps(self) -> int | None:
        """The step count to probe next; None to wait for running probes (or when done)."""
        if self.answered or self.spent:
            return None
        lo, hi = self.bracket()
        busy = {st for st, _ in self.running.values()}
        opened = [i for i in range(lo + 1, hi) if self.losses[self.grid[i]] or self.grid[i] in busy]
        mid = (lo + hi) // 2
        steps = self.grid[min(opened, key=lambda i: abs(i - mid)) if opened else mid]
        done, running = len(self.losses[steps]), sum(st == steps for st, _ in self.running.values())
        if done + running < self.settings.seeds_per_probe:
            return steps  # the first seeds of a step count go out together
        return None if running else steps  # then one at a time, while undecided

    def ask(self, **user_attrs) -> Probe | None:
        """The next probe, recorded in the study as a running trial; None: nothing to run now."""
        steps = self.next_steps()
        if steps is None:
            return None
        used = set(self.losses[steps]) | {sd for st, sd in self.running.values() if st == steps}
        seed = next(i for i in range(len(used) + 1) if i not in used)
        params = {"steps": steps, "seed": seed}
        self.study.enqueue_trial(params, user_attrs=user_attrs)
        trial = self.study.ask(distributions(self.settings, seed))
        while trial.params != params:  # a stale enqueued trial from an interrupted run
            self.study.tell(trial, state=TrialState.FAIL)
            trial = self.study.ask(distributions(self.settings, seed))
        self.running[trial.number] = (steps, seed)
        return Probe(trial.number, steps, seed)

    def tell(self, number: int, loss: float | None) -> Verdict:
        """A probe's final loss (inf: diverged; None: the trial failed, so it is asked again)."""
        steps, seed = self.running.pop(number)
        if loss is None or math.isnan(loss):
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, loss)
            self.losses[steps][seed] = loss
            self._verdicts[steps] = self._decide(steps)
            self._publish(self._verdicts[steps])
        lo, hi = self.bracket()  # for optuna-dashboard: where the search stands
        self.study.set_user_attr("bracket", [self._at(lo), self._at(hi)])
        if self.answered:
            self.study.set_user_attr("answer", self.answer)
        return self._verdicts.get(steps) or self._decide(steps)

    def _publish(self, verdict: Verdict) -> None:
        """A decided step count into the verdicts study, once (a decided count gets no more
        probes, so its verdict stays)."""
        if self.verdict_study is None or verdict.decision == MORE:
            return
        if any(t.params.get("steps") == verdict.steps for t in self.verdict_study.get_trials(deepcopy=False)):
            return
        passed = verdict.decision == PASS
        attrs = dict(decision=verdict.decision, seeds=verdict.n, mean_loss=verdict.mean,
                     p_value=verdict.p, target=self.settings.target)
        self.verdict_study.add_trial(create_trial(
            state=TrialState.COMPLETE if passed else TrialState.FAIL,
            value=float(verdict.steps) if passed else None, params={"steps": verdict.steps},
            distributions={"steps": distributions(self.settings)["steps"]},
            user_attrs={k: v for k, v in attrs.items() if not (isinstance(v, float) and math.isnan(v))}))

    def _at(self, i: int) -> int | None:
        return self.grid[i] if 0 <= i < len(self.grid) else None
