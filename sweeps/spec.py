"""The sweep spec: one TOML file that says what to train, over which grid, on what resources.

Validated here, at the edge: every trial of the grid is built as a TrainConfig before Ray
starts, so an unknown key, a wrong type or an impossible value (k = 7, a zero-gradient trap)
is refused with the field named and nothing launched.

    [sweep]
    name = "demo"               # folder under the storage root
    preset = "tiny"             # model preset: tiny, small, medium
    data = "builtin"            # shard folder, or "builtin" (the offline corpus, made on demand)
    seeds = 2                   # a count (0..n-1) or a list
    target = 2.5                # optional: target val loss for time-to-target and the t-test

    [resources]                 # per trial: a gang of workers, placed together or not at all
    workers = 2
    cpus_per_worker = 1
    gpus_per_worker = 0

    [fixed]                     # any model or trainer field, the same in every trial
    num_iterations = 100

    [axes]                      # the grid: every combination, times every seed
    extra_embeddings = [0, 1, 2]
    lambda_init = ["zero", "one"]
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import ConfigError
from trainer.config import TrainConfig

BUILTIN_DATA = "builtin"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class Resources:
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class SweepSpec:
    name: str
    preset: str = "tiny"
    data: str = BUILTIN_DATA
    storage: str = "runs"
    seeds: tuple[int, ...] = (0,)
    target: float | None = None
    max_concurrent_trials: int | None = None
    max_failures: int = 1  # Ray Train restarts of a trial's workers from its last checkpoint
    resources: Resources = field(default_factory=Resources)
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    source: str = "<spec>"

    def trials(self) -> list[dict[str, Any]]:
        """Every grid point times every seed, as flat trainer configs (without run labels)."""
        names = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            for seed in self.seeds:
                out.append({"preset": self.preset, **self.fixed, **dict(zip(names, values)),
                            "seed": seed})
        return out

    def train_config(self, trial: dict[str, Any], **labels: Any) -> TrainConfig:
        """A trial's TrainConfig, with run labels (data, out, sweep, trial_id, workers)."""
        return TrainConfig.from_flat({**trial, "workers": self.resources.workers, **labels})


_SECTIONS = {"sweep", "resources", "fixed", "axes"}
_SWEEP_KEYS = {"name": str, "preset": str, "data": str, "storage": str, "seeds": (int, list),
               "target": (int, float), "max_concurrent_trials": int, "max_failures": int}
_RESOURCE_KEYS = {"workers": int, "cpus_per_worker": (int, float), "gpus_per_worker": (int, float)}


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a spec file") from None
    return parse_spec(raw, source=str(path), base=path.parent)


def parse_spec(raw: dict[str, Any], source: str = "<spec>", base: Path | None = None) -> SweepSpec:
    def fail(where: str, why: str):
        raise SpecError(f"{source}: {where}: {why}")

    for section in raw:
        if section not in _SECTIONS:
            fail(section, f"unknown section (expected {', '.join(sorted(_SECTIONS))})")
        if not isinstance(raw[section], dict):
            fail(section, "must be a table ([section])")
    sweep = _typed(raw.get("sweep", {}), _SWEEP_KEYS, "sweep", fail)
    res = _typed(raw.get("resources", {}), _RESOURCE_KEYS, "resources", fail)
    if "name" not in sweep:
        fail("sweep.name", "missing (every sweep needs a name)")
    if not NAME.match(sweep["name"]):
        fail("sweep.name", f"{sweep['name']!r} must be letters, digits, '.', '_' or '-' "
             "(it names a folder under the storage root)")
    seeds = sweep.get("seeds", 1)
    if isinstance(seeds, int):
        if seeds < 1:
            fail("sweep.seeds", f"a count must be >= 1, got {seeds}")
        seeds = list(range(seeds))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        fail("sweep.seeds", f"must be a count or a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail("sweep.seeds", "repeats a seed")
    if res.get("workers", 2) < 1:
        fail("resources.workers", "must be >= 1")
    if res.get("cpus_per_worker", 1) < 0 or res.get("gpus_per_worker", 0) < 0:
        fail("resources", "cpus_per_worker and gpus_per_worker must be >= 0")
    if sweep.get("max_concurrent_trials", 1) < 1:
        fail("sweep.max_concurrent_trials", "must be >= 1")
    if sweep.get("max_failures", 0) < 0:
        fail("sweep.max_failures", "must be >= 0")
    fixed, axes = dict(raw.get("fixed", {})), dict(raw.get("axes", {}))
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            fail(f"axes.{name}", "must be a non-empty list of values")
        if name in fixed:
            fail(f"axes.{name}", "is also in [fixed]")
    for reserved in ("seed", "preset", "data", "out", "sweep", "trial_id", "workers"):
        for table, where in ((fixed, "fixed"), (axes, "axes")):
            if reserved in table:
                fail(f"{where}.{reserved}", "is set by the sweep itself (see [sweep] and [resources])")
    data = sweep.get("data", BUILTIN_DATA)
    if data != BUILTIN_DATA and base is not None and not Path(data).is_absolute():
        data = str((base / data).resolve()) if (base / data).exists() else data
    spec = SweepSpec(
        name=sweep["name"], preset=sweep.get("preset", "tiny"), data=data,
        storage=sweep.get("storage", "runs"), seeds=tuple(seeds),
        target=float(sweep["target"]) if "target" in sweep else None,
        max_concurrent_trials=sweep.get("max_concurrent_trials"),
        max_failures=sweep.get("max_failures", 1),
        resources=Resources(**{k: (float(v) if k != "workers" else v) for k, v in res.items()}),
        fixed=fixed, axes=axes, source=source)
    for trial in spec.trials():  # build every trial once: errors name the spec field
        try:
            spec.train_config(trial)
        except ConfigError as e:
            key, _, why = str(e).partition(": ")
            where = f"axes.{key}" if key in axes else f"fixed.{key}" if key in fixed else key
            fail(where, why + (f" (in trial {_describe(trial, axes)})" if axes else ""))
    return spec


def _typed(table: dict[str, Any], schema: dict[str, Any], section: str, fail) -> dict[str, Any]:
    for key, value in table.items():
        if key not in schema:
            fail(f"{section}.{key}", f"unknown key (expected one of {', '.join(schema)})")
        want = schema[key]
        if isinstance(value, bool) or not isinstance(value, want):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            fail(f"{section}.{key}", f"must be {names}, got {type(value).__name__} {value!r}")
    return table


def _describe(trial: dict[str, Any], axes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={trial[k]!r}" for k in axes)


def resolve_data(spec: SweepSpec, storage: Path) -> Path:
    """The shard folder a sweep reads: the spec's, or the built-in corpus prepared once under
    the storage root (so every node of a shared-storage cluster sees the same shards)."""
    from trainer.data import DataError, builtin_documents, find_shards, prepare

    if spec.data != BUILTIN_DATA:
        folder = Path(spec.data).resolve()
        try:
            find_shards(folder, "train")
            find_shards(folder, "val")
        except DataError as e:
            raise SpecError(f"{spec.source}: sweep.data: {e}") from None
        return folder
    folder = (storage / "data" / "builtin").resolve()
    if not (folder / "meta.json").is_file():
        prepare(builtin_documents(), folder, source="pydoc_data.topics")
    return folder
