"""The noisy bisection, without Ray: on the benchmark's oracle, and resumed from its study."""

import importlib.util
import math
import sys
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from ablate.sweeps.search.method import FAIL, MORE, PASS, StepSearch, decide
from ablate.sweeps.search.spec import SearchSettings

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "step_search.py"
    spec = importlib.util.spec_from_file_location("bench_step_search", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()
S = SearchSettings(min_steps=10, max_steps=50, granularity=10, target=3.0, seeds_per_probe=3,
                   max_seeds=5, max_trials=100)


def test_decide_is_the_one_sided_t_test():
    assert decide(10, [2.0, 2.1, 1.9], S).decision == PASS
    assert decide(10, [4.0, 4.1, 3.9], S).decision == FAIL
    assert decide(10, [2.9, 3.1, 3.0], S).decision == MORE  # within the noise: more seeds
    assert decide(10, [2.9, 3.1, 3.0, 2.95, 3.05], S).decision == FAIL  # max_seeds, not shown
    assert decide(10, [2.0, 2.1], S).decision == MORE  # fewer than seeds_per_probe
    assert decide(10, [2.0, math.inf, 2.1], S).decision == FAIL  # a diverged run
    v = decide(10, [2.0, 2.0, 2.0], S)  # identical losses: t = -inf decides
    assert v.decision == PASS and v.p == 0.0
    from scipy import stats
    ref = stats.ttest_1samp([2.8, 2.95, 2.9], 3.0, alternative="less")
    v = decide(10, [2.8, 2.95, 2.9], S)
    assert (v.t, v.p, v.n) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), 3)


def test_search_beats_a_grid_on_the_noisy_oracle():
    """The acceptance bar: the true answer (within one step of the grid) in >= 19 of 20
    draws, with fewer than a third of the grid's trials."""
    s = bench.MEDIUM
    right, trials, grid_trials = 0, 0, 0
    for draw in range(20):
        oracle = bench.draw_oracle(draw, s)
        found, grid = bench.run_search(oracle, s), bench.run_grid(oracle, s)
        right += bench.right(found.answer, oracle.truth(s), s)
        assert found.trials < grid.trials / 3
        assert found.probes <= 3 * bench.noiseless_bisection(s)
        trials, grid_trials = trials + found.trials, grid_trials + grid.trials
    assert right >= 19
    assert trials < grid_trials / 3


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), cross=st.floats(0.0, 1.0), granularity=st.sampled_from([1, 5, 125]))
def test_without_noise_it_is_a_plain_bisection(n, cross, granularity):
    s = SearchSettings(min_steps=granularity, max_steps=granularity * n, granularity=granularity,
                       target=3.0, seeds_per_probe=2, max_seeds=4, max_trials=10_000)
    at = s.min_steps + (math.floor(cross * n) - 0.5) * granularity  # between grid points
    search = StepSearch(s, optuna.create_study())
    while not search.finished:
        probes = list(iter(search.ask, None))
        assert probes
        for p in probes:  # loss falls with steps and is the same for every seed
            search.tell(p.number, 3.0 + (at - p.steps) / s.max_steps)
    truth = next((x for x in s.grid if x > at), None)
    assert search.answered and search.answer == truth
    assert len(search.verdicts()) <= bench.noiseless_bisection(s)
    assert all(v.n == 2 for v in search.verdicts())


def test_a_new_search_on_the_same_study_resumes_without_repeating_probes():
    s, oracle = bench.MEDIUM, bench.draw_oracle(3, bench.MEDIUM)
    whole = bench.run_search(oracle, s)
    study = optuna.create_study()
    search, told = StepSearch(s, study), 0
    while told < whole.trials // 2:  # interrupted half-way, with probes still running
        for p in list(iter(search.ask, None)):
            search.tell(p.number, oracle.loss(p.steps, p.seed))
            told += 1
    running = list(iter(search.ask, None))
    assert running
    for t in study.get_trials(states=(TrialState.RUNNING,)):  # what settle() does on resume
        study.tell(t.number, state=TrialState.FAIL)
    resumed = StepSearch(s, study)
    assert resumed.trials == told
    while not resumed.finished:
        for p in list(iter(resumed.ask, None)):
            resumed.tell(p.number, oracle.loss(p.steps, p.seed))
    assert resumed.answer == whole.answer
    done = [(t.params["steps"], t.params["seed"]) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(done) == len(set(done)) == whole.trials
    assert study.user_attrs["answer"] == whole.answer


def test_budget_stops_the_search_and_a_larger_one_continues_it():
    s, oracle = bench.MEDIUM, bench.draw_oracle(5, bench.MEDIUM)
    study = optuna.create_study()
    small = StepSearch(SearchSettings(**{**vars(s), "max_trials": 7}), study)
    while not small.finished:
        for p in list(iter(small.ask, None)):
            small.tell(p.number, oracle.loss(p.steps, p.seed))
    assert small.spent and not small.answered and small.trials == 7
    larger = StepSearch(s, study)
    assert larger.trials == 7 and not larger.finished
    while not larger.finished:
        for p in list(iter(larger.ask, None)):
            larger.tell(p.number, oracle.loss(p.steps, p.seed))
    assert larger.answer == bench.run_search(oracle, s).answer


def test_the_verdicts_studys_best_trial_is_the_answer_and_the_probes_metric_is_named(tmp_path):
    """What optuna-dashboard shows as best: in the probes' study the lowest final loss (named
    so), in the verdicts study the fewest steps that beat the target, the search's answer;
    a search resumed on both studies adds no verdict twice."""
    s, oracle = bench.MEDIUM, bench.draw_oracle(3, bench.MEDIUM)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    probes = optuna.create_study(storage=url, study_name="p", direction="minimize")
    verdicts = optuna.create_study(storage=url, study_name="p:verdicts", direction="minimize")
    search = StepSearch(s, probes, verdicts)
    while not search.finished:
        for p in list(iter(search.ask, None)):
            search.tell(p.number, oracle.loss(p.steps, p.seed))
    assert search.answer is not None
    verdicts = optuna.load_study(storage=url, study_name="p:verdicts")
    assert verdicts.best_trial.params["steps"] == search.answer == verdicts.best_value
    assert verdicts.metric_names == ["steps that beat the target"]
    assert optuna.load_study(storage=url, study_name="p").metric_names == ["final val loss"]
    decided = [v for v in search.verdicts() if v.decision != MORE]
    assert sorted(t.params["steps"] for t in verdicts.trials) == [v.steps for v in decided]
    assert {t.params["steps"]: t.state == TrialState.COMPLETE for t in verdicts.trials} == \
        {v.steps: v.decision == PASS for v in decided}
    StepSearch(s, probes, verdicts)  # resumed: nothing new
    assert len(optuna.load_study(storage=url, study_name="p:verdicts").trials) == len(decided)
