"""Nearest neighbours of tokens in each table, and the extremes of per-token lambdas."""

from __future__ import annotations

import numpy as np
import torch

from ablate.model.gpt import GPT


def nearest(weight: torch.Tensor, tokens: list[int], k: int = 5, vocab: int | None = None,
            among: np.ndarray | None = None) -> dict[int, list[tuple[int, float]]]:
    """The k rows most cosine-similar to each token's row (itself left out), among the first
    `vocab` rows, and only rows where `among` (a boolean mask) is true if given."""
    table = weight[:vocab].float()
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    excluded = torch.zeros(len(unit), dtype=torch.bool)
    if among is not None:
        excluded = ~torch.from_numpy(np.asarray(among[: len(unit)], dtype=bool))
    out = {}
    for t in tokens:
        cos = (unit @ unit[t]).masked_fill(excluded, -np.inf)
        cos[t] = -np.inf
        values, ids = cos.topk(min(k, int(torch.isfinite(cos).sum())))
        out[t] = [(int(i), float(v)) for i, v in zip(ids, values)]
    return out


def table_neighbours(model: GPT, tokens: list[int], k: int = 5, among: np.ndarray | None = None
                     ) -> list[dict[int, list[tuple[int, float]]]]:
    """`nearest` in every input table, x00 first. `among` keeps the candidates to tokens that
    occur in the data: a row never trained keeps its random init, and its cosines are noise."""
    vocab = model.config.vocab_size
    return [nearest(e.weight.detach(), tokens, k, vocab, among) for e in model.input_tables]


def token_lambda_extremes(model: GPT, k: int = 5) -> list[dict[str, list[tuple[int, float]]]] | None:
    """Per layer, the k tokens with the highest and the lowest learned lambda. Rows still at
    their initial value (tokens never seen in training) are left out. None without
    token lambdas."""
    if model.token_lambdas is None:
        return None
    init = model.config.token_lambda_init
    out = []
    for table in model.token_lambda_tables:
        values = table.weight.detach().float().flatten().numpy()
        trained = np.flatnonzero(values != np.float32(init))
        order = trained[np.argsort(values[trained], kind="stable")]
        out.append(dict(high=[(int(t), float(values[t])) for t in order[::-1][:k]],
                        low=[(int(t), float(values[t])) for t in order[:k]]))
    return out
