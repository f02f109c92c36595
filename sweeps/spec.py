"""The sweep spec: one TOML file that says what to train, over which grid, on what resources.

Validated here, at the edge: every trial of the grid is built as a TrainConfig before Ray
starts, so an unknown key, a wrong type or an impossible value (k = 7, a zero-gradient trap)
is refused with the field named and nothing launched. Each section's keys are declared once,
by the dataclasses below: their type hints and `checked(...)` rules are what the section is
checked against (core/checks.py); parse_spec adds the rules between fields. docs/sweeps.md
has the annotated example; in short:

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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

from ablate.core.checks import Fail, check_table, checked, table_fields, type_error, unknown_key
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
MLFLOW_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # a scheme: http:, sqlite:, file:, databricks


class SpecError(AblateError):
    """A sweep spec that cannot run; the message names the file and the field."""


def _folder_name(name: str) -> str | None:
    if NAME.fullmatch(name):  # ($ alone would let a final newline through)
        return None
    return f"{name!r} must be letters, digits, '.', '_' or '-' (it names a folder under the storage root)"


def _storage(where: str) -> str | None:
    return None if where.strip() else "must be a path or a URI, got an empty string"


def _filled(text: str) -> str | None:
    return None if text.strip() else "must not be empty"


def _mlflow(where: str) -> str | None:
    if where == "local" or MLFLOW_URI.match(where):
        return None
    return ("must be 'local' (<storage>/<sweep>/mlflow.db) or a tracking URI such as http://host:5000, "
            f"sqlite:///path/mlflow.db or file:///path/mlruns, got {where!r}")


@dataclass(frozen=True)
class Resources:
    """Per trial: `workers` processes, each with these CPUs and GPUs, placed as one gang."""
    workers: int = checked(2, range=(1, None))
    cpus_per_worker: float = checked(1.0, range=(0, None), unit="a number")
    gpus_per_worker: float = checked(0.0, range=(0, None), unit="a number")
    placement: Literal["pack", "spread"] = "pack"  # gang placement: few nodes, or many
    # per GPU: a trial whose estimated peak exceeds it is refused
    gpu_memory_gb: float = checked(80.0, above=0, unit="a number")


@dataclass(frozen=True)
class EarlyStopping:
    """`same_budget` compares a trial only with trials of its own num_iterations at the same
    step (the lr schedule depends on the budget); `asha` is Tune's ASHA on the `step` key.
    A key's `kinds` are the kinds it applies to (all of them where not said)."""
    kind: Literal["same_budget", "asha"]
    grace_steps: int = checked(0, range=(0, None))  # never stop a trial before this step
    # stop when val loss > best same-budget loss + margin
    margin: float = checked(0.1, range=(0, None), kinds=("same_budget",))
    reduction_factor: float = checked(4.0, above=1, kinds=("asha",))
    brackets: int = checked(1, range=(1, None), kinds=("asha",))


@dataclass(frozen=True)
class Tracking:
    """Trackers that get one run per trial besides the curves (sweeps/tracking.py): MLflow,
    W&B, or both. Unset: none."""
    # "local" (<storage>/<sweep>/mlflow.db) or a tracking URI
    mlflow: str | None = checked(None, check=_mlflow)
    wandb: Literal["online", "offline"] | None = None  # offline: no network, `wandb sync` later
    wandb_project: str = checked("ablate", check=_filled)
    # a W&B team or user; default: the API key's user
    wandb_entity: str | None = checked(None, check=_filled)


@dataclass(frozen=True)
class Sampling:
    """Which points of the axes' grid run: all of them ("grid"); `num_samples` of them drawn
    at random without repeats ("random"), drawn when the spec is read from `seed`, so that a
    dry run lists them and a resumed sweep runs the same ones; or `num_samples` of them chosen
    one at a time by Optuna's TPE from the losses of those before ("tpe", sweeps/tpe.py; its
    sampler seeded from `seed`). Every point runs with every seed either way."""
    method: Literal["grid", "random", "tpe"] = "grid"
    num_samples: int | None = None  # 1..the grid's points (checked against the grid)
    seed: int = checked(0, range=(0, 2**63 - 1))

    @property
    def samples(self) -> int:
        """num_samples of a "random" or "tpe" sampling, which reading the spec makes sure of."""
        if self.num_samples is None:
            raise ValueError(f"search.num_samples: none for method = {self.method!r}")
        return self.num_samples


