"""Time to target: when a loss-vs-time curve first reaches the target loss.

Validation points are sparse (every few hundred steps), so the first point at or below the
target overstates the time; the crossing is interpolated linearly between the two points
that bracket it. A curve that dips below the target and comes back up still counts its
first crossing: that is when the target was reached.
"""

from __future__ import annotations

import numpy as np


def time_to_target(offsets: np.ndarray, time_s: np.ndarray, loss: np.ndarray,
                   target: float) -> np.ndarray:
    """Per curve (flat layout, see trials.Trials), the interpolated time; NaN = never.

    A curve already at or below the target at its first point reports that point's time;
    a crossing exactly at a point reports that point's time, exactly.
    """
    starts, ends = offsets[:-1], offsets[1:]
    out = np.full(len(starts), np.nan)
    hits = _entries(starts, loss <= target)  # NaN compares False: never a hit
    if len(hits) == 0:
        return out
    nxt = np.searchsorted(hits, starts)  # first hit at or after each curve's start
    first = hits[np.minimum(nxt, len(hits) - 1)]
    reached = (nxt < len(hits)) & (first < ends)
    i = first[reached]
    prev = np.maximum(i - 1, 0)
    t0, t1 = time_s[prev], time_s[i]
    l0, l1 = loss[prev], loss[i]
    bracketed = (i > starts[reached]) & np.isfinite(l0)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = t1 - (target - l1) * (t1 - t0) / (l0 - l1)  # l0 > target >= l1
    out[reached] = np.where(bracketed, crossing, t1)
    return out


def _entries(starts: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Sorted indices where a curve enters the region at or below the target: a point below
    whose previous point is not, or a curve's first point if below. A curve's first hit is
    its first entry; a curve mostly below the target has one entry, not a hit per point
    (ten million points: a few thousand indices instead of millions)."""
    if len(below) == 0:
        return np.zeros(0, np.int64)
    entering = np.flatnonzero(below[1:] > below[:-1]) + 1  # True > False: not below, then below
    first = starts[(starts < len(below)) & below[np.minimum(starts, len(below) - 1)]]
    return np.union1d(entering, first)
