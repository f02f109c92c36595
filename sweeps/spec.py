"""The sweep spec: one TOML file that says what to train, over which grid, on what resources.

Validated here, at the edge: every trial of the grid is built as a TrainConfig before Ray
starts, so an unknown key, a wrong type or an impossible value (k = 7, a zero-gradient trap)
is refused with the field named and nothing launched. docs/sweeps.md has the annotated
example; in short:

    [sweep]           name, preset, data, storage, seeds, target, max_concurrent_trials,
                      max_failures
    [resources]       workers, cpus_per_worker, gpus_per_worker, placement ("pack" | "spread")
    [fixed]           any model or trainer field, the same in every trial
    [axes]            field = [values], or field = {start, stop, step} (stop included)
    [early_stopping]  kind = "same_budget" (margin, grace_steps) | "asha" (grace_steps,
                      reduction_factor, brackets)
    [tracking]        mlflow = "local" | a tracking URI; wandb = "online" | "offline",
                      wandb_project, wandb_entity

No torch and no ray here: a spec is checked (and `--dry-run` answers) in a moment.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ablate.core.errors import AblateError, did_you_mean
from ablate.core.fields import SET_BY_SWEEP
from ablate.model.config import ConfigError
from ablate.trainer.config import TrainConfig

BUILTIN_DATA = "builtin"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_AXIS_VALUES = 10_000
MAX_TRIALS = 100_000  # in one sweep, --yes or not
MAX_FAILURES = 100  # restarts of one trial's workers
MAX_STALL_S = 7 * 24 * 3600


class SpecError(AblateError):
    """A sweep spec that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class Resources:
    """Per trial: `workers` processes, each with these CPUs and GPUs, placed as one gang."""
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    placement: Literal["pack", "spread"] = "pack"  # gang placement: few nodes, or many
    gpu_memory_gb: float = 80.0  # per GPU: a trial whose estimated peak exceeds it is refused


@dataclass(frozen=True)
class EarlyStopping:
    """`same_budget` compares a trial only with trials of its own num_iterations at the same
    step (the lr schedule depends on the budget); `asha` is Tune's ASHA on the `step` key."""
    kind: Literal["same_budget", "asha"]
    grace_steps: int = 0  # never stop a trial before this step
    margin: float = 0.1  # same_budget: stop when val loss > best same-budget loss + margin
    reduction_factor: float = 4.0  # asha
    brackets: int = 1  # asha


@dataclass(frozen=True)
class Tracking:
    """Trackers that get one run per trial besides the curves (sweeps/tracking.py): MLflow,
    W&B, or both. Unset: none."""
    mlflow: str | None = None  # "local" (<storage>/<sweep>/mlflow.db) or a tracking URI
    wandb: Literal["online", "offline"] | None = None  # offline: no network, `wandb sync` later
    wandb_project: str = "ablate"
    wandb_entity: str | None = None  # a W&B team or user; default: the API key's user


@dataclass(frozen=True)
class Sampling:
    """Which points of the axes' grid run: all of them ("grid"); `num_samples` of them drawn
    at random without repeats ("random"), drawn when the spec is read from `seed`, so that a
    dry run lists them and a resumed sweep runs the same ones; or `num_samples` of them chosen
    one at a time by Optuna's TPE from the losses of those before ("tpe", sweeps/tpe.py; its
    sampler seeded from `seed`). Every point runs with every seed either way."""
    method: Literal["grid", "random", "tpe"] = "grid"
    num_samples: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class SweepSpec:
    name: str
    preset: str = "tiny"
    data: str = BUILTIN_DATA
    storage: str = "runs"
    seeds: tuple[int, ...] = (0,)
    target: float | None = None
    baseline: dict[str, Any] | None = None  # the grid point the report compares the others with
    max_concurrent_trials: int | None = None
    max_failures: int = 1  # Ray Train restarts of a trial's workers from its last checkpoint
    # seconds without a validation report after which a trial's workers count as stalled and
    # are restarted (a max_failures restart); None: ten times its longest gap, at least 5 min
    stall_timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    early_stopping: EarlyStopping | None = None
    tracking: Tracking = field(default_factory=Tracking)
    sampling: Sampling = field(default_factory=Sampling)
    source: str = "<spec>"

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        """How many trials the sweep launches (without building them)."""
        return (self.sampling.num_samples or self.grid_size) * len(self.seeds)

    def points(self) -> list[dict[str, Any]]:
        """The grid points that run, each an {axis: value} dict: every one, or the sample."""
        names = list(self.axes)
        if self.sampling.method == "grid":
            return [dict(zip(names, values)) for values in itertools.product(*(self.axes[n] for n in names))]
        import random

        drawn = random.Random(self.sampling.seed).sample(range(self.grid_size), self.sampling.num_samples)
        points = []
        for index in drawn:  # the index's digits, one per axis, the last axis fastest
            point = {}
            for name in reversed(names):
                index, digit = divmod(index, len(self.axes[name]))
                point[name] = self.axes[name][digit]
            points.append({n: point[n] for n in names})
        return points

    def trials(self) -> list[dict[str, Any]]:
        """Every point times every seed, as flat trainer configs (without run labels)."""
        return [{"preset": self.preset, **self.fixed, **point, "seed": seed}
                for point in self.points() for seed in self.seeds]

    def train_config(self, trial: dict[str, Any], **labels: Any) -> TrainConfig:
        """A trial's TrainConfig, with run labels (data, out, sweep, trial_id, workers)."""
        return TrainConfig.from_flat({**trial, "workers": self.resources.workers, **labels})


