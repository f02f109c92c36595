"""Seed statistics per config: the summary and one-sided t-test that record claims use.

Vectorised over groups (one pass for all configs) but computed in the same order of
operations as `scipy.stats.ttest_1samp(x, target, alternative='less')`, so that the
numbers a user checks by hand with scipy agree to the last few bits.
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
    n, mean, var = _moments(values, groups, n_groups)
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
    n, mean, var = _moments(values, groups, n_groups)
    se = np.sqrt(var / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - target) / se
    df = (n - 1).astype(np.float64)
    p = special.stdtr(df, t)
    upper = special.stdtrit(df, 1 - alpha) * se + mean
    return TTest(target=float(target), alpha=float(alpha), t=t, p=p, upper=upper,
                 reject=np.nan_to_num(p, nan=1.0) < alpha)


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


def _moments(values: np.ndarray, groups: np.ndarray,
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
