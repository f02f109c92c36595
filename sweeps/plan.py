"""`ablate sweep SPEC --dry-run`: what a sweep would run, before anything starts.

Built from the validated spec alone (no Ray, no torch): the grid, each trial's steps, tokens
and parameters, the resources a trial reserves, how many run at once and where it all goes;
per distinct trial shape, the batch split and the estimated peak memory per GPU, which
`check_memory` holds against the spec's `[resources] gpu_memory_gb`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ablate.model.config import ConfigError, param_count
from ablate.sweeps.spec import SpecError, SweepSpec
from ablate.trainer.config import check_cuda_shapes
from ablate.trainer.memory import GIB, MemoryEstimate, describe, estimate_memory, format_bytes

DEFAULT_GPU_MEMORY_GB = 80.0  # an H100's, when the spec declares none


@dataclass(frozen=True)
class PlannedTrial:
    number: int
    axes: dict[str, Any]  # this trial's value of every axis
    seed: int
    steps: int
    tokens_per_step: int
    params: int
    micro_steps: int  # per worker and step
    micro_tokens: int  # tokens of one micro-step on one worker
    memory: MemoryEstimate  # peak per worker (per GPU on GPUs)

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def shape(self) -> tuple:
        """What sets a trial's memory and batch split: trials alike here share one estimate."""
        return (self.params, self.tokens_per_step, self.micro_steps, self.micro_tokens, self.memory)


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    folder: str
    trials: list[PlannedTrial]
    concurrency: str  # a number, or who decides it
    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB

    @property
    def shapes(self) -> dict[tuple, list[PlannedTrial]]:
        """Trials grouped by shape, in the order of their first trial."""
        groups: dict[tuple, list[PlannedTrial]] = {}
        for t in self.trials:
            groups.setdefault(t.shape, []).append(t)
        return groups

    @property
    def steps(self) -> int:
        return sum(t.steps for t in self.trials)

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.trials)


def plan(spec: SweepSpec, folder: str = "", address: str | None = None) -> Plan:
    workers, gpu = spec.resources.workers, spec.resources.gpus_per_worker > 0
    trials = []
    for number, trial in enumerate(spec.trials()):
        cfg = spec.train_config(trial)
        micro = cfg.micro_steps(workers)
        trials.append(PlannedTrial(number, {k: trial[k] for k in spec.axes}, cfg.seed,
                                   cfg.num_iterations, cfg.tokens_per_step, param_count(cfg.model),
                                   micro, cfg.micro_tokens_for(workers),
                                   estimate_memory(cfg, workers, gpu=gpu)))
    return Plan(spec, folder, trials, concurrency(spec, address), gpu_memory(spec))


def gpu_memory(spec: SweepSpec) -> float:
    """The memory one GPU has, as the spec declares it (GB of 2^30 bytes)."""
    return float(getattr(spec.resources, "gpu_memory_gb", DEFAULT_GPU_MEMORY_GB))


