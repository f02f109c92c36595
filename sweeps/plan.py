"""`ablate sweep SPEC --dry-run`: what a sweep would run, before anything starts.

Built from the validated spec alone (no Ray, no torch): the grid, each trial's steps, tokens
and parameters, the resources a trial reserves, how many run at once and where it all goes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ablate.model.config import param_count
from ablate.sweeps.spec import SweepSpec


@dataclass(frozen=True)
class PlannedTrial:
    number: int
    axes: dict[str, Any]  # this trial's value of every axis
    seed: int
    steps: int
    tokens_per_step: int
    params: int

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    folder: str
    trials: list[PlannedTrial]
    concurrency: str  # a number, or who decides it

    @property
    def steps(self) -> int:
        return sum(t.steps for t in self.trials)

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.trials)


def plan(spec: SweepSpec, folder: str, address: str | None = None) -> Plan:
    trials = []
    for number, trial in enumerate(spec.trials()):
        cfg = spec.train_config(trial)
        trials.append(PlannedTrial(number, {k: trial[k] for k in spec.axes}, cfg.seed,
                                   cfg.num_iterations, cfg.tokens_per_step, param_count(cfg.model)))
    return Plan(spec, folder, trials, concurrency(spec, address))


def concurrency(spec: SweepSpec, address: str | None) -> str:
    """Trials at once: the spec's cap, else what the embedded Ray's CPUs hold (the same rule
    the sweep applies once Ray is up); a cluster decides its own."""
    if spec.max_concurrent_trials:
        return f"{spec.max_concurrent_trials} (sweep.max_concurrent_trials)"
    if address:
        return "as many as the cluster's free CPUs/GPUs hold"
    res = spec.resources
    if res.gpus_per_worker:
        return "as many as the machine's GPUs hold"
    per_trial = res.workers * res.cpus_per_worker
    fits = max(1, int((os.cpu_count() or 1) // per_trial))
    return f"{fits} (this machine's {os.cpu_count()} CPUs / {per_trial:g} per trial)"


def print_plan(p: Plan, console) -> None:
    from rich.table import Table

    spec, res = p.spec, p.spec.resources
    table = Table(title=f"{spec.name}: {len(p.trials)} trials ({spec.source})")
    table.add_column("#", justify="right")
    for name in spec.axes:
        table.add_column(name, overflow="fold")
    for name in ("seed", "steps", "tokens/step", "params"):
        table.add_column(name, justify="right")
    for t in p.trials:
        table.add_row(str(t.number), *(str(v) for v in t.axes.values()), str(t.seed),
                      f"{t.steps:,}", f"{t.tokens_per_step:,}", _si(t.params))
    console.print(table)
    fixed = ", ".join(f"{k}={v}" for k, v in spec.fixed.items())
    gpus = f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
    for label, value in (
            ("preset", spec.preset + (f"; fixed: {fixed}" if fixed else "")),
            ("total", f"{p.steps:,} steps, {_si(p.tokens)} tokens"),
            ("per trial", f"{res.workers} workers x ({res.cpus_per_worker:g} CPU{gpus}), "
                          f"placed as one gang ({res.placement})"),
            ("at once", p.concurrency),
            ("data", spec.data),
            ("output", p.folder)):
        console.print(f"[bold]{label:>9}[/]  {value}")


def _si(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"
