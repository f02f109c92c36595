"""The report: every number the CLI shows, per config, computed once from loaded curves.

`build_report(paths, ...)` is the public entry: `ablate report` and the end-of-sweep report
of `ablate sweep` both call it, and `render.write_report` prints what it returns.

Configs come from the data (configs.py): trials are one config when their params agree on
every field but the labels. The statistics are over replicates (replicates.py): n counts
distinct seeds, so a seed run twice is one replicate, with a warning. Only completed
trials enter the loss/time statistics, time to target and Pareto frontiers: a diverged or
failed trial has no valid final loss, and a running one has not reached its final step
(its learning-rate schedule is not finished, so its last loss is not that of a shorter
run). They are counted per config and shown apart. With a baseline, every other config is
compared with it (compare.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ablate.core.files import jsonable
from ablate.core.states import COMPLETED, OUTCOMES
from ablate.results.compare import BaselineChoice, compare, find_baseline
from ablate.results.configs import Configs, config_label, group_configs, trial_params
from ablate.results.errors import InputError
from ablate.results.load import Loaded, load_curves
from ablate.results.pareto import budget_frontier, nondominated, p_nondominated
from ablate.results.replicates import Duplicate, Replicates, replicates_of
from ablate.results.stats import mean_ci, summarize, ttest_less
from ablate.results.target import time_to_target
from ablate.results.trials import COLUMNS, Trials, trials_from


@dataclass(frozen=True)
class ConfigResult:
    key: dict[str, Any]  # the config's shown fields (those that vary between configs)
    config: dict[str, Any]  # every field of the config (the `by` fields when pooled)
    counts: dict[str, int]  # trials per outcome (completed, running, diverged, failed)
    loss: dict[str, Any]  # summary of final val loss over replicates (n = distinct seeds)
    time: dict[str, Any]  # summary of final training time (s) over replicates
    loss_ci: float  # half-width of the two-sided 1-alpha t interval of the mean loss
    time_ci: float
    pareto: bool  # (mean time, mean loss) is non-dominated among configs
    p_nondominated: float  # share of bootstrap resamples in which it is non-dominated (NaN: n < 2)
    ttest: dict[str, Any] | None  # one-sided t-test of the mean loss against the target
    to_target: dict[str, Any] | None  # reached/of replicates + summary of their times
    vs_baseline: dict[str, Any] | None  # differences from the baseline config (compare.py)


@dataclass(frozen=True)
class BudgetPoint:
    """A step of the best-loss-within-budget line, and the curve point it comes from."""

    time_s: float
    val_loss: float
    sweep: str
    trial_id: str
    step: int
    config: int


@dataclass(frozen=True)
class Report:
    fields: tuple[str, ...]  # fields shown as columns: they vary between configs
    fixed: dict[str, Any]  # fields with one value in every config (the title)
    by: tuple[str, ...] | None  # the fields configs were pooled by; None: config identity
    axes: tuple[str, ...]  # the sweep's axes (from the curves' metadata, or given)
    target: float | None
    alpha: float
    resamples: int
    configs: list[ConfigResult]
    budget: list[BudgetPoint]
    trials: Trials
    groups: Configs
    replicates: Replicates
    table: pa.Table  # the loaded rows (the lambda plots read them)
    baseline: int | None = None  # config index of the baseline
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # seeds run more than once
    warnings: list[str] = field(default_factory=list)  # for stderr (and JSON)
    skipped: list[str] = field(default_factory=list)  # files not read, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        baseline = None if self.baseline is None else {
            "config": self.baseline + 1, "key": self.configs[self.baseline].key}
        return jsonable({
            "fields": list(self.fields), "fixed": self.fixed,
            "by": None if self.by is None else list(self.by), "axes": list(self.axes),
            "target": self.target, "alpha": self.alpha, "resamples": self.resamples,
            "baseline": baseline,
            "configs": [{"number": i + 1, **asdict(c)} for i, c in enumerate(self.configs)],
            "budget_frontier": [asdict(b) for b in self.budget],
            "duplicates": self.duplicates, "warnings": self.warnings, "skipped": self.skipped,
        })


def build_report(paths: Sequence[str | os.PathLike], *, target: float | None = None,
                 axes: Sequence[str] | None = None,
                 baseline: str | Mapping[str, Any] | BaselineChoice | None = None,
                 alpha: float = 0.05, by: Sequence[str] | None = None, resamples: int = 1000,
                 seed: int = 0, lambdas: bool = False) -> Report:
    """Load every curve under `paths` (storage roots, sweep folders or curve files) and
    analyse them (see `analyse`). InputError or CurveError (ValueErrors, one line naming
    the file or option) on bad input; a file that cannot be read while walking a folder is
    skipped and listed in `report.skipped`. `lambdas`: also load the lambdas (for plots).
    """
    # the plots read every column; the numbers, only the trials' (a third of the bytes)
    loaded = load_curves(paths, columns=None if lambdas else COLUMNS)
    if loaded.table.num_rows == 0:
        why = f"{len(loaded.problems)} skipped: {loaded.problems[0]}" if loaded.problems else \
            "looked for **/curves/*.parquet"
        raise InputError(f"{', '.join(map(str, paths))}: no readable curve files ({why})")
    return analyse(loaded, target=target, axes=axes, baseline=baseline, alpha=alpha, by=by,
                   resamples=resamples, seed=seed)


def analyse(source: Loaded | pa.Table, *, target: float | None = None,
            axes: Sequence[str] | None = None,
            baseline: str | Mapping[str, Any] | BaselineChoice | None = None,
            alpha: float = 0.05, by: Sequence[str] | None = None, resamples: int = 1000,
            seed: int = 0) -> Report:
    """Trials, configs, replicates and all statistics of loaded curves.

    `target`, `axes` and `baseline` default to what the sweeps recorded in their curves
    (a recorded baseline that matches no config is a warning; a given one an InputError).
    `by` pools configs by those fields instead of config identity.
    """
    loaded = source if isinstance(source, Loaded) else Loaded(source)
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be between 0 and 1, not {alpha}")
    if resamples < 1:
        raise InputError(f"resamples: must be at least 1, not {resamples}")
    recorded = sweep_defaults(loaded)
    warnings = [*loaded.warnings, *recorded.warnings]
    axes = tuple(recorded.axes if axes is None else axes)
    target = recorded.target if target is None else target

    trials = trials_from(loaded.table)
    # The passes over every curve point are numpy's, which lets go of the GIL: they run on
    # a second core while the configs are grouped (Python), then the bootstrap does.
    with ThreadPoolExecutor(max_workers=1) as pool:
        budget = pool.submit(budget_frontier, trials.time_s, trials.val_loss)
        hits = None if target is None else pool.submit(
            time_to_target, trials.offsets, trials.time_s, trials.val_loss, target)
        groups = group_configs(trials.info, by, axes, trial_params(trials.info, loaded.params))
        members = np.flatnonzero(trials.outcome == COMPLETED)
        reps, duplicates = replicates_of(members, groups.identity, groups.index, trials.seeds())
        finals = Finals(reps, loss=reps.mean(trials.final_loss[members]),
                        time=reps.mean(trials.final_time_s[members]))
        p_nd = pool.submit(p_nondominated, finals.time, finals.loss, reps.config, len(groups),
                           resamples=resamples, seed=seed)
        base = _baseline(groups, baseline, recorded, warnings)
        ttt = None if hits is None else reps.nanmean(hits.result()[members])
        configs = _config_results(groups, trials, finals, alpha, target, ttt, base, p_nd)
        points = _budget(trials, groups, budget.result())
    dup_dicts = _duplicate_dicts(duplicates, trials, loaded)
    warnings += [_duplicate_warning(d, groups) for d in dup_dicts]
    return Report(fields=groups.fields, fixed=groups.fixed, by=groups.by, axes=axes,
                  target=target, alpha=alpha, resamples=resamples, configs=configs,
                  budget=points, trials=trials, groups=groups, replicates=reps,
                  table=loaded.table, baseline=base, duplicates=dup_dicts, warnings=warnings,
                  skipped=[str(p) for p in loaded.problems])


@dataclass(frozen=True)
class Finals:
    """Each replicate's final loss and training time (s): the mean over its trials."""

    replicates: Replicates
    loss: np.ndarray
    time: np.ndarray


