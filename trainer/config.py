"""One training run's configuration: the model config plus the trainer's own fields.

A preset is a whole recipe: GPTConfig.PRESETS gives the model's half, RECIPES here the
trainer's. Flat dicts (from a sweep spec, a Tune trial or the CLI, whose `-s key=value`
settings `parse_assignments` reads) become a typed TrainConfig here, at the edge, so that a
wrong key, type, value or a batch that does not split over the workers is refused with the
field named. No torch here: dry runs import this module.

A refusal here is a TrainConfigError, an AblateError (core/errors.py) that is also the
model's ConfigError. model/ imports nothing of ours, so its own ConfigError is a plain
ValueError; `model_refusals` turns it into a TrainConfigError where the trainer builds a
model config from a person's input (from_flat; the `ablate train` run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ablate.core.checks import checked
from ablate.core.errors import AblateError, did_you_mean
from ablate.model.config import ConfigError, GPTConfig, check_fields

MAX_STEPS = 2**31 - 1  # a run's step budget: num_iterations is an int32 column of its curve

# One (a, b, c) per Newton-Schulz iteration, from the medium record (RECORD.md, Optimizers).
RECORD_NS_COEFFICIENTS: tuple[tuple[float, float, float], ...] = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)

# The trainer's half of each preset; GPTConfig.PRESETS holds the model's half. Optimizers and
# schedules are the record's in every preset (the dataclass defaults); the presets differ in
# how many tokens a step, a micro-step and a validation take, and the CPU presets' heads
# (d_model 32 and 128, not 1024) learn at 0.008 instead of 1/320: at 1/320 the tiny model's
# val loss after 100 steps is 2.83 instead of 2.42. medium is RECORD.md: 8 streams
# of 65,536 tokens a step, one stream per micro-step (one GPU's work), validation on
# 10,485,760 tokens in streams of 262,144 every 125 steps.
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_iterations=100, tokens_per_step=8 * 64, val_every=25, val_tokens=8192,
                 val_seq_len=256, lr_head=0.008),
    "small": dict(num_iterations=100, tokens_per_step=8 * 128, val_every=25, val_tokens=8192,
                  val_seq_len=512, lr_head=0.008),
    "medium": dict(num_iterations=5690, tokens_per_step=8 * 65536, micro_tokens=65536, val_every=125,
                   val_tokens=10_485_760, val_seq_len=262_144),
}



class TrainConfigError(AblateError, ConfigError):
    """An impossible model or trainer setting; the message names the field. Also the
    model's ConfigError, so `except ConfigError` catches a refusal of either half."""