@dataclass(frozen=True)
class SweepSpec:
    """The whole spec. Its plain fields are the [sweep] table's keys; a field with a
    `section` is a table of its own."""
    name: str = checked(check=_folder_name, missing="every sweep needs a name")
    preset: str = "tiny"
    data: str = BUILTIN_DATA
    storage: str = checked("runs", check=_storage)
    seeds: tuple[int, ...] = checked((0,), accepts=(int, list))  # a count or a list (_seeds)
    target: float | None = None
    baseline: dict[str, Any] | None = None  # the grid point the report compares the others with
    max_concurrent_trials: int | None = checked(None, range=(1, MAX_TRIALS))
    # restarts of a trial's gang of workers from its last checkpoint
    max_failures: int = checked(1, range=(0, MAX_FAILURES),
                                why="a trial that always fails is retried that often")
    # seconds without a validation report after which a trial's workers count as stalled and
    # are restarted (a max_failures restart); None: ten times its longest gap, at least 5 min
    stall_timeout: float | None = checked(None, range=(1, MAX_STALL_S), unit="seconds", why="a week")
    resources: Resources = field(default_factory=Resources, metadata={"section": "resources"})
    fixed: dict[str, Any] = field(default_factory=dict, metadata={"section": "fixed"})
    axes: dict[str, list[Any]] = field(default_factory=dict, metadata={"section": "axes"})
    early_stopping: EarlyStopping | None = field(default=None, metadata={"section": "early_stopping"})
    tracking: Tracking = field(default_factory=Tracking, metadata={"section": "tracking"})
    sampling: Sampling = field(default_factory=Sampling, metadata={"section": "search"})
    source: str = field(default="<spec>", metadata={"internal": True})  # the file it came from

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

        drawn = random.Random(self.sampling.seed).sample(range(self.grid_size), self.sampling.samples)
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


_SECTIONS = {"sweep", *(f.metadata["section"] for f in fields(SweepSpec) if "section" in f.metadata)}
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
    """A raw TOML dict -> a SweepSpec whose every trial is valid: the tables' shape, each
    section against its dataclass, the rules between fields, then every trial built. A grid
    larger than `max_trials` is refused before its trials are built."""
    def fail(where: str, why: str) -> NoReturn:
        raise SpecError(f"{source}: {where}: {why}")

    _check_shape(raw, fail)
    spec = _build(raw, source, base, fail)
    _check_size(spec, max_trials)
    _check_trials(spec, fail)
    return spec


def _check_shape(raw: dict[str, Any], fail) -> None:
    """Every value one a field can take, every section known and a table."""
    unreadable = _first_unreadable(raw)
    if unreadable is not None:
        fail(*unreadable)
    for section in raw:
        if section not in _SECTIONS:
            fail(section, f"unknown section (expected {', '.join(sorted(_SECTIONS))})"
                          f"{did_you_mean(section, _SECTIONS)}")
        if not isinstance(raw[section], dict):
            fail(section, "must be a table ([section])")


def _build(raw: dict[str, Any], source: str, base: Path | None, fail) -> SweepSpec:
    """Each section checked against its dataclass, then the rules between its fields."""
    sweep = check_table(raw.get("sweep", {}), SweepSpec, "sweep", fail)
    seeds = _seeds(sweep.pop("seeds", 1), fail)
    resources = Resources(**check_table(raw.get("resources", {}), Resources, "resources", fail))
    if resources.cpus_per_worker == 0 and resources.gpus_per_worker == 0:
        fail("resources", "a worker needs a CPU or a GPU (cpus_per_worker and gpus_per_worker are 0)")
    fixed, axes = _grid(raw, fail)
    stopping = _early_stopping(raw.get("early_stopping"), fail)
    tracking = parse_tracking(raw.get("tracking", {}), fail)
    sampling = _sampling(raw.get("search", {}), math.prod(len(v) for v in axes.values()), fail)
    sweep["baseline"] = _baseline(sweep.get("baseline"), axes, fail)
    data = sweep.get("data", BUILTIN_DATA)
    if data != BUILTIN_DATA and base is not None and not Path(data).is_absolute():
        sweep["data"] = str((base / data).resolve()) if (base / data).exists() else data
    return SweepSpec(**sweep, seeds=seeds, resources=resources, fixed=fixed, axes=axes,
                     early_stopping=stopping, tracking=tracking, sampling=sampling, source=source)


def _seeds(seeds: int | list[Any], fail) -> tuple[int, ...]:
    """`seeds = n` (seeds 0..n-1) or a list of distinct non-negative 64-bit integers."""
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
    return tuple(seeds)


def _grid(raw: dict[str, Any], fail) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """[fixed] and [axes] (ranges expanded): no key in both, none the sweep sets itself."""
    fixed = dict(raw.get("fixed", {}))
    axes = {name: _axis_values(name, values, fail) for name, values in raw.get("axes", {}).items()}
    for name in axes:
        if name in fixed:
            fail(f"axes.{name}", "is also in [fixed]")
    for reserved in _RESERVED:
        for table, where in ((fixed, "fixed"), (axes, "axes")):
            if reserved in table:
                fail(f"{where}.{reserved}", "is set by the sweep itself (see [sweep] and [resources])")
    return fixed, axes


