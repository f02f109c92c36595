"""Logit lens of the input tables and of each table's contribution to the residual stream.

The lens reads a vector the way the model reads its final stream: the head, then the soft
cap (GPT.logits). Its prediction for token t is compared with what follows t in the
validation shards (NextTokens): mean KL divergence and top-1 agreement, each token weighted
by how often it occurs, so the numbers are expectations over validation positions.

A table's own lens reads `norm(embed_j(t))`, with the sign of the table's net mixing weight:
what the table alone would predict. A
contribution's lens reads `l[i,j] * x0j` as it reaches the head along the residual path
(times each later layer's residual weight, plus the U-net skips that carry it) divided by
the RMS of the final stream, which the final norm divides by: where each table matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ablate.analysis.nexttokens import NextTokens
from ablate.model.gpt import GPT, norm

CHUNK = 1024  # tokens read through the head at once


@dataclass(frozen=True)
class LensScore:
    """How a lens's predictions compare with the validation statistics."""

    kl_next: float  # mean KL(successors of t || lens(t)), nats
    top1_next: float  # share of tokens whose lens top-1 is their most frequent successor
    kl_unigram: float  # mean KL(unigram || lens(t))
    top1_unigram: float  # share whose lens top-1 is the most frequent token overall
    ce_next: float  # cross-entropy of the next token = H(next | t) + kl_next

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def score(model: GPT, vectors: torch.Tensor, stats: NextTokens) -> LensScore:
    """Lens of `vectors` (one row per token of `stats.rows`, already on the head's scale)."""
    weight = torch.from_numpy(stats.count / stats.total)
    unigram = torch.from_numpy(stats.unigram)
    used = unigram > 0
    u_entropy = float((unigram[used] * unigram[used].log()).sum())
    top_unigram = int(unigram.argmax())
    pair_at = np.searchsorted(stats.pair_row, np.arange(0, len(stats.rows) + CHUNK, CHUNK))
    codes = stats.pair_row * stats.vocab + stats.pair_next
    cross = kl_u = top1 = top1_u = 0.0
    for c, start in enumerate(range(0, len(stats.rows), CHUNK)):
        logq = torch.log_softmax(model.logits(vectors[start:start + CHUNK].float()), dim=-1)
        logq = logq.double()
        span = slice(pair_at[c], pair_at[c + 1])
        rows = torch.from_numpy(stats.pair_row[span] - start)
        cross += float((torch.from_numpy(stats.pair_count[span]).double()
                        * logq[rows, torch.from_numpy(stats.pair_next[span])]).sum())
        w = weight[start:start + CHUNK]
        kl_u += float((w * (u_entropy - logq[:, :stats.vocab] @ unigram)).sum())
        guess = logq.argmax(dim=-1).numpy()
        top1 += float((w.numpy() * _agrees(guess, start, stats, codes)).sum())
        top1_u += float(w[torch.from_numpy(guess == top_unigram)].sum())
    ce = -cross / stats.total
    return LensScore(kl_next=ce - stats.entropy_next(), top1_next=top1, kl_unigram=kl_u,
                     top1_unigram=top1_u, ce_next=ce)


def _agrees(guess: np.ndarray, start: int, stats: NextTokens, codes: np.ndarray) -> np.ndarray:
    """Whether each guess is a most frequent successor of its row (ties all count)."""
    rows = np.arange(start, start + len(guess))
    wanted = rows * stats.vocab + np.minimum(guess, stats.vocab - 1)
    at = np.minimum(np.searchsorted(codes, wanted), len(codes) - 1)
    hit = (codes[at] == wanted) & (guess < stats.vocab)
    return hit & (stats.pair_count[at] == stats.best[rows])


def table_inputs(model: GPT, table: int, stats: NextTokens) -> torch.Tensor:
    """`norm(embed_j(t))` for every analysed token (the final norm leaves it as it is)."""
    rows = torch.from_numpy(stats.rows)
    return norm(model.embeds[table].weight[rows].float())


def net_weights(model: GPT) -> np.ndarray:
    """Per table: the sum over layers of its mixing weight times the layer's path to the
    head (x00 also starts the stream, with weight l[0,0]). Its sign is the sign with which
    the model reads the table."""
    lam = model.lambdas.detach().double().numpy()
    skips = model.skip_weights.detach().double().numpy() if model.skip_weights is not None else None
    path = path_coefficients(lam, skips, model.config.skip_pairs)
    net = path @ lam[:, 1:]
    net[0] += path[0] * lam[0, 0]
    return net


