"""Pareto frontiers of training time against loss, both minimised.

Two frontiers: over configs (mean time, mean final loss across seeds), with the
probability that a config stays non-dominated when its seeds are resampled; and over every
validation point of every curve, i.e. the best loss seen within any time budget.
"""

from __future__ import annotations

from typing import cast

import numpy as np


def nondominated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points that no other point dominates, along the last axis (batched).

    p dominates q when p is no worse on both axes and better on one; equal points do not
    dominate each other. NaN points are never on the frontier. Sorting by (x, y) leaves
    only earlier points able to dominate a point: O(n log n) instead of all pairs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    valid = ~(np.isnan(x) | np.isnan(y))
    x, y = np.where(valid, x, np.inf), np.where(valid, y, np.inf)
    order = np.argsort(x, axis=-1)  # the (x, y) order when no two x are equal, the usual case
    sx = np.take_along_axis(x, order, -1)
    ties = bool((sx[..., 1:] == sx[..., :-1]).any())
    if ties:  # y breaks them, then the index
        order = np.lexsort((y, x), axis=-1)
        sx = np.take_along_axis(x, order, -1)
    sy = np.take_along_axis(y, order, -1)
    running = np.minimum.accumulate(sy, axis=-1)
    before = np.concatenate([np.full_like(sy[..., :1], np.inf), running[..., :-1]], axis=-1)
    if ties:
        # Where the smallest earlier y was first seen: the earliest such point has the least x.
        index = np.broadcast_to(np.arange(sy.shape[-1]), sy.shape)
        first_at = np.maximum.accumulate(np.where(sy < before, index, 0), axis=-1)
        first_at = np.concatenate([np.zeros_like(first_at[..., :1]), first_at[..., :-1]], axis=-1)
        x_first = np.take_along_axis(sx, first_at, -1)
        dominated = (before < sy) | ((before == sy) & (x_first < sx))
    else:  # every earlier point has a smaller x: one with an equal y dominates too
        dominated = before <= sy
        dominated[..., :1] = False  # the first point's `before` is no point's
    out = np.empty_like(valid)
    np.put_along_axis(out, order, ~dominated, -1)
    return out & valid


def budget_frontier(time: np.ndarray, loss: np.ndarray, bins: int = 4096) -> np.ndarray:
    """Indices of the points forming the best-loss-within-budget step line, by time.

    A point is kept when its loss is strictly below every point at or before its time.
    For large inputs a coarse pass over time bins first drops every point beaten by an
    earlier bin's best (exact, and it avoids sorting millions of points). The passes go
    block by block: no temporary as large as the input is made (with ten million points,
    allocating those took longer than the arithmetic).
    """
    n = len(time)
    if n <= 4 * bins:
        keep = np.flatnonzero(np.isfinite(time) & np.isfinite(loss))
    else:
        low, high = _time_range(time, loss)
        if high > low:
            scale = (bins - 1) / (high - low)
            best = np.full(bins, np.inf)
            for _, t, y in _finite_blocks(time, loss):
                np.minimum.at(best, ((t - low) * scale).astype(np.int64), y)
            earlier = np.concatenate([[np.inf], np.minimum.accumulate(best)[:-1]])
            alive = []
            for start, t, y in _finite_blocks(time, loss, indices=True):
                start = cast(np.ndarray, start)  # indices=True: the points' indices
                alive.append(start[y < earlier[((t - low) * scale).astype(np.int64)]])
            keep = np.concatenate(alive)
        else:
            keep = np.flatnonzero(np.isfinite(time) & np.isfinite(loss))
    t, y = time[keep], loss[keep]
    order = np.lexsort((y, t))
    ls = y[order]
    before = np.concatenate([[np.inf], np.minimum.accumulate(ls)[:-1]])
    return keep[order[ls < before]]


def _time_range(time: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """(least, greatest) time of the finite points. When every time is finite, the whole
    array's: two passes without temporaries (a point whose loss is NaN then widens the bins'
    range, which changes no result)."""
    low, high = float(time.min()), float(time.max())
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    low, high = np.inf, -np.inf
    for _, t, _ in _finite_blocks(time, loss):
        if len(t):
            low, high = min(low, float(t.min())), max(high, float(t.max()))
    return low, high


_BLOCK = 1 << 16  # points a block: its temporaries stay in the CPU's cache


def _finite_blocks(time: np.ndarray, loss: np.ndarray, indices: bool = False):
    """(index of each point or the block's first index, times, losses) of the finite
    points, block by block."""
    for start in range(0, len(time), _BLOCK):
        t, y = time[start:start + _BLOCK], loss[start:start + _BLOCK]
        if np.isfinite(t.sum() + y.sum()):  # all finite, the usual block: a sum is one pass
            yield (start + np.arange(len(t)) if indices else start), t, y
        else:
            where = np.flatnonzero(np.isfinite(t) & np.isfinite(y))
            yield (start + where if indices else start), t[where], y[where]


def p_nondominated(time: np.ndarray, loss: np.ndarray, groups: np.ndarray, n_groups: int,
                   resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Share of bootstrap resamples in which each config's mean point is non-dominated.

    Each resample draws every config's replicates with replacement (a replicate keeps its
    time and loss together) and recomputes the config frontier. NaN for configs with no trials.
    Vectorised in blocks of resamples; the draws depend only on `seed`.
    """
    time, loss, groups = (np.asarray(a) for a in (time, loss, groups))
    order = np.argsort(groups, kind="stable")
    g, t, y = groups[order], time[order], loss[order]
    counts = np.bincount(g, minlength=n_groups)
    present = counts > 0
    out = np.full(n_groups, np.nan)
    if not present.any() or resamples < 1:
        return out
    first = np.cumsum(counts) - counts  # each config's first position in the sorted trials
    starts, base, size = first[present], first[g], counts[g]
    rng = np.random.default_rng(seed)
    wins = np.zeros(int(present.sum()))
    block = max(1, 500_000 // max(1, len(g)))  # draws a block: its arrays stay in the cache
    for done in range(0, resamples, block):
        draws = rng.random((min(block, resamples - done), len(g)))
        draws *= size
        pick = draws.astype(np.int64)
        pick += base
        mean_t = np.add.reduceat(t[pick], starts, axis=1) / counts[present]
        mean_l = np.add.reduceat(y[pick], starts, axis=1) / counts[present]
        wins += nondominated(mean_t, mean_l).sum(axis=0)
    out[present] = wins / resamples
    return out