def _check_size(spec: SweepSpec, max_trials: int | None) -> None:
    if spec.size > MAX_TRIALS:
        raise SpecError(f"{spec.source}: the grid has {spec.size:,} trials; one sweep runs at most "
                        f"{MAX_TRIALS:,} (the driver holds every trial in memory): split it")
    if max_trials is not None and spec.size > max_trials:
        raise SpecError(f"{spec.source}: the grid has {spec.size:,} trials, more than --max-trials "
                        f"{max_trials}; pass --yes to launch them all")


def _check_trials(spec: SweepSpec, fail) -> None:
    """Build every trial once (for tpe, every point it may choose): errors name the spec field.
    ASHA compares trials at the same step, so it needs one step budget."""
    candidates = replace(spec, sampling=Sampling()) if spec.sampling.method == "tpe" else spec
    budgets = set()
    for trial in candidates.trials():
        try:
            budgets.add(spec.train_config(trial).num_iterations)
        except ConfigError as e:
            key, _, why = str(e).partition(": ")
            axes, fixed = spec.axes, spec.fixed
            where = f"axes.{key}" if key in axes else f"fixed.{key}" if key in fixed else key
            fail(where, why + (f" (in trial {_describe(trial, axes)})" if axes else ""))
    stopping = spec.early_stopping
    if stopping is None or stopping.kind != "asha":
        return
    if len(budgets) > 1:
        fail("early_stopping.kind", f"'asha' compares trials at the same step, but the grid "
             f"has {len(budgets)} step budgets ({', '.join(map(str, sorted(budgets)))}), whose "
             "lr cooldowns differ; use kind = 'same_budget'")
    if stopping.grace_steps > max(budgets):
        fail("early_stopping.grace_steps", f"{stopping.grace_steps} is beyond the longest "
             f"trial ({max(budgets)} steps)")


def _sampling(table: dict[str, Any], grid: int, fail: Fail) -> Sampling:
    """[search]: method = "grid" (default), or "random" or "tpe" with num_samples (and seed)."""
    sampling = Sampling(**check_table(table, Sampling, "search", fail))
    method, samples = sampling.method, sampling.num_samples
    if method == "grid":
        if samples is not None:
            fail("search.num_samples", "is for method = 'random' or 'tpe' (a grid runs every point)")
        return sampling
    if samples is None:
        fail("search.num_samples", f"missing (method = {method!r} runs that many grid points)")
    if not 1 <= samples <= grid:
        fail("search.num_samples", f"must be in 1..{grid:,} (the grid's points, drawn without "
             f"repeats), got {samples:,}")
    if method == "tpe" and grid > MAX_TRIALS:  # each point TPE may choose is built when read
        fail("search.method", f"'tpe' searches a grid of at most {MAX_TRIALS:,} points, got {grid:,}")
    return sampling


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
    """Refuse keys not in `schema` and values not of its types (a type or a tuple of types);
    for a section declared by a dataclass, core.checks.check_table reads its fields instead."""
    for key, value in table.items():
        if key not in schema:
            fail(f"{section}.{key}", unknown_key(key, schema))
        why = type_error(value, schema[key])
        if why is not None:
            fail(f"{section}.{key}", why)
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


def stopping_keys(kind: str) -> set[str]:
    """The [early_stopping] keys that `kind` takes (each key's `kinds`; every kind by default)."""
    return {name for name, (spec, _) in table_fields(EarlyStopping).items()
            if kind in spec.metadata.get("kinds", (kind,))}


def _early_stopping(table: dict[str, Any] | None, fail) -> EarlyStopping | None:
    if table is None:
        return None
    stopping = EarlyStopping(**check_table(table, EarlyStopping, "early_stopping", fail))
    takes = stopping_keys(stopping.kind)
    for key in table:
        if key not in takes:
            fail(f"early_stopping.{key}", f"does not apply to kind = {stopping.kind!r} (it takes "
                 f"{', '.join(sorted(takes - {'kind'}))})")
    return stopping


def parse_tracking(table: dict[str, Any], fail) -> Tracking:
    """[tracking] as a Tracking (also what `ablate resume` rebuilds from its flags)."""
    tracking = Tracking(**check_table(table, Tracking, "tracking", fail))
    for key in ("wandb_project", "wandb_entity"):
        if key in table and tracking.wandb is None:
            fail(f"tracking.{key}", "applies only with tracking.wandb = 'online' or 'offline'")
    return tracking


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
    sweep = {k: list(v) if k == "seeds" else v
             for k in table_fields(SweepSpec) if (v := getattr(spec, k)) is not None}
    out = dict(sweep=sweep, resources=asdict(spec.resources), fixed=spec.fixed, axes=spec.axes)
    if spec.early_stopping is not None:
        keep = stopping_keys(spec.early_stopping.kind)
        out["early_stopping"] = {k: v for k, v in asdict(spec.early_stopping).items() if k in keep}
    tracking = {k: v for k, v in asdict(spec.tracking).items() if v != getattr(Tracking, k)}
    if tracking:
        out["tracking"] = tracking
    if spec.sampling != Sampling():
        out["search"] = {k: v for k, v in asdict(spec.sampling).items() if v is not None}
    return out