@contextlib.contextmanager
def model_refusals() -> Iterator[None]:
    """The model's ConfigError raised inside, as a TrainConfigError: the model's refusals
    become AblateErrors at the door where the trainer hands it a config."""
    try:
        yield
    except ConfigError as e:
        if isinstance(e, AblateError):
            raise
        raise TrainConfigError(str(e)) from None


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe: the model and every trainer setting. Build it with `from_flat` (or
    `recipe`), which fills the preset's defaults; every field can be a sweep axis."""

    model: GPTConfig = field(default_factory=lambda: GPTConfig.preset("tiny"))
    preset: str = "tiny"
    data: str = "data/builtin"
    # the step budget; the lr schedule spans it (a cut run is not a shorter budget)
    num_iterations: int = checked(100, range=(1, MAX_STEPS), why="a curve stores it as int32")
    # Batches, in tokens. A step reads `tokens_per_step` tokens, all workers together, as
    # independent streams of `model.seq_len` tokens (documents masked, positions from 0); each
    # worker reads its own share and runs it `micro_tokens` at a time, accumulating gradients,
    # so that 1, 2, 4 or 8 workers do the same math on the same tokens.
    tokens_per_step: int = checked(512, range=(1, None))
    # tokens of one micro-step on one worker; None: its whole share
    micro_tokens: int | None = checked(None, range=(1, None))
    # steps between validations (also at step 0 and at the last step)
    val_every: int = checked(25, range=(1, None))
    # the fixed validation set: the first val_tokens (+1) tokens of the val shards
    val_tokens: int = checked(8192, range=(1, None))
    val_seq_len: int = checked(256, range=(1, None))  # tokens of one validation stream on one worker
    # the lr falls linearly to 0 over this final fraction of the steps
    cooldown_frac: float = checked(0.7, range=(0, 1))
    # Muon, on the blocks' matrices (RECORD.md, Optimizers); lr and decay follow the schedule.
    lr_muon: float = checked(0.025, range=(0, None))
    # times each matrix's multiplier (2 on the MLP)
    muon_weight_decay: float = checked(0.01, range=(0, None))
    muon_momentum: float = checked(0.95, range=(0, None), below=1)
    # momentum rises linearly from this ...
    muon_momentum_start: float = checked(0.85, range=(0, None), below=1)
    muon_momentum_warmup: int = checked(300, range=(0, None))  # ... to muon_momentum over these first steps
    muon_ns_coefficients: tuple[tuple[float, float, float], ...] = RECORD_NS_COEFFICIENTS
    muon_ns_steps: int | None = checked(None, range=(0, None))  # None: one iteration per triple
    muon_ns_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    # Adam, on input and value tables, the head and the scalars (no weight decay).
    lr_embed: float = checked(0.3, range=(0, None))
    lr_head: float = checked(1 / 320, range=(0, None))
    lr_scalar: float = checked(0.015, range=(0, None))
    adam_betas: tuple[float, float] = (0.8, 0.95)  # each in [0, 1)
    adam_eps: float = checked(1e-10, above=0)
    seed: int = checked(0, range=(0, 2**63 - 1), why="torch's seed range")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool | None = None  # None: on for CUDA, off on CPU (no steady-state gain there)
    # "bf16": tables and block matrices stored in bf16 (Muon keeps them fp32-exact), so the
    # activations run in bf16, as the record does on GPUs; "auto": bf16 on CUDA, fp32 on CPU.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile_tuning: bool = True  # inductor's coordinate-descent tuning (the medium track allows it)
    # untimed steps on random tokens, then undone; None: 10 if compiled
    warmup_steps: int | None = checked(None, range=(0, 1000),
                                       why="untimed compile warm-up; the record runs 10")
    # Steps between reads of the divergence flag (a host sync); None: every step on CPU, where
    # a read costs nothing, every 25 steps on CUDA. Validation points always read it.
    nan_check_every: int | None = checked(None, range=(1, None))
    # steps; 0 = never (must be a multiple of val_every)
    checkpoint_every: int = checked(0, range=(0, None))
    # Keep the final weights next to the curve (trainer/weights.py); None: for every preset
    # but medium, whose weights are ~1.2 GB.
    save_weights: bool | None = None
    # Where the curve goes and how its rows are labelled.
    out: str = ""
    sweep: str = "local"
    trial_id: str = "run"
    workers: int = checked(1, range=(1, None))

    def __post_init__(self):
        check_fields(self, TrainConfigError)  # each field against its type and bounds (metadata)

        def need(ok: bool, name: str, why: str):  # the rules between fields
            if not ok:
                raise TrainConfigError(f"{name}: {why}")

        need(self.checkpoint_every % self.val_every == 0, "checkpoint_every",
             f"must be a multiple of val_every ({self.val_every}): checkpoints are taken at "
             "validation points")
        need(all(0 <= b < 1 for b in self.adam_betas), "adam_betas",
             f"must be in [0, 1), got {self.adam_betas}")
        need(len(self.muon_ns_coefficients) > 0, "muon_ns_coefficients",
             "needs at least one (a, b, c) triple")
        need(self.val_seq_len % self.model.attn_block == 0, "val_seq_len",
             f"{self.val_seq_len} is not a multiple of attn_block ({self.model.attn_block})")
        self.micro_steps(self.workers)
        self.val_steps(self.workers)

    def micro_steps(self, workers: int) -> int:
        """Micro-steps each worker runs per step; refuses a batch that does not split into
        whole streams per worker, or a share that does not split into micro-steps."""
        T, share = self.model.seq_len, self.tokens_per_step // workers
        micro = self.micro_tokens_for(workers)
        if self.tokens_per_step % (workers * T):
            raise TrainConfigError(f"tokens_per_step: {self.tokens_per_step:,} does not split into "
                                   f"streams of seq_len {T:,} tokens over {workers} workers (need a "
                                   f"multiple of {workers * T:,})")
        if micro % T or share % micro:
            raise TrainConfigError(f"micro_tokens: {micro:,} must be a multiple of seq_len ({T:,}) that "
                                   f"divides each worker's {share:,} tokens a step")
        return share // micro

    def micro_tokens_for(self, workers: int) -> int:
        """Tokens of one micro-step on one worker: micro_tokens, else the worker's whole share."""
        return self.micro_tokens or self.tokens_per_step // workers

    def rows(self, workers: int) -> int:
        """Streams in one micro-step (rows of the model's input)."""
        return self.micro_tokens_for(workers) // self.model.seq_len

    def val_steps(self, workers: int) -> int:
        """Validation streams each worker runs; refuses a set that does not split evenly."""
        per = workers * self.val_seq_len
        if self.val_tokens % per:
            raise TrainConfigError(f"val_tokens: {self.val_tokens:,} does not split into streams of "
                                   f"val_seq_len {self.val_seq_len:,} tokens over {workers} workers "
                                   f"(need a multiple of {per:,})")
        return self.val_tokens // per

    def to_flat(self) -> dict[str, Any]:
        """Every field as one flat dict (model fields inline): the curve's `params` column."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        flat.update({f.name: getattr(self.model, f.name) for f in dataclasses.fields(GPTConfig)})
        return flat

    @classmethod
    def recipe(cls, preset: str, **values: Any) -> TrainConfig:
        """A preset's whole recipe, with any model or trainer field overridden."""
        return cls.from_flat({"preset": preset, **values})

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A flat dict of model and trainer fields -> TrainConfig; the preset gives the
        defaults of both halves. Unknown keys and wrong types are refused with the key named.

        `batch_size = n` is shorthand for n streams a step: tokens_per_step = n * seq_len."""
        values = dict(values)
        model_fields = {f.name: f for f in dataclasses.fields(GPTConfig)}
        train_fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "model"}
        for key in values:
            if key not in model_fields and key not in train_fields and key != "batch_size":
                raise TrainConfigError(f"{key}: unknown field (not a model or trainer setting)"
                                       f"{did_you_mean(key, [*model_fields, *train_fields, 'batch_size'])}")
        hints = _flat_hints(cls)
        for key, value in values.items():
            values[key] = _coerce(key, value, hints[key])
        model_over = {k: v for k, v in values.items() if k in model_fields}
        train = {k: v for k, v in values.items() if k in train_fields}
        preset = train.get("preset", "tiny")
        with model_refusals():
            model = GPTConfig.preset(preset, **model_over)
        if "batch_size" in values:
            streams, workers = values["batch_size"], train.get("workers", 1)
            if streams <= 0:
                raise TrainConfigError(f"batch_size: must be a positive integer, got {streams}")
            if _is_int(workers) and workers > 0 and streams % workers:
                raise TrainConfigError(f"batch_size: {streams} sequences do not split evenly over "
                                       f"{workers} workers")
            tokens = streams * model.seq_len
            if train.setdefault("tokens_per_step", tokens) != tokens:
                raise TrainConfigError(f"batch_size: {streams} streams of {model.seq_len} tokens "
                                       f"disagree with tokens_per_step {train['tokens_per_step']}")
        return cls(model=model, **{**RECIPES[preset], **train})


def parse_assignments(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """`key=value` pairs; values are read as TOML (1, 0.5, true, "one", [0, 1]) or else as
    text. The one parser of every command's `-s` (`ablate train`, `sweep`, `search-steps`)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"{flag} {item!r}: expected key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        except RecursionError:
            raise TrainConfigError(f"{flag} {key.strip()}: value nested too deeply") from None
        out[key.strip()] = value
    return out

def check_cuda_shapes(cfg: TrainConfig) -> None:
    """Refuse a head size that FlexAttention's CUDA kernels cannot take (their tiles need a
    power of two from 16), before anything runs on a GPU. Any attn_block works: the mask is
    built in blocks the kernels take (model.gpt.kernel_block)."""
    m = cfg.model
    if m.head_dim < 16 or m.head_dim & (m.head_dim - 1):
        raise TrainConfigError(f"head_dim: {m.head_dim} cannot run in FlexAttention's CUDA kernels "
                               "(a power of two from 16 is needed)")


@functools.cache
def _flat_hints(cls: type) -> dict[str, Any]:
    """The type hint of every key a flat config may hold (read once: a grid builds thousands)."""
    return {**typing.get_type_hints(GPTConfig), **typing.get_type_hints(cls), "batch_size": int}


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
            raise TrainConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)) or not value:
            raise TrainConfigError(f"{key}: must be a non-empty list, got {value!r}")
        return tuple(_coerce(key, v, args[0]) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise TrainConfigError(f"{key}: must be a list of {len(args)} values, got {value!r}")
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
    raise TrainConfigError(f"{key}: must be {hint.__name__}, got {type(value).__name__} {value!r}")
