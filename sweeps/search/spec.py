"""The step-search spec: a sweep spec without axes or seeds, plus a `[search]` section.

Validated here, at the edge, like sweep specs: a wrong key, type or range is refused with
`search.<field>` named, and the trainer config is built at both ends of the step range before
Ray starts.

    [sweep]                 # name, preset, data, storage, max_failures as in sweep specs
    name = "k1-steps"
    [resources]             # per trial, as in sweep specs
    workers = 8
    gpus_per_worker = 1
    [fixed]                 # the config under test (num_iterations and seed are the search's)
    extra_embeddings = 1
    [search]
    min_steps = 4000        # the step grid: min_steps, min_steps + granularity, ..., max_steps
    max_steps = 7000
    granularity = 125
    target = 2.92           # the mean final val loss must beat this ...
    alpha = 0.05            # ... by a one-sided one-sample t-test at this level
    seeds_per_probe = 3     # seeds run at once when a step count is first probed
    max_seeds = 8           # most seeds at one step count; not passing by then is failing
    max_trials = 40         # budget: trials (step count x seed) in all, over every resume
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ablate.model.config import ConfigError
from ablate.sweeps.spec import (
    MAX_AXIS_VALUES,
    MAX_TRIALS,
    SpecError,
    SweepSpec,
    load_toml,
    override,
    parse_spec,
    typed_table,
)
from ablate.trainer.config import MAX_STEPS

SECTIONS = ("sweep", "resources", "fixed", "tracking", "search")
CHOSEN_BY_SEARCH = {"sweep.seeds": "search.seeds_per_probe and search.max_seeds",
                    "sweep.target": "search.target",
                    "fixed.num_iterations": "search.min_steps .. search.max_steps",
                    "fixed.seed": "search.seeds_per_probe and search.max_seeds"}


@dataclass(frozen=True)
class SearchSettings:
    """The `[search]` section: the step grid, the test, and the budget."""

    min_steps: int
    max_steps: int
    granularity: int
    target: float
    alpha: float = 0.05
    seeds_per_probe: int = 3
    max_seeds: int = 8
    max_trials: int = 40

    def __post_init__(self):
        def need(ok: bool, name: str, why: str):
            if not ok:
                raise SpecError(f"search.{name}: {why}")

        need(self.min_steps >= 1, "min_steps", f"must be >= 1, got {self.min_steps}")
        need(self.max_steps > self.min_steps, "max_steps",
             f"must be greater than min_steps ({self.min_steps}), got {self.max_steps}")
        need(self.granularity >= 1, "granularity", f"must be >= 1, got {self.granularity}")
        span = self.max_steps - self.min_steps
        need(span % self.granularity == 0, "granularity",
             f"{self.granularity} does not divide the step range {self.min_steps}..{self.max_steps} "
             f"({span} steps)")
        need(self.max_steps <= MAX_STEPS, "max_steps",
             f"must be at most {MAX_STEPS:,}, got {self.max_steps:,}")
        need(span // self.granularity < MAX_TRIALS, "granularity",
             f"{self.min_steps}..{self.max_steps} in steps of {self.granularity} is "
             f"{span // self.granularity + 1:,} step counts; at most {MAX_TRIALS:,}")
        need(math.isfinite(self.target), "target", f"must be finite, got {self.target}")
        need(0 < self.alpha <= 0.5, "alpha", f"must be in (0, 0.5], got {self.alpha}")
        need(self.seeds_per_probe >= 2, "seeds_per_probe",
             f"must be >= 2 (a t-test needs two seeds), got {self.seeds_per_probe}")
        need(self.max_seeds >= self.seeds_per_probe, "max_seeds",
             f"must be >= seeds_per_probe ({self.seeds_per_probe}), got {self.max_seeds}")
        need(self.max_trials >= self.seeds_per_probe, "max_trials",
             f"must be >= seeds_per_probe ({self.seeds_per_probe}): room for one probe, "
             f"got {self.max_trials}")
        need(self.max_seeds <= MAX_AXIS_VALUES, "max_seeds",
             f"must be at most {MAX_AXIS_VALUES:,}, got {self.max_seeds:,}")
        need(self.max_trials <= MAX_TRIALS, "max_trials",
             f"must be at most {MAX_TRIALS:,}, got {self.max_trials:,}")

    @property
    def grid(self) -> list[int]:
        return list(range(self.min_steps, self.max_steps + 1, self.granularity))


_TYPES = {f.name: (int, float) if f.type in (float, "float") else int for f in fields(SearchSettings)}
_REQUIRED = ("min_steps", "max_steps", "granularity", "target")


@dataclass(frozen=True)
class SearchSpec:
    sweep: SweepSpec  # name, preset, data, storage, resources, fixed, max_failures
    search: SearchSettings

    @property
    def name(self) -> str:
        return self.sweep.name

    def probe(self, steps: int, seed: int) -> dict[str, Any]:
        """A probe's flat trainer config (without run labels)."""
        return {"preset": self.sweep.preset, **self.sweep.fixed, "num_iterations": steps,
                "seed": seed}


def load_search_spec(path: str | Path, settings: dict[str, Any] | None = None) -> SearchSpec:
    """The spec file with `section.key = value` settings applied (`-s`, `--mlflow`), then
    validated as a whole: an override is checked exactly as the file's own keys are."""
    path = Path(path)
    for where in settings or {}:
        section, dot, key = where.partition(".")
        if not dot or not key or section not in SECTIONS:
            raise SpecError(f"-s {where}: expected section.key=value with a section among "
                            f"{', '.join(SECTIONS)} (e.g. search.max_trials=60)")
    raw = override(load_toml(path), settings or {})
    return parse_search_spec(raw, source=str(path), base=path.parent)


def parse_search_spec(raw: dict[str, Any], source: str = "<spec>",
                      base: Path | None = None) -> SearchSpec:
    def fail(where: str, why: str):
        raise SpecError(f"{source}: {where}: {why}")

    for section, table in raw.items():
        if section not in SECTIONS:
            hint = " (a step search has no grid: put values in [fixed])" if section == "axes" else ""
            fail(section, f"unknown section (expected {', '.join(SECTIONS)}){hint}")
        if not isinstance(table, dict):
            fail(section, "must be a table ([section])")
    for where, instead in CHOSEN_BY_SEARCH.items():
        section, key = where.split(".")
        if key in raw.get(section, {}):
            fail(where, f"is chosen by the search (see {instead})")
    if "search" not in raw:
        fail("search", "missing (a step search needs a [search] section)")
    sweep = parse_spec({k: v for k, v in raw.items() if k != "search"}, source, base)
    try:
        search = SearchSettings(**_typed(raw["search"], fail))
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    for steps in (search.min_steps, search.max_steps):  # the ends of the range build
        try:
            sweep.train_config(SearchSpec(sweep, search).probe(steps, 0))
        except ConfigError as e:
            key, _, why = str(e).partition(": ")
            fail(f"fixed.{key}" if key in sweep.fixed else key, f"{why} (at {steps} steps)")
    return SearchSpec(sweep, search)


def _typed(table: dict[str, Any], fail) -> dict[str, Any]:
    typed_table(table, _TYPES, "search", fail)
    for key in _REQUIRED:
        if key not in table:
            fail(f"search.{key}", "missing")
    return {k: v if _TYPES[k] is int else float(v) for k, v in table.items()}