@torch.no_grad()
def table_lens(model: GPT, stats: NextTokens) -> list[LensScore]:
    """The lens of each input table, x00 first, read with the sign the model gives it (a
    table whose mixing weights went negative predicts through -x0j)."""
    signs = np.where(net_weights(model) < 0, -1.0, 1.0)
    return [score(model, float(signs[j]) * table_inputs(model, j, stats), stats)
            for j in range(len(model.embeds))]


def path_coefficients(lambdas: np.ndarray, skip_weights: np.ndarray | None,
                      skips: tuple[tuple[int, int], ...]) -> np.ndarray:
    """For each layer i: how much of a vector added at layer i's mix reaches the final stream
    along the residual path: the later layers' residual weights l[i',0], plus the copies that
    the U-net skips add back."""
    n = len(lambdas)
    out = np.zeros(n)
    for i in range(n):
        coef, kept = 1.0, {i: 1.0}
        for later in range(i + 1, n):
            coef += sum(float(skip_weights[src]) * kept[src] for src, dst in skips
                        if dst == later and src in kept)
            coef *= float(lambdas[later, 0])
            kept[later] = coef
        out[i] = coef
    return out


@torch.no_grad()
def final_inverse_rms(model: GPT, tokens: np.ndarray, max_tokens: int = 8192) -> np.ndarray:
    """Per token id: the mean of 1 / RMS of the final stream (before the final norm) at the
    positions the token is input, on validation text; tokens not seen get the overall mean."""
    cfg = model.config
    T = max(cfg.attn_block, min(cfg.seq_len, 1024) // cfg.attn_block * cfg.attn_block)
    n = max(1, min(len(tokens), max_tokens) // T)
    x = torch.from_numpy(np.asarray(tokens[: n * T], dtype=np.int64)).view(-1, T)
    seen = []
    hook = model.blocks[-1].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        for row in x.split(8):
            model(row)
    finally:
        hook.remove()
    inv = torch.cat(seen).float().square().mean(-1).rsqrt().flatten().numpy()
    ids = x.flatten().numpy()
    hits = np.bincount(ids, minlength=cfg.vocab_size)
    total = np.bincount(ids, weights=inv, minlength=cfg.vocab_size)
    return np.where(hits > 0, total / np.maximum(hits, 1), inv.mean())


@torch.no_grad()
def contributions(model: GPT, stats: NextTokens, inverse_rms: np.ndarray
                  ) -> tuple[list[list[torch.Tensor]], np.ndarray]:
    """Per layer i and table j: `l[i,j] * x0j(t)` (times the token lambda for x00) as it
    reaches the head (path coefficient, final RMS), for the analysed tokens; and the path
    coefficients. The stream x starts as x00, so x00 at layer 0 also carries l[0,0]."""
    cfg = model.config
    lam = model.lambdas.detach().double().numpy()
    skips = model.skip_weights.detach().double().numpy() if model.skip_weights is not None else None
    path = path_coefficients(lam, skips, cfg.skip_pairs)
    rows = torch.from_numpy(stats.rows)
    scale = torch.from_numpy(inverse_rms[stats.rows]).float()[:, None]
    tables = [table_inputs(model, j, stats) for j in range(len(model.embeds))]
    out = []
    for i in range(cfg.n_layer):
        layer = []
        for j, x0 in enumerate(tables):
            weight = torch.full((len(rows), 1), float(lam[i, j + 1]))
            if j == 0 and model.token_lambdas is not None:
                weight = weight * model.token_lambdas[i].weight[rows].float()
            if j == 0 and i == 0:
                weight = weight + float(lam[0, 0])
            layer.append(weight * float(path[i]) * scale * x0)
        out.append(layer)
    return out, path


@torch.no_grad()
def contribution_lens(model: GPT, stats: NextTokens, inverse_rms: np.ndarray
                      ) -> tuple[list[list[dict]], dict]:
    """Per layer and table: the lens score and the contribution's size (mean RMS of what
    reaches the head); and the lens of all embedding paths together (embedding + head alone,
    no block)."""
    parts, path = contributions(model, stats, inverse_rms)
    weight = torch.from_numpy(stats.count / stats.total).float()
    grid = []
    for i, layer in enumerate(parts):
        grid.append([score(model, v, stats).to_dict()
                     | {"size": float((v.square().mean(-1).sqrt() * weight).sum()),
                        "path": float(path[i])} for v in layer])
    total = sum(v for layer in parts for v in layer)
    return grid, score(model, total, stats).to_dict()
