"""Spec -> Ray Tune Tuner -> trials, on an embedded local Ray or a cluster.

The trial's own driver holds only a custom `trial_slot` resource (never a CPU its workers
need); its workers reserve W x (CPU, GPU) as one gang through Ray Train's scaling config.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sweeps.spec import SweepSpec

TRIAL_SLOT = "trial_slot"
# Ray Train's controller polls workers every 2 s by default and ray.train.report blocks until
# it does: with reports only at validation points, 0.1 s keeps that wait negligible.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join a cluster (`address`) or start the embedded local Ray, bound to 127.0.0.1 with no
    dashboard; either way shut it down after."""
    import ray

    os.environ.update(RAY_ENV)  # the local raylet and its workers inherit these
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress view replaces Tune's
    kwargs = dict(runtime_env={"env_vars": dict(RAY_ENV)}, log_to_driver=False,
                  configure_logging=True, logging_level="ERROR")
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), resources={TRIAL_SLOT: 1000},
                 include_dashboard=False, _node_ip_address="127.0.0.1", **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def trial_resources() -> dict[str, float]:
    """What a trial's driver reserves: a trial slot where the cluster declares them (the
    embedded Ray does), else a sliver of CPU (Ray refuses a zero-resource trial)."""
    import ray

    return {TRIAL_SLOT: 1} if ray.cluster_resources().get(TRIAL_SLOT) else {"CPU": 0.01}


def concurrent_trials(spec: SweepSpec) -> int:
    """How many trials the cluster can hold at once: more would only queue Train workers (and
    their processes) behind a busy CPU or GPU, and time each other's training unfairly."""
    import ray

    total = ray.cluster_resources()
    res = spec.resources
    fits = [total.get("CPU", 0) // (res.workers * res.cpus_per_worker) if res.cpus_per_worker else None,
            total.get("GPU", 0) // (res.workers * res.gpus_per_worker) if res.gpus_per_worker else None]
    fits = [int(f) for f in fits if f is not None]
    return max(1, min(fits)) if fits else 1


def build_tuner(spec: SweepSpec, storage: Path, data: Path, callbacks: list | None = None):
    from ray import tune

    from sweeps.worker import run_trial

    storage = storage.resolve()
    settings = dict(storage=str(storage), sweep=spec.name, data=str(data),
                    resources=vars(spec.resources), max_failures=spec.max_failures)
    space = {name: tune.grid_search(values) for name, values in spec.axes.items()}
    space |= {"seed": tune.grid_search(list(spec.seeds)), "preset": spec.preset, **spec.fixed}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings),
                                    trial_resources())
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials or concurrent_trials(spec)),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(storage), verbose=0,
                                  callbacks=callbacks or []),
    )
