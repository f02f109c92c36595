"""The bridge from Ray to the trainer: a Tune trial runs one Ray Train job of W workers.

Ray 2.60 runs Train V2: the Tuner's trainable is a plain Tune function that builds a
TorchTrainer and fits it; TuneReportCallback forwards the workers' reports to Tune. The Train
run is named after the Tune trial, so a restarted trial resumes from its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.train
from ray import tune
from ray.train import Checkpoint, FailureConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from results.curves import curve_path
from trainer.config import TrainConfig
from trainer.train import train


class RayReporter:
    """Sends each validation point (and rank 0's checkpoint) through ray.train.report, which
    every worker calls the same number of times."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(checkpoint))
                         if checkpoint is not None else None)


def train_worker(config: dict[str, Any]) -> None:
    """Per-worker function of the TorchTrainer: the process group is already set up."""
    cfg = TrainConfig.from_flat(config)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        train(cfg, RayReporter())
        return
    with checkpoint.as_directory() as folder:
        train(cfg, RayReporter(), resume=folder)


def run_trial(config: dict[str, Any], *, settings: dict[str, Any]) -> None:
    """Tune trainable: one trial = one distributed training of the trial's config."""
    trial_id = tune.get_context().get_trial_id()
    storage, sweep, res = settings["storage"], settings["sweep"], settings["resources"]
    labels = dict(data=settings["data"], sweep=sweep, trial_id=trial_id, workers=res["workers"],
                  out=str(curve_path(storage, sweep, trial_id)))
    gpus = res["gpus_per_worker"]
    per_worker = {"CPU": res["cpus_per_worker"]} | ({"GPU": gpus} if gpus else {})
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={**config, **labels},
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ScalingConfig(num_workers=res["workers"], use_gpu=bool(gpus),
                                     resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=trial_id, storage_path=str(Path(storage) / sweep / "train"),
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=settings["max_failures"])),
    )
    trainer.fit()
