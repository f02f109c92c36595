"""The GPT of modded-nanogpt's medium track, with k extra input embeddings.

Every block mixes the residual stream with all input embeddings before attention:

    x = l[i,0]*x + l[i,1]*x00 + l[i,2]*x01 + ... + l[i,k+1]*x0k,   x0j = norm(embed_j(tokens))

k = 0 is the record baseline (x = l0*x + l1*x0). The rest follows the record model:
pre-norm blocks, RMS norm without weights, rotary attention with QK-norm, ReLU^2 MLP,
value embeddings shared by the first and last layers, U-net skips with learned weights, an
untied LM head with a soft logit cap. Pure torch; imports nothing else of the project.
"""

from __future__ import annotations

import functools
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ablate.model.config import ConfigError, GPTConfig

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