_SECTIONS = {"sweep", "resources", "fixed", "axes", "early_stopping", "tracking", "search"}
_SEARCH_KEYS = {"method": str, "num_samples": int, "seed": int}
_SWEEP_KEYS = {"name": str, "preset": str, "data": str, "storage": str, "seeds": (int, list),
               "target": (int, float), "baseline": dict, "max_concurrent_trials": int,
               "max_failures": int, "stall_timeout": (int, float)}
_RESOURCE_KEYS = {"workers": int, "cpus_per_worker": (int, float),
                  "gpus_per_worker": (int, float), "placement": str,
                  "gpu_memory_gb": (int, float)}
_STOPPING_KEYS = {"kind": str, "grace_steps": int, "margin": (int, float),
                  "reduction_factor": (int, float), "brackets": int}
_STOPPING_KINDS = {"same_budget": {"grace_steps", "margin"},
                   "asha": {"grace_steps", "reduction_factor", "brackets"}}
_TRACKING_KEYS = {"mlflow": str, "wandb": str, "wandb_project": str, "wandb_entity": str}
MLFLOW_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # a scheme: http:, sqlite:, file:, databricks
_RANGE_KEYS = {"start", "stop", "step"}
_RESERVED = tuple(SET_BY_SWEEP)  # core.fields: what the sweep sets itself


def step_budget(config: dict[str, Any]) -> int:
    """A trial's num_iterations: its own, else its preset recipe's (5690 for medium)."""
    try:
        return TrainConfig.from_flat(config).num_iterations
    except ConfigError:  # a config from elsewhere (a curve of another version): its own word
        return int(config.get("num_iterations") or TrainConfig.num_iterations)