def host_memory() -> int:
    """Bytes of memory this machine has."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(spec: SweepSpec, embedded: bool = False) -> None:
    """Refuse a GPU spec in which a trial's estimated peak memory per GPU exceeds
    `[resources] gpu_memory_gb` (SpecError naming the trial and the numbers), or whose model
    the CUDA kernels cannot run; and, on the embedded Ray (one machine), a CPU spec whose
    trial needs more memory than the machine has (its workers run side by side here)."""
    if not spec.resources.gpus_per_worker:
        if embedded:
            check_host_memory(spec)
        return
    for trial in spec.trials():
        try:
            check_cuda_shapes(spec.train_config(trial))
        except ConfigError as e:
            raise SpecError(f"{spec.source}: {e}") from None
    p = plan(spec)
    for t in p.trials:
        if t.memory.total > p.gpu_memory_gb * GIB:
            m = t.memory
            where = f"trial {t.number}" + (f" ({_axes(t)})" if t.axes else "")
            raise SpecError(
                f"{spec.source}: resources.gpu_memory_gb: {where} needs an estimated "
                f"{m.total / GIB:.1f} GB per GPU (params {m.params / GIB:.1f}, grads "
                f"{m.grads / GIB:.1f}, optimizer {m.optimizer / GIB:.1f}, activations "
                f"{m.activations / GIB:.1f}, logits {m.logits / GIB:.1f}) at {t.micro_tokens:,} "
                f"tokens per micro-step, more than the {p.gpu_memory_gb:g} GB declared; lower "
                "micro_tokens (more micro-steps per step) or declare more memory")


def check_host_memory(spec: SweepSpec) -> None:
    p, have = plan(spec), host_memory()
    workers = spec.resources.workers
    worst = max(p.trials, key=lambda t: t.memory.total)
    need = workers * worst.memory.total
    if need > have:
        where = f"trial {worst.number}" + (f" ({_axes(worst)})" if worst.axes else "")
        raise SpecError(
            f"{spec.source}: resources: {where} needs an estimated {need / GIB:.1f} GB of memory "
            f"({workers} workers x {worst.memory.total / GIB:.1f} GB, fp32 on CPU), this machine "
            f"has {have / GIB:.1f} GB; run it on GPUs (gpus_per_worker, --address), or lower "
            "micro_tokens or the preset")


def check_data_fits(spec: SweepSpec) -> None:
    """Refuse, before anything is written, a trial whose one step (or one validation step)
    reads more tokens than the largest train (or val) shard holds: the trainer would refuse
    it only after the sweep had started. The built-in corpus is counted without being made."""
    from ablate.sweeps.spec import BUILTIN_DATA
    from ablate.trainer.data import DataError, builtin_documents, encode_bytes, find_shards, shard_length

    if spec.data == BUILTIN_DATA:
        total = len(encode_bytes(text for _, text in builtin_documents()))
        largest = {"train": total, "val": total}
        where = f"the built-in corpus ({total:,} tokens)"
    elif not os.path.isdir(spec.data):  # a cluster's path, absent here: the nodes check it
        return
    else:
        try:
            largest = {split: max(map(shard_length, find_shards(spec.data, split)))
                       for split in ("train", "val")}
        except DataError as e:
            raise SpecError(f"{spec.source}: sweep.data: {e}") from None
        where = f"{spec.data} (largest shards: {largest['train']:,} train, {largest['val']:,} val tokens)"
    workers = spec.resources.workers
    for t in spec.trials():
        cfg = spec.train_config(t)
        for split, field, tokens in (("train", "tokens_per_step", cfg.tokens_per_step),
                                     ("val", "val_seq_len", workers * cfg.val_seq_len)):
            if tokens + 1 > largest[split]:
                raise SpecError(f"{spec.source}: {field}: a {split} step reads {tokens + 1:,} tokens, "
                                f"more than {where} holds; use fewer tokens a step or more data")


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
    from rich.text import Text

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
    print_shapes(p, console)
    fixed = ", ".join(f"{k}={v}" for k, v in spec.fixed.items())
    gpus = f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
    for label, value in (
            ("preset", spec.preset + (f"; fixed: {fixed}" if fixed else "")),
            ("points", _points(spec)),
            ("total", f"{p.steps:,} steps, {_si(p.tokens)} tokens"),
            ("per trial", f"{res.workers} workers x ({res.cpus_per_worker:g} CPU{gpus}), "
                          f"placed as one gang ({res.placement})"),
            ("at once", p.concurrency),
            ("data", spec.data),
            ("tracking", _trackers(spec)),
            ("output", p.folder)):
        # a path is never broken across lines (it is copied from here), nor read as markup
        console.print(Text.assemble((f"{label:>9}", "bold"), "  ", str(value)),
                      soft_wrap=label in ("data", "output"))


def _points(spec: SweepSpec) -> str:
    """Which grid points run: all, a random draw, or TPE's choice (the trials listed above
    are then a draw of the same size: TPE chooses its points as the losses come in)."""
    method, seeds = spec.sampling.method, f"each x {len(spec.seeds)} seeds"
    if method == "grid":
        return f"{spec.grid_size:,} of the grid, {seeds}"
    chosen = (f"drawn at random (search.seed {spec.sampling.seed})" if method == "random" else
              "chosen by TPE from the losses so far (the list above: a draw of as many; the "
              "Optuna study goes to <folder>/optuna.db)")
    return f"{spec.sampling.num_samples:,} of the grid's {spec.grid_size:,}, {chosen}, {seeds}"


def _trackers(spec: SweepSpec) -> str:
    """The trackers each trial logs to, besides its curve and TensorBoard."""
    t = spec.tracking
    parts = [f"mlflow ({t.mlflow})"] if t.mlflow else []
    if t.wandb:
        parts.append(f"wandb ({t.wandb}, project {t.wandb_project}"
                     + (f", entity {t.wandb_entity})" if t.wandb_entity else ")"))
    return ", ".join(parts) or "curves and TensorBoard only"


def print_shapes(p: Plan, console) -> None:
    """One row per distinct trial shape: the batch split and the estimated peak memory, then
    the peak's parts."""
    from rich.table import Table

    gpu = bool(p.spec.resources.gpus_per_worker)
    where = f"per GPU (of {p.gpu_memory_gb:g} GB declared)" if gpu else "per CPU worker (fp32)"
    table = Table(title=f"Trial shapes: estimated peak memory {where}")
    for name in ("trials", "params", "tokens/step", "micro-steps x tokens", "peak"):
        table.add_column(name, justify="right")
    for trials in p.shapes.values():
        t, m = trials[0], trials[0].memory
        over = gpu and m.total > p.gpu_memory_gb * GIB
        peak = f"[bold red]{format_bytes(m.total)}[/]" if over else format_bytes(m.total)
        table.add_row(_ranges([x.number for x in trials]), _si(t.params), f"{t.tokens_per_step:,}",
                      f"{t.micro_steps} x {t.micro_tokens:,}", peak)
    console.print(table)
    for trials in p.shapes.values():
        console.print(f"  trials {_ranges([x.number for x in trials])}: {describe(trials[0].memory)}")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(f"{start}" if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)


def _axes(t: PlannedTrial) -> str:
    return ", ".join(f"{k}={v}" for k, v in t.axes.items())


def _si(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"
