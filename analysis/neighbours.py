"""Nearest neighbours of tokens in each table, and the extremes of per-token lambdas."""

from __future__ import annotations

import numpy as np
import torch

from ablate.model.gpt import GPT


def nearest(weight: torch.Tensor, tokens: list[int], k: int = 5,
            vocab: int | None = None) -> dict[int, list[tuple[int, float]]]:
    """The k rows most cosine-similar to each token's row (itself left out), among the first
    `vocab` rows."""
    table = weight[:vocab].float()
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = {}
    for t in tokens:
        cos = unit @ unit[t]
        cos[t] = -np.inf
        values, ids = cos.topk(min(k, len(cos) - 1))
        out[t] = [(int(i), float(v)) for i, v in zip(ids, values)]
    return out


def table_neighbours(model: GPT, tokens: list[int], k: int = 5
                     ) -> list[dict[int, list[tuple[int, float]]]]:
    """`nearest` in every input table, x00 first."""
    vocab = model.config.vocab_size
    return [nearest(e.weight.detach(), tokens, k, vocab) for e in model.embeds]


def token_lambda_extremes(model: GPT, k: int = 5) -> list[dict[str, list[tuple[int, float]]]] | None:
    """Per layer, the k tokens with the highest and the lowest learned lambda. Rows still at
    their initial value (tokens never seen in training) are left out. None without
    token lambdas."""
    if model.token_lambdas is None:
        return None
    init = model.config.token_lambda_init
    out = []
    for table in model.token_lambdas:
        values = table.weight.detach().float().flatten().numpy()
        trained = np.flatnonzero(values != np.float32(init))
        order = trained[np.argsort(values[trained], kind="stable")]
        out.append(dict(high=[(int(t), float(values[t])) for t in order[::-1][:k]],
                        low=[(int(t), float(values[t])) for t in order[:k]]))
    return out