def load_toml(path: str | Path) -> dict[str, Any]:
    """A spec file's TOML tables; a missing, unreadable or malformed file -> SpecError."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block
        raise SpecError(f"{path}: not a regular file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a spec file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    except ValueError as e:  # tomllib's own: an integer of more digits than Python converts
        raise SpecError(f"{path}: not a spec: {str(e).split(';')[0]}") from None
    except (OSError, RecursionError) as e:
        raise SpecError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def override(raw: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The spec's tables with `section.key = value` settings applied (`ablate sweep -s`).
    Pinning a key in [fixed] takes it off [axes] (and out of the baseline), and the other
    way round: an override states what the user wants, whatever the file said."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for where, value in settings.items():
        section, dot, key = where.partition(".")
        if not dot or not key or section not in _SECTIONS:
            raise SpecError(f"-s {where}: expected section.key=value with a section among "
                            f"{', '.join(sorted(_SECTIONS))} (e.g. fixed.num_iterations=200)")
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise SpecError(f"-s {where}: [{section}] is not a table in the spec")
        table[key] = value
        other = {"fixed": "axes", "axes": "fixed"}.get(section)
        if other and isinstance(raw.get(other), dict):
            raw[other].pop(key, None)
        baseline = raw.get("sweep", {}).get("baseline") if isinstance(raw.get("sweep"), dict) else None
        if section == "fixed" and isinstance(baseline, dict) and key in baseline:
            baseline = {k: v for k, v in baseline.items() if k != key}  # no longer an axis
            raw["sweep"] = {**raw["sweep"], "baseline": baseline}
            if not baseline:
                del raw["sweep"]["baseline"]
    return raw


def load_spec(path: str | Path, max_trials: int | None = None,
              settings: dict[str, Any] | None = None) -> SweepSpec:
    path = Path(path)
    raw = override(load_toml(path), settings or {})
    return parse_spec(raw, source=str(path), base=path.parent, max_trials=max_trials)


def parse_spec(raw: dict[str, Any], source: str = "<spec>", base: Path | None = None,
               max_trials: int | None = None) -> SweepSpec:
    """A raw TOML dict -> a SweepSpec whose every trial is valid. A grid larger than
    `max_trials` is refused before its trials are built."""
    def fail(where: str, why: str):
        raise SpecError(f"{source}: {where}: {why}")

    unreadable = _first_unreadable(raw)
    if unreadable is not None:
        fail(*unreadable)
    for section in raw:
        if section not in _SECTIONS:
            fail(section, f"unknown section (expected {', '.join(sorted(_SECTIONS))})"
                          f"{did_you_mean(section, _SECTIONS)}")
        if not isinstance(raw[section], dict):
            fail(section, "must be a table ([section])")
    sweep = typed_table(raw.get("sweep", {}), _SWEEP_KEYS, "sweep", fail)
    res = typed_table(raw.get("resources", {}), _RESOURCE_KEYS, "resources", fail)
    if "name" not in sweep:
        fail("sweep.name", "missing (every sweep needs a name)")
    if not NAME.fullmatch(sweep["name"]):  # ($ alone would let a final newline through)
        fail("sweep.name", f"{sweep['name']!r} must be letters, digits, '.', '_' or '-' "
             "(it names a folder under the storage root)")
    seeds = sweep.get("seeds", 1)
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_AXIS_VALUES:
            fail("sweep.seeds", f"a count must be in 1..{MAX_AXIS_VALUES:,}, got {seeds}")
        seeds = list(range(seeds))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        fail("sweep.seeds", f"must be a count or a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail("sweep.seeds", "repeats a seed")
    if len(seeds) > MAX_AXIS_VALUES or max(seeds) >= 2**63:
        fail("sweep.seeds", f"at most {MAX_AXIS_VALUES:,} seeds, each below 2^63")
    if "storage" in sweep and not sweep["storage"].strip():
        fail("sweep.storage", "must be a path or a URI, got an empty string")
    if res.get("workers", 2) < 1:
        fail("resources.workers", f"must be >= 1, got {res['workers']}")
    for key in ("cpus_per_worker", "gpus_per_worker"):
        if not 0 <= res.get(key, 0) < math.inf:
            fail(f"resources.{key}", f"must be a number >= 0, got {res[key]}")
    if res.get("cpus_per_worker", 1) == 0 and res.get("gpus_per_worker", 0) == 0:
        fail("resources", "a worker needs a CPU or a GPU (cpus_per_worker and gpus_per_worker are 0)")
    if not 0 < res.get("gpu_memory_gb", 80) < math.inf:
        fail("resources.gpu_memory_gb", f"must be a number > 0, got {res['gpu_memory_gb']}")
    if "target" in sweep and not math.isfinite(sweep["target"]):
        fail("sweep.target", f"must be a finite number, got {sweep['target']}")
    if res.get("placement", "pack") not in ("pack", "spread"):
        fail("resources.placement", f"must be 'pack' or 'spread', got {res['placement']!r}")
    if not 0 <= sweep.get("max_failures", 0) <= MAX_FAILURES:
        fail("sweep.max_failures", f"must be in 0..{MAX_FAILURES} (a trial that always fails "
             f"is retried that often), got {sweep['max_failures']}")
    if not 1 <= sweep.get("stall_timeout", 1) <= MAX_STALL_S:
        fail("sweep.stall_timeout", f"must be seconds in 1..{MAX_STALL_S:,} (a week), "
             f"got {sweep['stall_timeout']}")
    if not 1 <= sweep.get("max_concurrent_trials", 1) <= MAX_TRIALS:
        fail("sweep.max_concurrent_trials", f"must be in 1..{MAX_TRIALS:,}, "
             f"got {sweep['max_concurrent_trials']}")
    fixed = dict(raw.get("fixed", {}))
    axes = {name: _axis_values(name, values, fail) for name, values in raw.get("axes", {}).items()}
    for name in axes:
        if name in fixed:
            fail(f"axes.{name}", "is also in [fixed]")
    for reserved in _RESERVED:
        for table, where in ((fixed, "fixed"), (axes, "axes")):
            if reserved in table:
                fail(f"{where}.{reserved}", "is set by the sweep itself (see [sweep] and [resources])")
    stopping = _early_stopping(raw.get("early_stopping"), fail)
    tracking = parse_tracking(raw.get("tracking", {}), fail)
    sampling = _sampling(raw.get("search", {}), math.prod(len(v) for v in axes.values()), fail)
    baseline = _baseline(sweep.get("baseline"), axes, fail)
    data = sweep.get("data", BUILTIN_DATA)
    if data != BUILTIN_DATA and base is not None and not Path(data).is_absolute():
        data = str((base / data).resolve()) if (base / data).exists() else data
    spec = SweepSpec(
        name=sweep["name"], preset=sweep.get("preset", "tiny"), data=data,
        storage=sweep.get("storage", "runs"), seeds=tuple(seeds),
        target=float(sweep["target"]) if "target" in sweep else None, baseline=baseline,
        max_concurrent_trials=sweep.get("max_concurrent_trials"),
        max_failures=sweep.get("max_failures", 1),
        stall_timeout=float(sweep["stall_timeout"]) if "stall_timeout" in sweep else None,
        resources=Resources(**{k: (v if k in ("workers", "placement") else float(v))
                               for k, v in res.items()}),
        fixed=fixed, axes=axes, early_stopping=stopping, tracking=tracking, sampling=sampling,
        source=source)
    if spec.size > MAX_TRIALS:
        raise SpecError(f"{source}: the grid has {spec.size:,} trials; one sweep runs at most "
                        f"{MAX_TRIALS:,} (the driver holds every trial in memory): split it")
    if max_trials is not None and spec.size > max_trials:
        raise SpecError(f"{source}: the grid has {spec.size:,} trials, more than --max-trials "
                        f"{max_trials}; pass --yes to launch them all")
    # build every trial once (for tpe, every point it may choose): errors name the spec field
    candidates = replace(spec, sampling=Sampling()) if sampling.method == "tpe" else spec
    for trial in candidates.trials():
        try:
            spec.train_config(trial)
        except ConfigError as e:
            key, _, why = str(e).partition(": ")
            where = f"axes.{key}" if key in axes else f"fixed.{key}" if key in fixed else key
            fail(where, why + (f" (in trial {_describe(trial, axes)})" if axes else ""))
    if stopping is not None and stopping.kind == "asha":
        budgets = {spec.train_config(t).num_iterations for t in candidates.trials()}
        if len(budgets) > 1:
            fail("early_stopping.kind", f"'asha' compares trials at the same step, but the grid "
                 f"has {len(budgets)} step budgets ({', '.join(map(str, sorted(budgets)))}), whose "
                 "lr cooldowns differ; use kind = 'same_budget'")
        longest = max(budgets)
        if stopping.grace_steps > longest:
            fail("early_stopping.grace_steps", f"{stopping.grace_steps} is beyond the longest "
                 f"trial ({longest} steps)")
    return spec


def _sampling(table: dict[str, Any], grid: int, fail) -> Sampling:
    """[search]: method = "grid" (default), or "random" or "tpe" with num_samples (and seed)."""
    table = typed_table(table, _SEARCH_KEYS, "search", fail)
    method = table.get("method", "grid")
    if method not in ("grid", "random", "tpe"):
        fail("search.method", f"must be 'grid', 'random' or 'tpe', got {method!r}"
                              f"{did_you_mean(str(method), ('grid', 'random', 'tpe'))}")
    samples = table.get("num_samples")
    if method == "grid":
        if samples is not None:
            fail("search.num_samples", "is for method = 'random' or 'tpe' (a grid runs every point)")
        return Sampling(seed=table.get("seed", 0))
    if samples is None:
        fail("search.num_samples", f"missing (method = {method!r} runs that many grid points)")
    if not 1 <= samples <= grid:
        fail("search.num_samples", f"must be in 1..{grid:,} (the grid's points, drawn without "
             f"repeats), got {samples:,}")
    if method == "tpe" and grid > MAX_TRIALS:  # each point TPE may choose is built when read
        fail("search.method", f"'tpe' searches a grid of at most {MAX_TRIALS:,} points, got {grid:,}")
    seed = table.get("seed", 0)
    if not 0 <= seed < 2**63:
        fail("search.seed", f"must be in 0..2^63-1, got {seed}")
    return Sampling(method, samples, seed)


def _first_unreadable(raw: Any) -> tuple[str, str] | None:
    """(dotted key, why) of the first value in `raw` that no field can take: a string holding
    a NUL (TOML's "\\u0000", which the OS refuses in a path deep inside whatever opens it),
    or an integer outside 64 bits (TOML's own limit; Python would take it and fail later,
    turning it into a float)."""
    todo: list[tuple[str, Any]] = [("", raw)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, str) and "\0" in value:
            return where or "<spec>", "contains a NUL character (no path or name can)"
        if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
            digits = len(str(abs(value))) if abs(value).bit_length() < 14_000 else "thousands of"
            return where or "<spec>", f"an integer of {digits} digits is outside 64 bits"
        if isinstance(value, dict):
            todo += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
            todo += [(where or "<spec>", k) for k in value]  # keys are strings too
        elif isinstance(value, list):
            todo += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return None


def typed_table(table: dict[str, Any], schema: dict[str, Any], section: str, fail) -> dict[str, Any]:
    """Refuse keys not in `schema` and values not of its types (bools are not numbers)."""
    for key, value in table.items():
        if key not in schema:
            fail(f"{section}.{key}", f"unknown key (expected one of {', '.join(schema)})"
                                     f"{did_you_mean(key, schema)}")
        want = schema[key]
        if isinstance(value, bool) or not isinstance(value, want):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            fail(f"{section}.{key}", f"must be {names}, got {type(value).__name__} {value!r}")
    return table


def _axis_values(name: str, values: Any, fail) -> list[Any]:
    """A list as given, or a numeric range {start, stop, step} with the stop included."""
    where = f"axes.{name}"
    if isinstance(values, list):
        if not values:
            fail(where, "must be a non-empty list of values or a range {start, stop, step}")
        _no_repeats(where, values, fail)
        return values
    if not isinstance(values, dict):
        fail(where, f"must be a list of values or a range {{start, stop, step}}, got {values!r}")
    unknown = set(values) - _RANGE_KEYS
    if unknown:
        fail(where, f"unknown range key {sorted(unknown)[0]!r} (expected start, stop, step)")
    if not {"start", "stop"} <= set(values):
        fail(where, "a range needs start and stop (step defaults to 1)")
    start, stop, step = values["start"], values["stop"], values.get("step", 1)
    for key, v in (("start", start), ("stop", stop), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            fail(f"{where}.{key}", f"must be a finite number, got {type(v).__name__} {v!r}")
    if step <= 0:
        fail(f"{where}.step", f"must be > 0, got {step}")
    if stop < start:
        fail(f"{where}.stop", f"{stop} is below start {start}")
    span = (stop - start) / step  # inf where the width overflows a float
    if not span < MAX_AXIS_VALUES:
        fail(where, f"too many values for a range (at most {MAX_AXIS_VALUES:,}; start {start}, "
             f"stop {stop}, step {step})")
    count = math.floor(span + 1e-9) + 1
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(count)]
    out = [round(start + i * step, 12) for i in range(count)]
    _no_repeats(where, out, fail)  # a step below the 12 decimals kept makes repeats
    return out


def _no_repeats(where: str, values: list[Any], fail) -> None:
    """Refuse a value given twice, numbers by value (1 and 1.0 make the same trial)."""
    def same(a, b) -> bool:
        numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)]
        return a == b if all(numbers) else type(a) is type(b) and a == b

    seen: list[Any] = []  # (lists of lists are not hashable: compare, don't hash)
    for value in values:
        if any(same(value, other) for other in seen):
            fail(where, f"repeats the value {value!r} (the same trial twice is one replicate "
                 "counted twice; use seeds for replicates)")
        seen.append(value)


def _early_stopping(table: dict[str, Any] | None, fail) -> EarlyStopping | None:
    if table is None:
        return None
    table = typed_table(table, _STOPPING_KEYS, "early_stopping", fail)
    kind = table.get("kind")
    if kind not in _STOPPING_KINDS:
        fail("early_stopping.kind", f"must be 'same_budget' or 'asha', got {kind!r}")
    for key in table:
        if key != "kind" and key not in _STOPPING_KINDS[kind]:
            fail(f"early_stopping.{key}", f"does not apply to kind = {kind!r} (it takes "
                 f"{', '.join(sorted(_STOPPING_KINDS[kind]))})")
    stopping = EarlyStopping(**{k: float(v) if k in ("margin", "reduction_factor") else v
                                for k, v in table.items()})
    if stopping.grace_steps < 0:
        fail("early_stopping.grace_steps", f"must be >= 0, got {stopping.grace_steps}")
    if not 0 <= stopping.margin < math.inf:
        fail("early_stopping.margin", f"must be >= 0, got {stopping.margin}")
    if not 1 < stopping.reduction_factor < math.inf:
        fail("early_stopping.reduction_factor", f"must be > 1, got {stopping.reduction_factor}")
    if stopping.brackets < 1:
        fail("early_stopping.brackets", f"must be >= 1, got {stopping.brackets}")
    return stopping


def parse_tracking(table: dict[str, Any], fail) -> Tracking:
    """[tracking] as a Tracking (also what `ablate resume` rebuilds from its flags)."""
    table = typed_table(table, _TRACKING_KEYS, "tracking", fail)
    mlflow, wandb = table.get("mlflow"), table.get("wandb")
    if mlflow is not None and mlflow != "local" and not MLFLOW_URI.match(mlflow):
        fail("tracking.mlflow", "must be 'local' (<storage>/<sweep>/mlflow.db) or a tracking URI "
             f"such as http://host:5000, sqlite:///path/mlflow.db or file:///path/mlruns, got {mlflow!r}")
    if wandb is not None and wandb not in ("online", "offline"):
        fail("tracking.wandb", f"must be 'online' or 'offline', got {wandb!r}")
    for key in ("wandb_project", "wandb_entity"):
        if key in table and wandb is None:
            fail(f"tracking.{key}", "applies only with tracking.wandb = 'online' or 'offline'")
        if key in table and not table[key].strip():
            fail(f"tracking.{key}", "must not be empty")
    return Tracking(**table)


def _baseline(table: dict[str, Any] | None, axes: dict[str, list[Any]], fail) -> dict | None:
    """`baseline = {axis = value, ...}`: a point of the grid, named by some or all axes."""
    if table is None:
        return None
    if not table:
        fail("sweep.baseline", "must name at least one axis, e.g. {extra_embeddings = 0}")
    for key, value in table.items():
        if key not in axes:
            fail(f"sweep.baseline.{key}", f"not an axis (axes: {', '.join(axes) or 'none'})")
        if value not in axes[key]:
            fail(f"sweep.baseline.{key}", f"{value!r} is not among the axis values {axes[key]}")
    return dict(table)


def _describe(trial: dict[str, Any], axes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={trial[k]!r}" for k in axes)


def spec_dict(spec: SweepSpec) -> dict[str, Any]:
    """The spec as the TOML tables it came from (parse_spec reads it back)."""
    sweep = {k: v for k, v in dict(
        name=spec.name, preset=spec.preset, data=spec.data, storage=spec.storage,
        seeds=list(spec.seeds), target=spec.target, baseline=spec.baseline,
        max_concurrent_trials=spec.max_concurrent_trials,
        max_failures=spec.max_failures, stall_timeout=spec.stall_timeout).items() if v is not None}
    out = dict(sweep=sweep, resources=asdict(spec.resources), fixed=spec.fixed, axes=spec.axes)
    if spec.early_stopping is not None:
        keep = {"kind", "grace_steps", *({"margin"} if spec.early_stopping.kind == "same_budget"
                                          else {"reduction_factor", "brackets"})}
        out["early_stopping"] = {k: v for k, v in asdict(spec.early_stopping).items() if k in keep}
    tracking = {k: v for k, v in asdict(spec.tracking).items() if v != getattr(Tracking, k)}
    if tracking:
        out["tracking"] = tracking
    if spec.sampling != Sampling():
        out["search"] = {k: v for k, v in asdict(spec.sampling).items() if v is not None}
    return out
