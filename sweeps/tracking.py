"""Sweeps in the trackers researchers already use: MLflow and Weights & Biases, through Ray
Tune's own logger callbacks. One run per trial; the sweep is the MLflow experiment and the W&B
group; the trial's config is the run's parameters; val_loss, train_loss, train_time_ms and
tokens_seen are logged at each validation point with the training step as their step.

Ray's callbacks (and Tune's TensorBoard logger) take a metric's step from Tune's
`training_iteration`, the count of a trial's reports (which restarts after a resume), not the
training step. Each subclass here differs from Ray's in one method: it hands the callback the
trial's metrics with the training step in that key.

The trackers' packages are optional extras: `check` refuses a missing one before Ray starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import netrc
import os
import sys
from collections.abc import Set
from pathlib import Path
from typing import Any

from ablate.sweeps.spec import SpecError, Tracking

METRICS = ("val_loss", "train_loss", "train_time_ms", "tokens_seen")
MLFLOW_DB = "mlflow.db"  # tracking.mlflow = "local": <storage>/<sweep>/mlflow.db
EXTRAS = {"mlflow": "ablate-sweeps[mlflow]", "wandb": "ablate-sweeps[wandb]"}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: imports of it are blocked
        return False


def check(tracking: Tracking, folder: str) -> None:
    """Refuse, before Ray starts, tracking that cannot work: a tracker whose package is not
    installed, a local MLflow store on URI storage, W&B online without an API key."""
    from ablate.sweeps.storage import is_uri

    for name in ("mlflow", "wandb"):
        if getattr(tracking, name) and not installed(name):
            raise SpecError(f"tracking.{name}: the {name} package is not installed; "
                            f"pip install '{EXTRAS[name]}'")
    if tracking.mlflow == "local" and is_uri(folder):
        raise SpecError(f"tracking.mlflow: 'local' keeps runs in {MLFLOW_DB} in the sweep's "
                        f"folder, which must be local, not {folder}; give a tracking URI "
                        "(http://host:5000, sqlite:////path/mlflow.db)")
    if tracking.wandb == "online" and not wandb_key():
        raise SpecError("tracking.wandb: online needs a W&B API key: run `wandb login` or set "
                        "WANDB_API_KEY (or use 'offline' and `wandb sync` later)")


def wandb_key() -> bool:
    """Whether W&B has an API key to use: WANDB_API_KEY, or `wandb login`'s netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def mlflow_uri(tracking: Tracking, folder: str) -> str | None:
    if tracking.mlflow == "local":
        return f"sqlite:///{Path(folder).resolve() / MLFLOW_DB}"
    return tracking.mlflow


def at_step(result: dict[str, Any]) -> dict[str, Any]:
    """A Tune result as the trackers get it: the trial's metrics, and the training step where
    Ray's callbacks look for the step."""
    from ray.air.constants import TRAINING_ITERATION

    metrics = {k: result[k] for k in METRICS
               if isinstance(result.get(k), (int, float)) and not isinstance(result[k], bool)}
    return metrics | {TRAINING_ITERATION: result.get("step", 0)}


def callbacks(tracking: Tracking, sweep: str, folder: str, finished: Set[str] = frozenset()) -> list:
    """Tune logger callbacks for a sweep: TensorBoard with the training step as x-axis (in
    place of Tune's own, which would use the report count), then MLflow and W&B if asked.
    `finished`: trials an earlier session finished (a resumed sweep replays them at once):
    they were logged then, and get no second run."""
    from ablate.sweeps.storage import is_uri

    out: list = []
    try:  # Tune's switch for its own loggers switches this one off too
        if os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0") != "1":
            with torch_refused():
                out.append(step_logger("StepTBXLogger")())
    except ImportError:  # no tensorboardX: Tune writes no TensorBoard files either
        pass
    if tracking.mlflow:
        out.append(step_logger("StepMLflowLogger")(tracking_uri=mlflow_uri(tracking, folder),
                                                  experiment_name=sweep, tags={"sweep": sweep}))
    if tracking.wandb:
        init: dict[str, Any] = {"mode": tracking.wandb}
        if tracking.wandb_entity:
            init["entity"] = tracking.wandb_entity
        if not is_uri(folder):  # offline runs land in <sweep>/wandb/, for `wandb sync`
            init["dir"] = str(Path(folder).resolve())
        out.append(step_logger("StepWandbLogger")(project=tracking.wandb_project, group=sweep, **init))
    prepare(tracking)
    for logger in out:
        logger.finished = set(finished)
    return out


@contextlib.contextmanager
def torch_refused():
    """tensorboardX imports torch only to name a type in its annotations; the driver never
    needs torch otherwise, so that import is refused while tensorboardX loads (it then names
    numpy's type): 2-3 s of CPU and some 300 MB less in every driver."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


def prepare(tracking: Tracking) -> None:
    """What the trackers need of this process before a Tuner runs (a new one, or one restored
    with its callbacks): W&B offline asks Ray for no API key only through WANDB_MODE; MLflow 3
    refuses a file store unless told; MLflow's own set-up messages stay out of our log."""
    if tracking.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    if tracking.mlflow and tracking.mlflow.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if tracking.mlflow:
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: it sets INFO


_BASES = {"StepTBXLogger": ("ray.tune.logger.tensorboardx", "TBXLoggerCallback"),
          "StepMLflowLogger": ("ray.air.integrations.mlflow", "MLflowLoggerCallback"),
          "StepWandbLogger": ("ray.air.integrations.wandb", "WandbLoggerCallback")}


def step_logger(name: str) -> type:
    """`StepTBXLogger`, `StepMLflowLogger`, `StepWandbLogger`: Ray's logger callback, logging
    the trial's metrics at the training step. Made on first use, and kept as an attribute of
    this module (where pickle finds it: Tune pickles its callbacks with the Tuner): Ray's modules
    for them import mlflow and wandb, a second or two that a sweep tracking nothing saves."""
    if name in globals():
        return globals()[name]
    module, base_name = _BASES[name]
    base = getattr(importlib.import_module(module), base_name)

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]):
        base.log_trial_result(self, iteration, trial, at_step(result))

    def unless_finished(hook: str):
        def call(self, iteration, trials, trial, *args, **info):
            if trial.trial_id not in getattr(self, "finished", ()):
                getattr(base, hook)(self, iteration, trials, trial, *args, **info)
        return call

    hooks = {hook: unless_finished(hook) for hook in (
        "on_trial_start", "on_trial_restore", "on_trial_save", "on_trial_result",
        "on_trial_complete", "on_trial_error")}
    cls = type(name, (base,), {"log_trial_result": log_trial_result, **hooks,
                               "__module__": __name__, "__qualname__": name,
                               "__doc__": step_logger.__doc__})
    globals()[name] = cls
    return cls
