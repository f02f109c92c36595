"""Seed statistics per config: the summary and one-sided t-test that record claims use,
and the two-sided comparison of each config with a baseline.

Vectorised over groups (one pass for all configs) but computed in the same order of
operations as scipy (`ttest_1samp(x, target, alternative='less')`, `ttest_ind(x, y,
equal_var=False)`, `ttest_rel(x, y)` and their `confidence_interval`), so that the numbers
a user checks by hand with scipy agree to the last few bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special


@dataclass(frozen=True)
class Summary:
    """n, mean, median, sample std (ddof=1), min, max: arrays with one entry per group."""

    n: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def at(self, group: int) -> dict[str, Any]:
        return {"n": int(self.n[group]), "mean": float(self.mean[group]),
                "median": float(self.median[group]), "std": float(self.std[group]),
                "min": float(self.min[group]), "max": float(self.max[group])}


@dataclass(frozen=True)
class TTest:
    """H1: the mean is below `target`. `upper` bounds the mean at confidence 1 - alpha."""

    target: float
    alpha: float
    t: np.ndarray
    p: np.ndarray
    upper: np.ndarray
    reject: np.ndarray  # p < alpha: the mean is below the target with confidence

    def at(self, group: int) -> dict[str, Any]:
        return {"target": self.target, "alpha": self.alpha, "t": float(self.t[group]),
                "p": float(self.p[group]), "upper": float(self.upper[group]),
                "reject": bool(self.reject[group])}


def summarize(values: np.ndarray, groups: np.ndarray | None = None,
              n_groups: int | None = None) -> Summary:
    """Summary of finite `values` per group (`groups[i]` in 0..n_groups-1; one group if None).

    A group with one value has NaN std; an empty group has NaN everywhere and n = 0.
    """
    values, groups, n_groups = _grouped(values, groups, n_groups)
    n, mean, var = moments(values, groups, n_groups)
    ordered = np.append(values[np.lexsort((values, groups))], np.nan)  # [-1]: empty group
    start = np.cumsum(n) - n

    def nth(offset: np.ndarray) -> np.ndarray:
        return ordered[np.where(n > 0, start + offset, -1)]

    median = (nth((n - 1) // 2) + nth(n // 2)) / 2
    return Summary(n=n, mean=mean, median=median, std=np.sqrt(var), min=nth(np.zeros_like(n)),
                   max=nth(n - 1))


def ttest_less(values: np.ndarray, target: float, alpha: float = 0.05,
               groups: np.ndarray | None = None, n_groups: int | None = None) -> TTest:
    """One-sided one-sample t-test of each group's mean against `target` (scipy's formula)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    values, groups, n_groups = _grouped(values, groups, n_groups)
    n, mean, var = moments(values, groups, n_groups)
    se = np.sqrt(var / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - target) / se
    df = (n - 1).astype(np.float64)
    p = special.stdtr(df, t)
    upper = special.stdtrit(df, 1 - alpha) * se + mean
    return TTest(target=float(target), alpha=float(alpha), t=t, p=p, upper=upper,
                 reject=np.nan_to_num(p, nan=1.0) < alpha)


@dataclass(frozen=True)
class Difference:
    """Two-sided test of a difference of means (group minus baseline), per group.

    `delta` is the difference of the means; `low`, `high` bound it at confidence 1 - alpha;
    t, df and p are the test's. NaN where a side has fewer than 2 values.
    """

    test: str  # "welch" or "paired"
    delta: np.ndarray
    t: np.ndarray
    df: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def at(self, group: int) -> dict[str, Any]:
        return {"test": self.test, "delta": float(self.delta[group]),
                "t": float(self.t[group]), "df": float(self.df[group]),
                "p": float(self.p[group]), "low": float(self.low[group]),
                "high": float(self.high[group])}


def welch(values: np.ndarray, groups: np.ndarray, n_groups: int, base: int,
          alpha: float = 0.05) -> Difference:
    """Each group against group `base`: `scipy.stats.ttest_ind(x, x_base, equal_var=False)`
    and its confidence interval at level 1 - alpha (the base against itself is a 0 delta)."""
    n, mean, var = moments(values, groups, n_groups)
    nb, vb = n[base], var[base]
    with np.errstate(divide="ignore", invalid="ignore"):
        vn1, vn2 = var / n, vb / nb
        df = (vn1 + vn2) ** 2 / (vn1 ** 2 / (n - 1) + vn2 ** 2 / (nb - 1))
        df = np.where(np.isnan(df), 1.0, df)  # both variances 0: any df (scipy's choice)
        denom = np.sqrt(vn1 + vn2)
        delta = mean - mean[base]
        t = delta / denom
    undefined = (n < 2) | (nb < 2)
    df = np.where(undefined, np.nan, df)
    return _two_sided("welch", delta, t, df, denom, alpha, undefined)


def paired(differences: np.ndarray, groups: np.ndarray, n_groups: int,
           alpha: float = 0.05) -> Difference:
    """`scipy.stats.ttest_rel(x, y)` per group, given the paired differences x - y."""
    n, mean, var = moments(differences, groups, n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var / n)
        t = mean / se
    undefined = n < 2
    df = np.where(undefined, np.nan, (n - 1).astype(np.float64))
    return _two_sided("paired", mean, t, df, se, alpha, undefined)


def _two_sided(test: str, delta: np.ndarray, t: np.ndarray, df: np.ndarray, se: np.ndarray,
               alpha: float, undefined: np.ndarray) -> Difference:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    tail = (1 - (1 - alpha)) / 2  # scipy's arithmetic from confidence_level = 1 - alpha
    with np.errstate(invalid="ignore"):
        p = 2 * special.stdtr(df, -np.abs(t))
        low = special.stdtrit(df, tail) * se + delta
        high = special.stdtrit(df, 1 - tail) * se + delta
    nan = np.where(undefined, np.nan, 1.0)
    return Difference(test=test, delta=delta, t=t * nan, df=df, p=p * nan, low=low * nan,
                      high=high * nan)


def mean_ci(summary: Summary, alpha: float = 0.05) -> np.ndarray:
    """Half-width of the two-sided t confidence interval of each mean (NaN below 2 values)."""
    df = (summary.n - 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return special.stdtrit(df, 1 - alpha / 2) * summary.std / np.sqrt(summary.n)


def _grouped(values: np.ndarray, groups: np.ndarray | None,
             n_groups: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        return values, np.zeros(len(values), np.int64), 1
    groups = np.asarray(groups, dtype=np.int64)
    if n_groups is None:
        n_groups = int(groups.max(initial=-1)) + 1
    return values, groups, n_groups


def moments(values: np.ndarray, groups: np.ndarray,
            n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, var with ddof=1) per group, as scipy: mean((x - mean)^2) * n / (n - 1)."""
    n = np.bincount(groups, minlength=n_groups)
    nf = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(groups, weights=values, minlength=n_groups) / nf
        centred = values - mean[groups]
        var = np.bincount(groups, weights=centred * centred, minlength=n_groups) / nf
        var = var * (nf / (nf - 1))
    return n, mean, var
