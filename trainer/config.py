"""One training run's configuration: the model config plus the trainer's own fields.

Flat dicts (from a sweep spec, a Tune trial or the CLI) become a typed TrainConfig here, at
the edge, so that a wrong key, type or value is refused with the field named.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ablate.model.config import ConfigError, GPTConfig


@dataclass(frozen=True)
class TrainConfig:
    model: GPTConfig = field(default_factory=lambda: GPTConfig.preset("tiny"))
    preset: str = "tiny"
    data: str = "data/builtin"
    num_iterations: int = 100
    batch_size: int = 8  # sequences per step, all workers together
    val_every: int = 25
    val_tokens: int = 8192
    cooldown_frac: float = 0.7  # final fraction of steps over which the lr decays linearly
    final_lr_frac: float = 0.1  # lr multiplier reached at the last step
    lr_muon: float = 0.05  # defaults after the record scripts; any of them can be a sweep axis
    lr_embed: float = 0.3
    lr_head: float = 0.008
    lr_scalar: float = 0.04
    adam_betas: tuple[float, float] = (0.8, 0.95)
    muon_momentum: float = 0.95
    muon_momentum_warmup: int = 300  # steps over which Muon's momentum rises from 0.85
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool | None = None  # None: on for CUDA, off on CPU (no steady-state gain there)
    warmup_steps: int | None = None  # untimed steps (then undone) that compile; None: 10 if compiled
    checkpoint_every: int = 0  # steps; 0 = never (must be a multiple of val_every)
    # Where the curve goes and how its rows are labelled.
    out: str = ""
    sweep: str = "local"
    trial_id: str = "run"
    workers: int = 1

    def __post_init__(self):
        def need(ok: bool, name: str, why: str):
            if not ok:
                raise ConfigError(f"{name}: {why}")

        for name in ("num_iterations", "batch_size", "val_every", "val_tokens"):
            v = getattr(self, name)
            need(_is_int(v) and v > 0, name, f"must be a positive integer, got {v!r}")
        need(_is_int(self.checkpoint_every) and self.checkpoint_every >= 0, "checkpoint_every",
             f"must be a non-negative integer, got {self.checkpoint_every!r}")
        need(self.checkpoint_every % self.val_every == 0, "checkpoint_every",
             f"must be a multiple of val_every ({self.val_every}): checkpoints are taken at "
             "validation points")
        need(0 <= self.cooldown_frac <= 1, "cooldown_frac", f"must be in [0, 1], got {self.cooldown_frac}")
        need(0 <= self.final_lr_frac <= 1, "final_lr_frac", f"must be in [0, 1], got {self.final_lr_frac}")
        for name in ("lr_muon", "lr_embed", "lr_head", "lr_scalar"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(self.device in ("auto", "cpu", "cuda"), "device",
             f"must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        need(_is_int(self.workers) and self.workers >= 1, "workers", "must be a positive integer")
        need(self.batch_size % self.workers == 0, "batch_size",
             f"{self.batch_size} sequences do not split evenly over {self.workers} workers")
        need(self.val_tokens >= self.model.seq_len, "val_tokens",
             f"must hold at least one sequence ({self.model.seq_len} tokens)")
        need(self.warmup_steps is None or (_is_int(self.warmup_steps) and self.warmup_steps >= 0),
             "warmup_steps", "must be a non-negative integer")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.seq_len

    def to_flat(self) -> dict[str, Any]:
        """Every field as one flat dict (model fields inline): the curve's `params` column."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        flat.update({f.name: getattr(self.model, f.name) for f in dataclasses.fields(GPTConfig)})
        return flat

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A flat dict of model and trainer fields -> TrainConfig; the preset gives the model's
        defaults. Unknown keys and wrong types are refused with the key named."""
        values = dict(values)
        model_fields = {f.name: f for f in dataclasses.fields(GPTConfig)}
        train_fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "model"}
        for key in values:
            if key not in model_fields and key not in train_fields:
                raise ConfigError(f"{key}: unknown field (not a model or trainer setting)")
        hints = {**typing.get_type_hints(GPTConfig), **typing.get_type_hints(cls)}
        for key, value in values.items():
            values[key] = _coerce(key, value, hints[key])
        model_over = {k: v for k, v in values.items() if k in model_fields}
        train = {k: v for k, v in values.items() if k in train_fields}
        preset = train.get("preset", "tiny")
        return cls(model=GPTConfig.preset(preset, **model_over), **train)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a value against a field's type hint; ints are accepted where floats are due."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            if arm is type(None) and value is None:
                return None
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(key, value, arm)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if _is_int(value):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{key}: must be {hint.__name__}, got {type(value).__name__} {value!r}")
