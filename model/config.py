"""The model's configuration: presets, validation and the parameter-count formula.

No torch here: a sweep spec is validated, and `ablate --help` answers, without importing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

MAX_EXTRA_EMBEDDINGS = 5


class ConfigError(ValueError):
    """An impossible model config; the message names the field."""


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50304
    n_layer: int = 16
    n_head: int = 8
    head_dim: int = 128
    d_model: int = 1024
    seq_len: int = 1024
    mlp_ratio: int = 4
    value_embeds: int = 5  # tables used by the first and again by the last `value_embeds` layers
    window: int | None = None  # sliding-window attention span in tokens; None = full causal
    logit_softcap: float = 15.0  # 0 disables
    head_init_std: float = 0.005
    # The ablation axes.
    extra_embeddings: int = 0
    lambda_init: Literal["zero", "one"] = "zero"
    token_lambdas: bool = False
    token_lambda_init: float = 1.0

    PRESETS = {
        # CPU tests: a forward+backward in milliseconds.
        "tiny": dict(vocab_size=320, n_layer=4, n_head=2, head_dim=16, d_model=32, seq_len=64,
                     value_embeds=2),
        # CPU demo: minutes.
        "small": dict(vocab_size=320, n_layer=6, n_head=4, head_dim=32, d_model=128, seq_len=128,
                      value_embeds=3),
        # The record model (GPU only).
        "medium": dict(vocab_size=50304, n_layer=16, n_head=8, head_dim=128, d_model=1024,
                       seq_len=8192, window=1792, value_embeds=5),
    }

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        if name not in cls.PRESETS:
            raise ConfigError(f"preset: unknown preset {name!r} (choose from {', '.join(cls.PRESETS)})")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a model field")
        return cls(**{**cls.PRESETS[name], **overrides})

    def __post_init__(self):
        def need(ok: bool, field: str, why: str):
            if not ok:
                raise ConfigError(f"{field}: {why}")

        for name in ("vocab_size", "n_layer", "n_head", "head_dim", "d_model", "seq_len", "mlp_ratio"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v > 0, name,
                 f"must be a positive integer, got {v!r}")
        k = self.extra_embeddings
        need(isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= MAX_EXTRA_EMBEDDINGS,
             "extra_embeddings", f"must be an integer in 0..{MAX_EXTRA_EMBEDDINGS}, got {k!r}")
        need(self.n_head * self.head_dim == self.d_model, "n_head",
             f"n_head * head_dim ({self.n_head} * {self.head_dim}) must equal d_model ({self.d_model})")
        need(self.head_dim % 2 == 0, "head_dim", "must be even for rotary embeddings")
        need(isinstance(self.value_embeds, int) and 0 <= self.value_embeds <= self.n_layer // 2,
             "value_embeds", f"must be in 0..n_layer//2 ({self.n_layer // 2}), got {self.value_embeds!r}")
        need(self.window is None or (isinstance(self.window, int) and self.window > 0), "window",
             f"must be a positive integer or None, got {self.window!r}")
        need(self.lambda_init in ("zero", "one"), "lambda_init",
             f"must be 'zero' or 'one', got {self.lambda_init!r}")
        need(isinstance(self.token_lambdas, bool), "token_lambdas",
             f"must be true or false, got {self.token_lambdas!r}")
        need(self.logit_softcap >= 0, "logit_softcap", "must be >= 0")
        # Zero-gradient trap: the token lambda multiplies x00, whose per-layer scalar starts at
        # 0 with lambda_init "zero". If both factors start at 0, neither ever gets a gradient.
        need(not (self.token_lambdas and self.lambda_init == "zero" and self.token_lambda_init == 0),
             "token_lambda_init", "0 with lambda_init 'zero' is a zero-gradient trap: the product "
             "of two zero-initialised factors never receives a gradient")

    @property
    def n_mix(self) -> int:
        """Mixing weights per block: the residual, then x00 and each extra table."""
        return self.extra_embeddings + 2


def param_count(cfg: GPTConfig) -> int:
    """Parameters implied by the config, for checks and for the cost model in bench/."""
    V, D, L, H = cfg.vocab_size, cfg.d_model, cfg.n_layer, cfg.mlp_ratio * cfg.d_model
    per_block = 4 * D * D + 2 * D * H + 2
    return ((1 + cfg.extra_embeddings + cfg.value_embeds) * V * D + L * per_block + V * D
            + L * cfg.n_mix + (L * V if cfg.token_lambdas else 0) + L // 2)


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token (6N for the matmuls + attention), for model FLOP utilisation."""
    D, L, T = cfg.d_model, cfg.n_layer, cfg.window or cfg.seq_len
    matmul = 4 * D * D + 2 * D * cfg.mlp_ratio * D
    return 6 * (L * matmul + cfg.vocab_size * D) + 12 * L * D * min(T, cfg.seq_len) / 2