def _config_results(groups: Configs, trials: Trials, finals: Finals, alpha: float,
                    target: float | None, ttt: np.ndarray | None, base: int | None,
                    p_nd: Future[np.ndarray]) -> list[ConfigResult]:
    """Each config's statistics over its replicates (`ttt`: each replicate's time to target,
    NaN if never; `p_nd`: the bootstrap, under way)."""
    n, g = len(groups), finals.replicates.config
    loss_sum, time_sum = summarize(finals.loss, g, n), summarize(finals.time, g, n)
    loss_ci, time_ci = mean_ci(loss_sum, alpha), mean_ci(time_sum, alpha)
    frontier = nondominated(time_sum.mean, loss_sum.mean)
    counts = {o: np.bincount(groups.index[trials.outcome == o], minlength=n) for o in OUTCOMES}
    ttest = None if target is None else ttest_less(finals.loss, target, alpha, g, n)
    reached = ttt_sum = None
    if ttt is not None:
        hit = ~np.isnan(ttt)
        reached = np.bincount(g[hit], minlength=n)
        ttt_sum = summarize(ttt[hit], g[hit], n)
    comparison = None if base is None else compare(finals.replicates, finals.loss, finals.time,
                                                   n, base, alpha)
    share = p_nd.result()  # of the bootstrap's resamples in which a config is non-dominated
    share[loss_sum.n < 2] = np.nan  # one replicate: resampling it shows nothing
    return [
        ConfigResult(
            key=groups.key_dict(i), config=dict(groups.keys[i]),
            counts={o: int(counts[o][i]) for o in OUTCOMES},
            loss=loss_sum.at(i), time=time_sum.at(i),
            loss_ci=float(loss_ci[i]), time_ci=float(time_ci[i]),
            pareto=bool(frontier[i]), p_nondominated=float(share[i]),
            ttest=None if ttest is None else ttest.at(i),
            to_target=None if ttt_sum is None or reached is None else
            {"reached": int(reached[i]), "of": int(loss_sum.n[i]), **ttt_sum.at(i)},
            vs_baseline=None if comparison is None else comparison.at(i),
        )
        for i in range(n)
    ]


