"""Comparison with a baseline config: is k = 1 better than k = 0, and by how much?

The baseline is chosen by field values (`extra_embeddings=0`, several fields joined by
commas). Every other config gets the difference of its mean final loss and of its mean
training time from the baseline's (config minus baseline), each with a two-sided
confidence interval and p-value: Welch's test always (no equal-variance assumption), and
the paired test as well when both configs ran exactly the same seeds, since a seed fixes
the init and the data order of both runs and pairing removes that noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ablate.core.fields import OUTSIDE_CONFIG, role
from ablate.results.configs import Configs, display, same_value
from ablate.results.errors import InputError
from ablate.results.replicates import Replicates
from ablate.results.stats import Difference, paired, welch


@dataclass(frozen=True)
class BaselineChoice:
    """Field values that pick the baseline config, and where they came from (for messages)."""

    fields: tuple[tuple[str, str], ...]  # (field, value as typed)
    source: str = "baseline"

    @classmethod
    def parse(cls, text: str, source: str = "--baseline") -> BaselineChoice:
        """`KEY=VALUE[,KEY=VALUE...]`; InputError naming `source` if malformed."""
        if not text.isprintable():
            raise InputError(f"{source}: {text!r} has control characters")
        fields = []
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise InputError(f"{source}: expected KEY=VALUE[,KEY=VALUE...], got {text!r}")
            fields.append((key.strip(), value.strip()))
        keys = [k for k, _ in fields]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise InputError(f"{source}: {repeated[0]} is given twice")
        return cls(tuple(fields), source)

    @classmethod
    def of(cls, value: str | Mapping[str, Any] | BaselineChoice,
           source: str = "baseline") -> BaselineChoice:
        """From text, a mapping of field -> value, or a choice already made."""
        if isinstance(value, BaselineChoice):
            return value
        if isinstance(value, str):
            return cls.parse(value, source)
        if not value:
            raise InputError(f"{source}: names no field")
        return cls(tuple((str(k), v if isinstance(v, str) else display(v))
                         for k, v in value.items()), source)

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.fields)


def find_baseline(configs: Configs, choice: BaselineChoice) -> int:
    """The one config matching every field of `choice`; InputError (one line, naming the
    source) for an unknown field, no matching config, or several."""
    known = [f for f in dict.fromkeys(k for key in configs.keys for k in key)]
    for field, _ in choice.fields:
        if field in known:
            continue
        if configs.by is not None:
            raise InputError(f"{choice.source}: {field} is not one of the fields configs are "
                             f"pooled by ({', '.join(configs.by)})")
        if field in OUTSIDE_CONFIG:
            raise InputError(f"{choice.source}: {field} is a {role(field)} field, not part of a "
                             f"config's identity (a config holds all its {field} values)")
        shown = ", ".join(configs.fields or known)
        raise InputError(f"{choice.source}: unknown field {field} (fields that vary: {shown})"
                         if configs.fields else
                         f"{choice.source}: unknown field {field} (known: {shown})")
    matches = [i for i, key in enumerate(configs.keys)
               if all(same_value(key.get(f), v) for f, v in choice.fields)]
    if not matches:
        values = "; ".join(f"{f}: " + ", ".join(sorted({display(k.get(f)) for k in configs.keys}))
                           for f, _ in choice.fields)
        raise InputError(f"{choice.source}: no config has {choice} ({values})")
    if len(matches) > 1:
        names = ", ".join(f"#{i + 1} " + (", ".join(f"{f}={display(configs.keys[i].get(f))}"
                                                     for f in configs.fields) or "")
                          for i in matches[:4])
        raise InputError(f"{choice.source}: {choice} matches {len(matches)} configs ({names}); "
                         "add fields to pick one")
    return matches[0]


@dataclass(frozen=True)
class Comparison:
    """Every config against config `baseline`: Welch always, paired where seeds pair."""

    baseline: int
    alpha: float
    loss: Difference  # Welch
    time: Difference
    loss_paired: Difference  # NaN where the config's seeds do not pair with the baseline's
    time_paired: Difference
    pairs: np.ndarray  # per config, pairs of seeds; -1 where the seeds differ

    def at(self, config: int) -> dict[str, Any] | None:
        """JSON-ready comparison of one config (None for the baseline itself)."""
        if config == self.baseline:
            return None
        pairs = int(self.pairs[config])

        def side(welch_: Difference, paired_: Difference) -> dict[str, Any]:
            out = welch_.at(config)
            return {"delta": out.pop("delta"), "welch": out,
                    "paired": None if pairs < 0 else {k: v for k, v in paired_.at(config).items()
                                                      if k != "delta"}}
        return {"baseline": self.baseline + 1, "pairs": None if pairs < 0 else pairs,
                "loss": side(self.loss, self.loss_paired),
                "time_s": side(self.time, self.time_paired)}


def compare(reps: Replicates, loss: np.ndarray, time_s: np.ndarray, n_configs: int,
            baseline: int, alpha: float = 0.05) -> Comparison:
    """Per config, final loss and time (per replicate) against the baseline config's."""
    seeds = _seed_maps(reps, n_configs)
    base = seeds[baseline]
    pairs = np.full(n_configs, -1, np.int64)
    d_loss, d_time, groups = [], [], []
    for config, mine in enumerate(seeds):
        if config == baseline or not mine or not base or mine.keys() != base.keys():
            continue
        pairs[config] = len(mine)
        for seed, r in mine.items():  # in the config's seed order, as ttest_rel(x, y) pairs
            d_loss.append(loss[r] - loss[base[seed]])
            d_time.append(time_s[r] - time_s[base[seed]])
            groups.append(config)
    g = np.array(groups, np.int64)
    return Comparison(
        baseline=baseline, alpha=alpha,
        loss=welch(loss, reps.config, n_configs, baseline, alpha),
        time=welch(time_s, reps.config, n_configs, baseline, alpha),
        loss_paired=paired(np.array(d_loss, np.float64), g, n_configs, alpha),
        time_paired=paired(np.array(d_time, np.float64), g, n_configs, alpha),
        pairs=pairs)


def _seed_maps(reps: Replicates, n_configs: int) -> list[dict[Any, int] | None]:
    """Per config, seed -> replicate; None if a replicate has no seed or a seed repeats
    (configs pooled with --by): then there is no pairing by seed."""
    maps: list[dict[Any, int] | None] = [{} for _ in range(n_configs)]
    for r, (config, seed) in enumerate(zip(reps.config, reps.seed)):
        mine = maps[config]
        if mine is None:
            continue
        if seed is None or seed in mine:
            maps[config] = None
        else:
            mine[seed] = r
    return maps
