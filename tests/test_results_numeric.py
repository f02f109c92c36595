"""results' numbers against references: scipy for the statistics, brute force for frontiers,
hand-made curves for time to target."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ablate.results.pareto import budget_frontier, nondominated, p_nondominated
from ablate.results.stats import mean_ci, summarize, ttest_less
from ablate.results.target import time_to_target

TOL = dict(rtol=1e-12, atol=1e-12)


def brute_nondominated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x), bool)
    for i in range(len(x)):
        if np.isnan(x[i]) or np.isnan(y[i]):
            continue
        out[i] = not any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i])
                         for j in range(len(x)))
    return out


def random_groups(rng: np.random.Generator, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.integers(2, 25, n_groups)
    groups = rng.permutation(np.repeat(np.arange(n_groups), sizes))
    values = 2.92 + rng.normal(0, 0.01, len(groups)) + rng.normal(0, 0.003, n_groups)[groups]
    return values, groups


@pytest.mark.parametrize("seed", range(5))
def test_summary_and_ttest_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values, groups = random_groups(rng, 12)
    alpha = [0.05, 0.01, 0.1, 0.2, 0.5][seed]
    summary = summarize(values, groups, 12)
    test = ttest_less(values, 2.92, alpha, groups, 12)
    for g in range(12):
        x = values[groups == g]
        ref = sps.ttest_1samp(x, 2.92, alternative="less")
        np.testing.assert_allclose(
            [summary.n[g], summary.mean[g], summary.median[g], summary.std[g],
             summary.min[g], summary.max[g]],
            [len(x), np.mean(x), np.median(x), np.std(x, ddof=1), x.min(), x.max()], **TOL)
        np.testing.assert_allclose(
            [test.t[g], test.p[g], test.upper[g]],
            [ref.statistic, ref.pvalue, ref.confidence_interval(1 - alpha).high], **TOL)
        assert test.reject[g] == (ref.pvalue < alpha)


def test_ttest_decides_both_ways_and_single_value_is_undefined() -> None:
    below = ttest_less(np.array([2.910, 2.912, 2.915, 2.911]), 2.92)
    above = ttest_less(np.array([2.925, 2.921, 2.930]), 2.92)
    assert below.reject[0] and not above.reject[0]
    one = ttest_less(np.array([2.5]), 2.92)
    assert np.isnan(one.p[0]) and not one.reject[0]
    summary = summarize(np.array([2.5]))
    assert summary.n[0] == 1 and summary.mean[0] == 2.5 and np.isnan(summary.std[0])


def test_empty_group_is_nan() -> None:
    summary = summarize(np.array([1.0, 2.0]), np.array([0, 0]), 2)
    assert summary.n.tolist() == [2, 0]
    assert np.isnan([summary.mean[1], summary.median[1], summary.min[1]]).all()


def test_mean_ci_is_scipys_two_sided_interval() -> None:
    values, groups = random_groups(np.random.default_rng(7), 5)
    half = mean_ci(summarize(values, groups, 5), alpha=0.1)
    for g in range(5):
        ci = sps.ttest_1samp(values[groups == g], 0).confidence_interval(0.9)
        np.testing.assert_allclose(half[g], (ci.high - ci.low) / 2, rtol=1e-11)


@pytest.mark.parametrize("seed", range(20))
def test_frontier_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # Small integer ranges make ties (equal x, equal y, identical points) common.
    x = rng.integers(0, 6, n).astype(float)
    y = rng.integers(0, 6, n).astype(float) if seed % 2 else rng.random(n)
    x[rng.random(n) < 0.1] = np.nan
    assert np.array_equal(nondominated(x, y), brute_nondominated(x, y))


def test_frontier_is_batched_along_the_last_axis() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (30, 12)).astype(float)
    y = rng.integers(0, 5, (30, 12)).astype(float)
    mask = nondominated(x, y)
    for row in range(30):
        assert np.array_equal(mask[row], brute_nondominated(x[row], y[row]))


@pytest.mark.parametrize("bins", [8, 4096])
def test_budget_frontier_equals_brute_force(bins: int) -> None:
    rng = np.random.default_rng(bins)
    time = rng.integers(0, 60, 400).astype(float)  # > 4 * 8 points: the binned pass runs
    loss = rng.integers(0, 80, 400) / 10 + 3
    loss[::37] = np.nan
    picked = budget_frontier(time, loss, bins=bins)
    assert np.all(np.diff(time[picked]) > 0) and np.all(np.diff(loss[picked]) < 0)
    expected = {(t, y) for t, y, keep in zip(time, loss, brute_nondominated(time, loss)) if keep}
    assert set(zip(time[picked], loss[picked])) == expected


def test_p_nondominated_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(6), [3, 4, 5, 2, 3, 1])
    time = 100 + 10 * groups + rng.normal(0, 4, len(groups))
    loss = 3.0 - 0.01 * groups + rng.normal(0, 0.01, len(groups))
    p = p_nondominated(time, loss, groups, 7, resamples=300, seed=5)

    draws = np.random.default_rng(5)  # same stream: one row of draws per resample
    counts = np.bincount(groups, minlength=7)
    wins = np.zeros(6)
    for _ in range(300):
        u = draws.random(len(groups))
        means = []
        for g in range(6):
            members = np.flatnonzero(groups == g)
            pick = members[(u[members] * len(members)).astype(int)]
            means.append((time[pick].mean(), loss[pick].mean()))
        mx, my = np.array(means).T
        wins += brute_nondominated(mx, my)
    np.testing.assert_allclose(p[:6], wins / 300)
    assert np.isnan(p[6]) and counts[6] == 0
    assert 0 < p[:6].max() <= 1


def test_p_nondominated_separates_clear_cases() -> None:
    groups = np.repeat([0, 1], 4)
    time = np.array([10, 10.1, 9.9, 10, 20, 20.2, 19.8, 20.0])
    loss = np.array([3.0, 3.01, 2.99, 3.0, 3.5, 3.51, 3.49, 3.5])  # config 1: slower, worse
    p = p_nondominated(time, loss, groups, 2, resamples=200, seed=0)
    assert p.tolist() == [1.0, 0.0]


def flat(*curves: tuple[list[float], list[float]]) -> tuple[np.ndarray, ...]:
    """Hand-made (times, losses) curves in the flat layout: offsets, time, loss."""
    offsets = np.cumsum([0] + [len(t) for t, _ in curves])
    time = np.concatenate([np.asarray(t, float) for t, _ in curves])
    loss = np.concatenate([np.asarray(y, float) for _, y in curves])
    return offsets, time, loss


def test_time_to_target_interpolates_between_bracketing_points() -> None:
    curve = ([0, 10, 20, 30], [5.0, 4.0, 3.0, 2.0])
    assert time_to_target(*flat(curve), 3.5)[0] == pytest.approx(15.0, abs=1e-12)
    assert time_to_target(*flat(curve), 2.2)[0] == pytest.approx(28.0, abs=1e-12)


def test_time_to_target_never_reached_is_nan() -> None:
    result = time_to_target(*flat(([0, 10, 20], [5.0, 4.0, 3.0])), 2.9)
    assert np.isnan(result[0])


def test_time_to_target_crossing_exactly_at_a_point() -> None:
    result = time_to_target(*flat(([0, 10, 20, 30], [5.0, 4.0, 3.0, 2.0])), 3.0)
    assert result[0] == 20.0


def test_time_to_target_takes_the_first_crossing_when_loss_goes_back_up() -> None:
    curve = ([0, 10, 20, 30, 40], [5.0, 3.0, 4.0, 2.5, 2.0])
    assert time_to_target(*flat(curve), 3.5)[0] == pytest.approx(7.5, abs=1e-12)


def test_time_to_target_keeps_curves_apart() -> None:
    offsets, time, loss = flat(([0, 10], [5.0, 4.0]),  # never
                               ([0, 10], [3.0, 2.0]),  # below at its first point
                               ([0, 10, 20], [6.0, np.nan, 2.0]),  # NaN before the crossing
                               ([0, 5], [4.0, 3.0]))
    result = time_to_target(offsets, time, loss, 3.5)
    assert np.isnan(result[0])
    assert result[1] == 0.0  # not interpolated with the previous curve's last point
    assert result[2] == 20.0
    assert result[3] == pytest.approx(2.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_frontier_without_ties_in_time_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.permutation(30).astype(float)  # no two times alike: the frontier's quicker path
    y = rng.integers(0, 5, 30).astype(float)  # equal losses: the quicker one dominates
    y[rng.random(30) < 0.2] = np.inf
    assert np.array_equal(nondominated(x, y), brute_nondominated(x, y))
    batched = nondominated(np.stack([x, x[::-1]]), np.stack([y, y]))
    assert np.array_equal(batched[1], brute_nondominated(x[::-1], y))


def test_budget_frontier_block_by_block_equals_one_sort() -> None:
    rng = np.random.default_rng(7)
    n = 3 * (1 << 16) + 5  # several blocks of the coarse pass
    time = np.round(rng.random(n) * 1e4, 1)
    loss = np.round(3 + 5 * rng.random(n) / (1 + time / 100), 3)
    loss[n // 2] = np.nan  # one block with a point to leave out, the others all finite

    def one_sort(time: np.ndarray, loss: np.ndarray) -> list[tuple[float, float]]:
        keep = np.flatnonzero(np.isfinite(time) & np.isfinite(loss))
        order = keep[np.lexsort((loss[keep], time[keep]))]
        best, out = np.inf, []
        for i in order:
            if loss[i] < best:
                best = loss[i]
                out.append((time[i], loss[i]))
        return out

    for bad_time in (None, np.inf, np.nan):  # every time finite: the range in one pass
        if bad_time is not None:
            time[10] = bad_time
        picked = budget_frontier(time, loss)
        assert list(zip(time[picked], loss[picked])) == one_sort(time, loss)


def test_time_to_target_equals_a_loop_over_each_curve() -> None:
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 7, 400)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    loss = rng.choice([1.0, 2.0, 2.5, 3.0, np.nan], offsets[-1])
    time = np.cumsum(rng.random(offsets[-1]))
    for target in (0.5, 2.0, 2.5, 3.0):
        expected = []
        for start, end in zip(offsets[:-1], offsets[1:]):
            hits = [i for i in range(start, end) if loss[i] <= target]
            if not hits:
                expected.append(np.nan)
                continue
            i = hits[0]
            if i == start or not np.isfinite(loss[i - 1]):
                expected.append(time[i])
            else:
                expected.append(time[i] - (target - loss[i]) * (time[i] - time[i - 1])
                                / (loss[i - 1] - loss[i]))
        assert np.array_equal(time_to_target(offsets, time, loss, target), expected,
                              equal_nan=True)
