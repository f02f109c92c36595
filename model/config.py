"""The model's configuration: presets, validation, the attention-window schedule and the
parameter-count formula.

Each field declares its own bounds (`field(metadata=POSITIVE)`, `{"range": (0, 5)}`), and
`check_fields` reads them, with the type hints: GPTConfig and the trainer's TrainConfig are
checked by the same table. Rules between fields stay as plain lines in __post_init__. The
model imports nothing of ours, so this small checker lives here (core/checks.py checks raw
spec tables with the same metadata words).

No torch here: a sweep spec is validated, and `ablate --help` answers, without importing it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_EXTRA_EMBEDDINGS = 5
MAX_VOCAB = 2**16  # token ids the shard format holds (uint16)
LAYER_KINDS = {"L": "long window", "S": "short window", "-": "no attention"}
WINDOW_SCHEDULES = ("cubic", "linear", "constant")
# Field metadata read by check_fields: range = (lo, hi) inclusive (None: open), above / below
# strict bounds, why = said after the bound.
POSITIVE = {"range": (1, None)}
NON_NEGATIVE = {"range": (0, None)}


def non_finite(value) -> str | None:
    """The first NaN or infinity in a number or a (nested) tuple or list of them, as text;
    None if there is none. Bounds such as `x >= 0` let infinity through, and NaN fails every
    comparison silently, so every float field is checked for this first."""
    if isinstance(value, float):
        return None if math.isfinite(value) else str(value)
    if isinstance(value, (tuple, list)):
        return next((v for v in map(non_finite, value) if v is not None), None)
    return None


class ConfigError(ValueError):
    """An impossible model config; the message names the field."""


def check_fields(config: Any, error: type[Exception] = ConfigError) -> None:
    """Refuse the first field of a config dataclass whose value breaks its declaration: NaN or
    infinity anywhere (they pass `>= 0` or fail every comparison silently), then its type hint
    (an int is no bool, a float may be an int, a Literal's choices, X | None) and its
    metadata's bounds, in one line: `extra_embeddings: must be an integer in 0..5, got 7`.
    Fields of other types (tuples, a nested config) get only the finiteness check."""
    for name, kind, optional, rules in _declared(type(config)):
        value = getattr(config, name)
        bad = non_finite(value)
        if bad is not None:
            raise error(f"{name}: must be finite, got {bad}")
        why = None if value is None and optional else _field_error(value, kind, rules)
        if why is not None:
            raise error(f"{name}: {why}")


@functools.cache
def _declared(cls: type) -> tuple[tuple[str, Any, bool, Any], ...]:
    """(name, type, whether None is allowed, metadata) of each field of a config class,
    read once: a grid builds thousands of configs."""
    hints, out = typing.get_type_hints(cls), []
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        arms = typing.get_args(hint) if union else (hint,)
        kind = next(arm for arm in arms if arm is not type(None))
        out.append((spec.name, kind, type(None) in arms, spec.metadata))
    return tuple(out)


def _field_error(value: Any, kind: Any, rules: Any) -> str | None:
    if kind is int or kind is float:
        return _number_error(value, kind, rules)
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if isinstance(value, str) and value in choices:
            return None
        return f"must be {', '.join(map(repr, choices[:-1]))} or {choices[-1]!r}, got {value!r}"
    if kind is bool or kind is str:
        return None if isinstance(value, kind) else f"must be {_NOUNS[kind]}, got {value!r}"
    return None  # tuples, a nested config: their own checks


def _number_error(value: Any, kind: type, rules: Any) -> str | None:
    lo, hi = rules.get("range", (None, None))
    above, below = rules.get("above"), rules.get("below")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (kind is float or isinstance(value, int)) and (lo is None or value >= lo) \
            and (hi is None or value <= hi) and (above is None or value > above) \
            and (below is None or value < below):
        return None
    why = f" ({rules['why']})" if "why" in rules else ""
    return f"must be {_bounded_noun(kind, lo, hi, above, below)}{why}, got {value!r}"


_NOUNS = {bool: "true or false", str: "text", int: "an integer", float: "a number"}


def _bounded_noun(kind: type, lo: Any, hi: Any, above: Any, below: Any) -> str:
    """'a positive integer', 'an integer in 0..5', 'a number in (0, 1]', 'a number >= 0'."""
    noun = _NOUNS[kind]
    if kind is int and hi is None and lo in (0, 1):
        return "a non-negative integer" if lo == 0 else "a positive integer"
    if kind is int and lo is not None and hi is not None:
        return f"{noun} in {lo}..{_bound(hi)}"
    if kind is float and above == 0 and hi is None and below is None:
        return "a positive number"
    low = f"[{lo}" if lo is not None else f"({above}" if above is not None else ""
    high = f"{hi}]" if hi is not None else f"{below})" if below is not None else ""
    if low and high:
        return f"{noun} in {low}, {high}"
    one_side = (f">= {lo}" if lo is not None else f"> {above}" if above is not None else
                f"<= {hi}" if hi is not None else f"< {below}" if below is not None else "")
    return f"{noun} {one_side}".rstrip()


def _bound(value: int) -> str:
    """1000; 100,000; 2^63-1 for the top of a 64-bit range."""
    if value >= 2**31 - 1 and (value + 1).bit_count() == 1:
        return f"2^{(value + 1).bit_length() - 1}-1"
    return f"{value:,}" if abs(value) >= 10_000 else str(value)


@dataclass(frozen=True)
class GPTConfig:
    """The GPT's shape and structure. Defaults are the medium record (34f5696 at
    extra_embeddings = 1, its parent at 0); `preset` maps it onto the CPU sizes."""

    # rows of the input and value tables: the token ids data may hold (up to MAX_VOCAB)
    vocab_size: int = field(default=50257, metadata=POSITIVE)
    # head rows: vocab_size rounded up to this (padding rows join the loss)
    vocab_multiple: int = field(default=128, metadata=POSITIVE)
    eot_token: int = 50256  # <|endoftext|>, first token of every document: the document mask's cue
    n_layer: int = field(default=16, metadata=POSITIVE)
    n_head: int = field(default=8, metadata=POSITIVE)
    head_dim: int = field(default=128, metadata=POSITIVE)
    d_model: int = field(default=1024, metadata=POSITIVE)
    mlp_ratio: int = field(default=4, metadata=POSITIVE)
    # tokens of one training stream (one micro-step on one worker)
    seq_len: int = field(default=65536, metadata=POSITIVE)
    value_embeds: int = 5  # tables used by the first and again by the last `value_embeds` layers
    # One letter per layer: L long window, S short window, - no attention.
    attn_pattern: str = "LSSSLSS-SSSLSSSL"
    # U-net skips "src->dst": block src's output, times a learned weight, joins the stream
    # before block dst's mix.
    skips: str = "6->9,4->10,2->11"
    # the window's granularity, in tokens (FlexAttention's block size)
    attn_block: int = field(default=128, metadata=POSITIVE)
    # the long window at the end of training, in tokens
    window_final: int = field(default=3456, metadata=POSITIVE)
    window_schedule: Literal["cubic", "linear", "constant"] = "cubic"
    # Progress at which the window reaches window_final: the record's 1.0 (its last step, +4%
    # at 27 blocks), earlier where a few blocks make each step a large one, so that the model
    # trains at its final window before the lr has gone.
    window_full_at: float = field(default=1.0, metadata={"above": 0, "range": (None, 1)})
    # attention logit scale (q and k are RMS-normed)
    attn_scale: float = field(default=0.12, metadata={"above": 0})
    # rotary frequencies run 1 .. this over head_dim//4 pairs
    rotary_min_freq: float = field(default=1 / 1024, metadata={"above": 0, "range": (None, 1)})
    # cap * z / sqrt(z^2 + cap^2); 0 disables
    logit_softcap: float = field(default=15.0, metadata=NON_NEGATIVE)
    # evaluation computes the logits in this many chunks (memory)
    eval_chunks: int = field(default=4, metadata=POSITIVE)
    # The ablation axes.
    extra_embeddings: int = field(default=0, metadata={"range": (0, MAX_EXTRA_EMBEDDINGS)})
    lambda_init: Literal["zero", "one"] = "zero"
    token_lambdas: bool = False
    token_lambda_init: float = 1.0

    PRESETS = {
        "tiny": dict(vocab_size=257, vocab_multiple=64, eot_token=256, n_layer=4, n_head=2,
                     head_dim=16, d_model=32, seq_len=64, value_embeds=1, attn_pattern="L-SL",
                     skips="0->3", attn_block=8, window_final=48, window_full_at=0.65,
                     attn_scale=0.34),
        "small": dict(vocab_size=257, vocab_multiple=64, eot_token=256, n_layer=6, n_head=4,
                      head_dim=32, d_model=128, seq_len=128, value_embeds=2,
                      attn_pattern="LS-SSL", skips="1->4", attn_block=16, window_final=96,
                      window_full_at=0.65, attn_scale=0.24),
        "medium": dict(),  # every default above: the record
    }

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """A preset, with any field overridden.

        `medium` is the record model (GPU only). `tiny` (CPU tests, a step in milliseconds)
        and `small` (CPU demo, minutes) keep its structure at small sizes, on the built-in
        byte corpus:

        | record (medium)                          | tiny                  | small                  |
        | ---------------------------------------- | --------------------- | ---------------------- |
        | 16 layers, d 1024, 8 heads of 128        | 4, d 32, 2 of 16      | 6, d 128, 4 of 32      |
        | vocab 50257, head 50304 (x128)           | 257, head 320 (x64)   | 257, head 320 (x64)    |
        | documents cut at 50256                   | at 256 (bytes' EOT)   | at 256                 |
        | 5 value tables: blocks 0-4 and 11-15     | 1: blocks 0 and 3     | 2: blocks 0-1 and 4-5  |
        | block 7 (before the middle) no attention | block 1               | block 2                |
        | skips 6->9, 4->10, 2->11                 | 0->3                  | 1->4                   |
        | long windows on 0, 4, 11, 15             | on 0 and 3 (first, last) | on 0 and 5          |
        | stream 65,536; window to 3456 in 128s    | 64; to 48 in 8s       | 128; to 96 in 16s      |
        | final window at the last step (27th: +4%) | at 65% of steps (6th: +20%) | at 65%     |
        | attention scale 0.12 (head_dim 128)      | 0.34 = 0.12 sqrt(128/16) | 0.24 = 0.12 sqrt(128/32) |

        The attention scale keeps the record's ratio to 1/sqrt(head_dim), so that attention
        logits start as spread as the record's. With 6 blocks a window step is a large one:
        reached at the last steps (as the record's 27th block is), it leaves the model no time
        to train at it and the final val loss rises above the one before (2.40 -> 2.43 on the
        demo); the small presets reach their final window at 65% of the steps, the end of the
        lr cooldown's first half.
        """
        if name not in cls.PRESETS:
            raise ConfigError(f"preset: unknown preset {name!r} (choose from {', '.join(cls.PRESETS)})")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a model field")
        return cls(**{**cls.PRESETS[name], **overrides})

    def __post_init__(self):
        check_fields(self)  # each field against its type and bounds; below, the rules between fields

        def need(ok: bool, name: str, why: str):
            if not ok:
                raise ConfigError(f"{name}: {why}")

        need(self.vocab_size <= MAX_VOCAB, "vocab_size",
             f"at most {MAX_VOCAB:,} (token shards store ids as uint16), got {self.vocab_size:,}")
        need(0 <= self.eot_token < self.vocab_size, "eot_token",
             f"must be a token id in 0..{self.vocab_size - 1}, got {self.eot_token!r}")
        need(self.n_head * self.head_dim == self.d_model, "n_head",
             f"n_head * head_dim ({self.n_head} * {self.head_dim}) must equal d_model ({self.d_model})")
        need(self.head_dim % 4 == 0, "head_dim",
             f"must be a multiple of 4 (half-truncated rotary), got {self.head_dim}")
        need(0 <= self.value_embeds <= self.n_layer // 2,
             "value_embeds", f"must be in 0..n_layer//2 ({self.n_layer // 2}), got {self.value_embeds!r}")
        need(len(self.attn_pattern) == self.n_layer,
             "attn_pattern", f"needs one letter per layer ({self.n_layer}), got {self.attn_pattern!r}")
        for i, c in enumerate(self.attn_pattern):
            need(c in LAYER_KINDS, "attn_pattern", f"unknown layer kind {c!r} at layer {i} "
                 "(L long window, S short window, - no attention)")
        _ = self.skip_pairs  # parses and checks the map
        for i in self.value_layers:
            need(self.attn_pattern[i] != "-", "attn_pattern",
                 f"layer {i} reads a value table (value_embeds) but has no attention")
        need(self.seq_len % self.attn_block == 0, "seq_len",
             f"{self.seq_len} is not a multiple of attn_block ({self.attn_block})")
        need(self.window_final <= self.seq_len, "window_final",
             f"{self.window_final} tokens is longer than the sequence (seq_len {self.seq_len})")
        # Zero-gradient trap: the token lambda multiplies x00, whose per-layer scalar starts at
        # 0 with lambda_init "zero". If both factors start at 0, neither ever gets a gradient.
        need(not (self.token_lambdas and self.lambda_init == "zero" and self.token_lambda_init == 0),
             "token_lambda_init", "0 with lambda_init 'zero' is a zero-gradient trap: the product "
             "of two zero-initialised factors never receives a gradient")

    @property
    def n_mix(self) -> int:
        """Mixing weights per block: the residual, then x00 and each extra table."""
        return self.extra_embeddings + 2

    @property
    def padded_vocab(self) -> int:
        """Rows of the LM head."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @property
    def attn_layers(self) -> list[int]:
        return [i for i, c in enumerate(self.attn_pattern) if c != "-"]

    @property
    def value_layers(self) -> list[int]:
        """Layers that read a value table: table j serves layer j and layer L - n + j."""
        n, L = self.value_embeds, self.n_layer
        return list(range(n)) + list(range(L - n, L))

    @property
    def skip_pairs(self) -> tuple[tuple[int, int], ...]:
        """`skips` as (src, dst) pairs; refuses a malformed or impossible map."""
        pairs = []
        for item in filter(None, (s.strip() for s in self.skips.split(","))):
            m = re.fullmatch(r"(\d+)\s*->\s*(\d+)", item)
            if not m:
                raise ConfigError(f"skips: {item!r} is not of the form 'src->dst' (e.g. '6->9')")
            src, dst = int(m[1]), int(m[2])
            if not src < dst < self.n_layer:
                raise ConfigError(f"skips: {item!r} must go forward between layers 0..{self.n_layer - 1}")
            if (src, dst) in pairs:
                raise ConfigError(f"skips: {item!r} appears twice")
            pairs.append((src, dst))
        return tuple(pairs)

    def window_blocks(self, progress: float) -> tuple[int, int]:
        """(long, short) windows in kv blocks at `progress` = step / num_iterations in [0, 1].

        The long window is window_final * f(x) tokens rounded up to whole blocks, at least
        one, where x = progress / window_full_at (at most 1); cubic f = 4x^3 - 6x^2 + 3x (the
        record's: 0 -> 1, steep early, flat in the middle). The short window has half as many
        blocks, rounded down; a window of 0 blocks still keeps each query's own block.
        """
        if not 0 <= progress <= 1:
            raise ValueError(f"progress: must be in [0, 1], got {progress}")
        x = min(progress / self.window_full_at, 1.0)
        f = {"cubic": 4 * x**3 - 6 * x**2 + 3 * x, "linear": x, "constant": 1.0}[self.window_schedule]
        long = max(1, math.ceil(self.window_final * f / self.attn_block))
        return long, long // 2


class ParamParts(typing.NamedTuple):
    """Parameter counts by kind: the kinds differ in dtype and optimizer (trainer/memory.py)."""
    tables: int  # input, extra and value embeddings: bf16 on GPUs, Adam
    matrices: int  # attention q, k, v, o and the MLP: bf16 on GPUs, Muon
    head: int  # the output head, padded rows included: fp32, Adam
    scalars: int  # skip weights, mixing and value lambdas, token lambdas: fp32, Adam


def param_parts(cfg: GPTConfig) -> ParamParts:
    """The parameters the config implies, by kind (param_count is their sum)."""
    V, D, L, H = cfg.vocab_size, cfg.d_model, cfg.n_layer, cfg.mlp_ratio * cfg.d_model
    tables = (1 + cfg.extra_embeddings + cfg.value_embeds) * V * D
    matrices = len(cfg.attn_layers) * 4 * D * D + L * 2 * D * H
    # skip weights (one per layer, as the record keeps them), mixing lambdas, value lambdas
    scalars = (L if cfg.skip_pairs else 0) + L * cfg.n_mix + (L * 2 if cfg.attn_layers else 0)
    scalars += L * V if cfg.token_lambdas else 0
    return ParamParts(tables, matrices, cfg.padded_vocab * D, scalars)


def param_count(cfg: GPTConfig) -> int:
    """Parameters implied by the config, for checks and for the cost model in bench/."""
    return sum(param_parts(cfg))


def flops_per_token(cfg: GPTConfig, progress: float = 1.0) -> float:
    """Training FLOPs per token (6N for the matmuls + attention within the window at
    `progress`), for model FLOP utilisation."""
    D, B = cfg.d_model, cfg.attn_block
    matmul = param_parts(cfg).matrices
    long, short = cfg.window_blocks(progress)
    context = sum(min(max(long if c == "L" else short, 1) * B, cfg.seq_len) - B / 2
                  for c in cfg.attn_pattern if c != "-")
    # QK^T and AV: 2 * 2 * D * context forward, x3 with the backward
    return 6 * (matmul + cfg.padded_vocab * D) + 12 * D * context