def _duplicate_dicts(duplicates: Sequence[Duplicate], trials: Trials,
                     loaded: Loaded) -> list[dict[str, Any]]:
    """The duplicates as the report shows them: each trial by name and file."""
    if not duplicates:  # the usual case: no name made for every trial
        return []
    pairs = list(zip(trials.info["sweep"].to_pylist(), trials.info["trial_id"].to_pylist()))
    names = [f"{s}/{t}" for s, t in pairs]
    files = [str(loaded.trial_files.get(pair, name)) for pair, name in zip(pairs, names)]
    return [d.to_dict(names, files) for d in duplicates]


@dataclass(frozen=True)
class SweepDefaults:
    """What the sweeps recorded in their curves' metadata, merged over the loaded files."""

    axes: list[str]
    target: float | None
    baseline: dict[str, Any] | None
    warnings: list[str]


def sweep_defaults(loaded: Loaded) -> SweepDefaults:
    """Axes: every file's, in order of first appearance. Target and baseline: the one the
    files agree on; if they name different ones, none (with a warning)."""
    axes: dict[str, None] = {}
    targets: dict[float, Path] = {}
    baselines: dict[str, Path] = {}
    for path, meta in loaded.sweeps.items():
        axes.update(dict.fromkeys(meta["axes"]))
        if meta.get("target") is not None:
            targets.setdefault(meta["target"], path)
        if meta.get("baseline") is not None:
            baselines.setdefault(json.dumps(meta["baseline"], sort_keys=True), path)
    warnings = []
    if len(targets) > 1:
        warnings.append(f"{', '.join(map(str, list(targets.values())[:2]))}: the sweeps' "
                        f"targets differ ({', '.join(f'{t:g}' for t in targets)}); "
                        "none used, give --target")
    if len(baselines) > 1:
        warnings.append(f"{', '.join(map(str, list(baselines.values())[:2]))}: the sweeps' "
                        "baselines differ; none used, give --baseline")
    return SweepDefaults(
        axes=list(axes), target=next(iter(targets)) if len(targets) == 1 else None,
        baseline=json.loads(next(iter(baselines))) if len(baselines) == 1 else None,
        warnings=warnings)


def _baseline(groups: Configs, given: Any, recorded: SweepDefaults,
              warnings: list[str]) -> int | None:
    """The baseline config: the given one (errors raise), else the recorded one (errors
    become warnings), else none."""
    if given is not None:
        return find_baseline(groups, BaselineChoice.of(given, "baseline"))
    if recorded.baseline is None:
        return None
    try:
        return find_baseline(groups, BaselineChoice.of(recorded.baseline, "the sweep's baseline"))
    except InputError as e:
        warnings.append(f"{e}; no comparison")
        return None


def _duplicate_warning(duplicate: dict[str, Any], groups: Configs) -> str:
    number = duplicate["config"]
    label = config_label(groups.fields, groups.keys[number - 1])
    files = duplicate["files"]
    return (f"{', '.join(files)}: the same config (#{number} {label}) and seed "
            f"{duplicate['seed']} in {len(files)} trials; counted as one replicate, their mean")


def _budget(trials: Trials, groups: Configs, points: np.ndarray) -> list[BudgetPoint]:
    """The budget frontier's points (indices into the curve points), told by trial."""
    trial_of = np.searchsorted(trials.offsets, points, side="right") - 1
    sweeps = trials.info["sweep"].to_pylist()
    ids = trials.info["trial_id"].to_pylist()
    return [BudgetPoint(time_s=float(trials.time_s[p]), val_loss=float(trials.val_loss[p]),
                        sweep=sweeps[t], trial_id=ids[t], step=int(trials.step[p]),
                        config=int(groups.index[t]))
            for p, t in zip(points, trial_of)]
