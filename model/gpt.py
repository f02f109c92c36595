"""The GPT of modded-nanogpt's medium track, with k extra input embeddings.

Every block mixes the residual stream with all input embeddings before attention:

    x = l[i,0]*x + l[i,1]*x00 + l[i,2]*x01 + ... + l[i,k+1]*x0k,   x0j = norm(embed_j(tokens))

k = 0 is the record baseline (x = l0*x + l1*x0). The rest follows the record model:
pre-norm blocks, RMS norm without weights, rotary attention with QK-norm, ReLU^2 MLP,
value embeddings shared by the first and last layers, U-net skips with learned weights, an
untied LM head with a soft logit cap. Pure torch; imports nothing else of the project.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, H, D)
        T = x.size(1)
        cos, sin = self.cos[None, :T, None, :], self.sin[None, :T, None, :]
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


@functools.lru_cache(maxsize=16)
def _block_mask(seq_len: int, window: int, device: str):
    """FlexAttention's block mask for a sliding causal window, built once per shape."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask(b, h, q, kv):
        return (q >= kv) & (q - kv < window)

    return create_block_mask(mask, None, None, seq_len, seq_len, device=device)


@torch.compiler.disable
def attention_mask(seq_len: int, window: int | None, device: torch.device):
    """What every layer's attention masks with, made once per forward (outside compiled
    graphs): None for plain causal, a FlexAttention block mask on CUDA, else a boolean band
    for SDPA (FlexAttention has no backward on CPU)."""
    if window is None or window >= seq_len:
        return None
    if device.type == "cuda":
        return _block_mask(seq_len, window, str(device))
    i = torch.arange(seq_len, device=device)
    return (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < window)


def attention(q, k, v, mask) -> torch.Tensor:
    """Causal attention on (B, H, T, D) with the mask from `attention_mask`."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if isinstance(mask, torch.Tensor):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    from torch.nn.attention.flex_attention import flex_attention
    if torch.is_autocast_enabled(q.device.type):  # flex_attention is not autocast-aware
        dtype = torch.get_autocast_dtype(q.device.type)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    return flex_attention(q, k, v, block_mask=mask)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.seq_len)
        self.ve_lambdas = nn.Parameter(torch.tensor([0.5, 0.5]))  # [v, value embedding]

    def forward(self, x: torch.Tensor, ve: torch.Tensor | None, mask) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)
        q, k = self.rotary(norm(q)), self.rotary(norm(k))  # QK-norm, then rotary
        if ve is not None:
            v = self.ve_lambdas[0] * v + self.ve_lambdas[1] * ve.view_as(v)
        else:
            v = self.ve_lambdas[0] * v
        y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, ve: torch.Tensor | None, mask) -> torch.Tensor:
        x = x + self.attn(norm(x), ve, mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        V, D, L = cfg.vocab_size, cfg.d_model, cfg.n_layer
        self.embeds = nn.ModuleList(nn.Embedding(V, D) for _ in range(1 + cfg.extra_embeddings))
        self.value_embeds = nn.ModuleList(nn.Embedding(V, D) for _ in range(cfg.value_embeds))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(L))
        self.lm_head = nn.Linear(D, V, bias=False)
        # Per block [residual, x00, x01, ...]: "zero" is the record's [1, 0, 0, ...].
        lam = torch.zeros(L, cfg.n_mix) if cfg.lambda_init == "zero" else torch.ones(L, cfg.n_mix)
        lam[:, 0] = 1.0
        self.lambdas = nn.Parameter(lam)
        self.token_lambdas = (nn.ModuleList(nn.Embedding(V, 1) for _ in range(L))
                              if cfg.token_lambdas else None)
        self.skip_weights = nn.Parameter(torch.ones(L // 2))  # U-net: early outputs -> late layers
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The record's init: N(0,1) embeddings, zero value embeddings and output projections,
        an almost-zero head; token lambdas start at `token_lambda_init`."""
        for e in self.embeds:
            nn.init.normal_(e.weight)
        for e in self.value_embeds:
            nn.init.zeros_(e.weight)
        for b in self.blocks:
            nn.init.zeros_(b.attn.proj.weight)
            nn.init.zeros_(b.mlp.proj.weight)
        nn.init.normal_(self.lm_head.weight, std=self.config.head_init_std)
        if self.token_lambdas is not None:
            for t in self.token_lambdas:
                nn.init.constant_(t.weight, self.config.token_lambda_init)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        cfg, L = self.config, self.config.n_layer
        x0s = [norm(e(tokens)) for e in self.embeds]  # x00, x01, ..., x0k
        ve = [e(tokens) for e in self.value_embeds]
        ve = ve + [None] * (L - 2 * len(ve)) + ve  # first and last layers share the tables
        x = x0s[0]
        mask = attention_mask(tokens.size(1), cfg.window, tokens.device)
        skips = []
        for i, block in enumerate(self.blocks):
            streams = x0s if self.token_lambdas is None else \
                [x0s[0] * self.token_lambdas[i](tokens)] + x0s[1:]
            lam = self.lambdas[i]
            x = lam[0] * x + sum(lam[j + 1] * s for j, s in enumerate(streams))
            if i >= L - L // 2 and skips:
                x = x + self.skip_weights[i - (L - L // 2)] * skips.pop()
            x = block(x, ve[i], mask)
            if i < L // 2:
                skips.append(x)
        logits = self.lm_head(norm(x)).float()
        if cfg.logit_softcap:
            logits = cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    def mixing_weights(self) -> list[list[float]]:
        """Each layer's [residual, x00, x01, ...] weights, for the curve's `lambdas` column."""
        return self.lambdas.detach().float().cpu().tolist()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


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

