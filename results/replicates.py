"""Replicates: the independent runs behind a config's statistics.

A config's n is the number of distinct seeds among its completed trials, not the number of
trials. Two completed trials of the same config and the same seed (a sweep run twice under
two names, a storage copied next to itself) are one replicate: their final loss and time
are averaged, and the duplication is reported so that nobody mistakes it for evidence. A
trial with no seed (an imported record log) is its own replicate. When `--by` pools
configs, trials of different configs stay different replicates even with equal seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Replicates:
    """Completed trials (`members`, trial indices) grouped into replicates."""

    members: np.ndarray  # the completed trials, ascending
    of_member: np.ndarray  # member -> replicate
    config: np.ndarray  # replicate -> config
    seed: list[Any]  # replicate -> seed (None: a seedless trial)
    size: np.ndarray  # replicate -> trials in it

    def __len__(self) -> int:
        return len(self.config)

    def mean(self, per_member: np.ndarray) -> np.ndarray:
        """Per replicate, the mean of a per-member value (a lone trial keeps its value)."""
        total = np.bincount(self.of_member, weights=per_member, minlength=len(self))
        return np.where(self.size == 1, total, total / np.maximum(self.size, 1))

    def nanmean(self, per_member: np.ndarray) -> np.ndarray:
        """Per replicate, the mean over members with a finite value (NaN if none)."""
        ok = np.isfinite(per_member)
        total = np.bincount(self.of_member[ok], weights=per_member[ok], minlength=len(self))
        count = np.bincount(self.of_member[ok], minlength=len(self))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count == 1, total, total / count)


@dataclass(frozen=True)
class Duplicate:
    """Completed trials of one config identity with one seed, counted as one replicate."""

    config: int
    seed: Any
    trials: list[int]  # trial indices

    def to_dict(self, names: Sequence[str], files: Sequence[str]) -> dict[str, Any]:
        return {"config": self.config + 1, "seed": self.seed,
                "trials": [names[t] for t in self.trials],
                "files": [files[t] for t in self.trials]}


def replicates_of(members: np.ndarray, identity: np.ndarray, config: np.ndarray,
                  seeds: Sequence[Any]) -> tuple[Replicates, list[Duplicate]]:
    """Group completed trials into replicates: same config identity and same seed.

    Replicates are numbered in the order of their first trial, so that without duplicates
    replicate i is member i (the bootstrap then draws exactly as over trials).
    """
    position: dict[Any, int] = {}
    of_member = np.empty(len(members), np.int64)
    for i, t in enumerate(members):
        seed = seeds[t]
        key = ("trial", int(t)) if seed is None else (int(identity[t]), seed)
        of_member[i] = position.setdefault(key, len(position))
    count = len(position)
    size = np.bincount(of_member, minlength=count)
    first = np.full(count, -1, np.int64)
    first[of_member[::-1]] = members[::-1]  # the earliest member of each replicate
    reps = Replicates(members=members, of_member=of_member,
                      config=config[first] if count else np.zeros(0, np.int64),
                      seed=[seeds[int(t)] for t in first], size=size)
    repeated = size[of_member] > 1
    grouped: dict[int, list[int]] = {}
    for r, t in zip(of_member[repeated], members[repeated]):
        grouped.setdefault(int(r), []).append(int(t))
    duplicates = [Duplicate(config=int(reps.config[r]), seed=reps.seed[r], trials=trials)
                  for r, trials in sorted(grouped.items())]
    return reps, duplicates
