"""Trials to inspect: a curve, the weights beside it, and the model they make.

A folder contributes every `**/curves/*.parquet` under it; a curve or a weights file names
one trial. A trial whose weights are missing, truncated or of another config is refused
with one line naming the file, and the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ablate.core.states import COMPLETED
from ablate.model.config import ConfigError, GPTConfig
from ablate.model.gpt import GPT
from ablate.results.curves import SWEEP_KEY, CurveError, final_point, meta_of, read_curve
from ablate.results.errors import InputError
from ablate.results.load import find_curves
from ablate.trainer.weights import SUFFIX, WeightsError, curve_of, load_weights, weights_path


@dataclass
class Trial:
    """One trial with its trained model (fp32, CPU, eval mode)."""

    curve: Path
    weights: Path
    config: dict[str, Any]  # the trial's full config (curve metadata)
    params: str  # the curve's params JSON: what config identity reads
    axes: list[str]  # the sweep's axes, if it saved them
    val_loss: float
    model: GPT

    @property
    def trial_id(self) -> str:
        return str(self.config.get("trial_id", self.curve.stem))

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def find_trial_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Curve files named by the arguments (a weights file stands for the curve beside it)."""
    curves = []
    for path in map(Path, paths):
        if path.is_file() and path.name.endswith(SUFFIX):
            curves.append(curve_of(path))
        elif path.is_file() or path.is_dir():
            direct, found = find_curves([path])
            curves += direct + found
        else:
            raise InputError(f"{path}: no such file or directory")
    return list(dict.fromkeys(curves))


def model_config(config: dict[str, Any]) -> GPTConfig:
    """The GPTConfig of a trial's flat config (fields it lacks take their defaults)."""
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in config.items() if k in fields})


def build_model(state: dict[str, torch.Tensor], cfg: GPTConfig, path: Path) -> GPT:
    """The model of `cfg` holding `state`; WeightsError if the tensors do not fit it."""
    with torch.device("meta"):
        model = GPT(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise WeightsError(f"{path}: tensors do not fit the trial's model ({first})") from None
    model.make_rotary(model.rope_cos.size(0), device=model.lm_head.weight.device)
    return model.float().eval()


def load_trial(curve: Path) -> Trial:
    """A trial from its curve; CurveError or WeightsError (one line) if it cannot be read."""
    table = read_curve(curve)  # read once: its rows and its footer's metadata
    meta = meta_of(table.schema)
    last = final_point(table.select(["step", "status", "val_loss", "params"]))
    if last is None:
        raise CurveError(f"{curve}: empty curve")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CurveError(f"{curve}: no trial config in its metadata")
    weights = weights_path(curve)
    if last["status"] != COMPLETED and not weights.exists():
        raise WeightsError(f"{weights}: no weights (the trial is {last['status']})")
    state, _ = load_weights(weights, expected=config)
    try:
        cfg = model_config(config)
    except (ConfigError, TypeError) as e:
        raise CurveError(f"{curve}: its config does not make a model ({e})") from None
    sweep = meta.get(SWEEP_KEY) or {}
    axes = [a for a in sweep.get("axes", []) if isinstance(a, str)]
    params = last["params"] or json.dumps(config, default=str)
    return Trial(curve=curve, weights=weights, config=config, params=params, axes=axes,
                 val_loss=float(last["val_loss"]), model=build_model(state, cfg, weights))


def load_trials(paths: Sequence[str | os.PathLike]) -> tuple[list[Trial], list[str]]:
    """(the trials that could be read, one line per trial that could not)."""
    trials, problems = [], []
    for curve in find_trial_files(paths):
        try:
            trials.append(load_trial(curve))
        except (CurveError, WeightsError) as e:
            problems.append(str(e))
    return trials, problems
