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
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

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


class Lens:
    """A lens's comparison with the statistics, gathered chunk by chunk of analysed tokens."""

    def __init__(self, stats: NextTokens):
        self.stats = stats
        self.weight = torch.from_numpy(stats.count / stats.total)
        self.unigram = torch.from_numpy(stats.unigram)
        used = self.unigram > 0
        self.u_entropy = float((self.unigram[used] * self.unigram[used].log()).sum())
        self.top_unigram = int(self.unigram.argmax())
        self.codes = stats.pair_row * stats.vocab + stats.pair_next
        self.cross = self.kl_u = self.top1 = self.top1_u = 0.0

    def add(self, logits: torch.Tensor, start: int) -> None:
        """The lens's logits for the analysed tokens start, start + 1, ..."""
        stats = self.stats
        logq = torch.log_softmax(logits.float(), dim=-1)
        span = slice(*np.searchsorted(stats.pair_row, [start, start + len(logq)]))
        rows = torch.from_numpy(stats.pair_row[span] - start)
        picked = logq[rows, torch.from_numpy(stats.pair_next[span])].double()
        self.cross += float((torch.from_numpy(stats.pair_count[span]).double() * picked).sum())
        w = self.weight[start:start + len(logq)]
        expected = (logq[:, :stats.vocab] @ self.unigram.float()).double()
        self.kl_u += float((w * (self.u_entropy - expected)).sum())
        guess = logq.argmax(dim=-1).numpy()
        self.top1 += float((w.numpy() * _agrees(guess, start, stats, self.codes)).sum())
        self.top1_u += float(w[torch.from_numpy(guess == self.top_unigram)].sum())

    def result(self) -> LensScore:
        ce = -self.cross / self.stats.total
        return LensScore(kl_next=ce - self.stats.entropy_next(), top1_next=self.top1,
                         kl_unigram=self.kl_u, top1_unigram=self.top1_u, ce_next=ce)


def soft_cap(z: torch.Tensor, cap: float) -> torch.Tensor:
    """The head's soft cap, as GPT.logits applies it."""
    return cap * z * torch.rsqrt(z.square() + cap * cap) if cap else z


def _agrees(guess: np.ndarray, start: int, stats: NextTokens, codes: np.ndarray) -> np.ndarray:
    """Whether each guess is a most frequent successor of its row (ties all count)."""
    rows = np.arange(start, start + len(guess))
    wanted = rows * stats.vocab + np.minimum(guess, stats.vocab - 1)
    at = np.minimum(np.searchsorted(codes, wanted), len(codes) - 1)
    hit = (codes[at] == wanted) & (guess < stats.vocab)
    return hit & (stats.pair_count[at] == stats.best[rows])


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


def path_coefficients(lambdas: np.ndarray, skip_weights: np.ndarray | None,
                      skips: tuple[tuple[int, int], ...]) -> np.ndarray:
    """For each layer i: how much of a vector added at layer i's mix reaches the final stream
    along the residual path: the later layers' residual weights l[i',0], plus the copies that
    the U-net skips add back."""
    n = len(lambdas)
    out = np.zeros(n)
    # A model has skip weights exactly when it has skips.
    weight = {src: float(skip_weights[src]) for src, _ in skips} if skip_weights is not None else {}
    for i in range(n):
        coef, kept = 1.0, {i: 1.0}
        for later in range(i + 1, n):
            coef += sum(weight[src] * kept[src] for src, dst in skips
                        if dst == later and src in kept)
            coef *= float(lambdas[later, 0])
            kept[later] = coef
        out[i] = coef
    return out


class _Seen(Exception):
    """Raised by a hook once the final stream has been seen."""


@torch.no_grad()
def final_inverse_rms(model: GPT, tokens: np.ndarray, max_tokens: int = 8192) -> np.ndarray:
    """Per token id: the mean of 1 / RMS of the final stream (before the final norm) at the
    positions the token is input, on validation text; tokens not seen get the overall mean."""
    cfg = model.config
    T = max(cfg.attn_block, min(cfg.seq_len, 1024) // cfg.attn_block * cfg.attn_block)
    n = max(1, min(len(tokens), max_tokens) // T)
    x = torch.from_numpy(np.asarray(tokens[: n * T], dtype=np.int64)).view(-1, T)
    seen = []

    def keep(module, inputs, out):
        seen.append(out)
        raise _Seen  # the head's logits are not needed: end the pass here

    hook = model.blocks[-1].register_forward_hook(keep)
    try:
        for row in x.split(8):
            try:
                model(row)
            except _Seen:
                pass
    finally:
        hook.remove()
    inv = torch.cat(seen).float().square().mean(-1).rsqrt().flatten().numpy()
    ids = x.flatten().numpy()
    hits = np.bincount(ids, minlength=cfg.vocab_size)
    total = np.bincount(ids, weights=inv, minlength=cfg.vocab_size)
    return np.where(hits > 0, total / np.maximum(hits, 1), inv.mean())


@torch.no_grad()
def contribution_weights(model: GPT, stats: NextTokens, inverse_rms: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(a, path): a[i, j, t] is the weight with which `x0j(t)` reaches the head from layer
    i's mix: `l[i,j]` (times the token lambda for x00) times the layer's path coefficient,
    over the final stream's RMS. The stream x starts as x00, so x00 at layer 0 also carries
    l[0,0]. `path` holds the path coefficients."""
    cfg = model.config
    lam = model.lambdas.detach().double().numpy()
    skips = model.skip_weights.detach().double().numpy() if model.skip_weights is not None else None
    path = path_coefficients(lam, skips, cfg.skip_pairs)
    a = np.repeat(lam[:, 1:, None], len(stats.rows), axis=2)
    if model.token_lambdas is not None:
        a[:, 0] *= np.stack([t.weight.detach().double().numpy()[stats.rows, 0]
                             for t in model.token_lambda_tables])
    a[0, 0] += lam[0, 0]
    return a * path[:, None, None] * inverse_rms[stats.rows][None, None, :], path


@dataclass(frozen=True)
class Lenses:
    """Every lens of one model, from one pass of the head over the analysed tokens."""

    tables: list[LensScore]  # each input table's own lens, x00 first
    layers: list[list[dict]]  # per layer and table: lens score, size and path coefficient
    direct: dict  # all embedding paths together (embedding + head alone, no block)


@torch.no_grad()
def lenses(model: GPT, stats: NextTokens, inverse_rms: np.ndarray) -> Lenses:
    """The lens of each input table, read with the sign the model gives it (a table whose
    mixing weights went negative predicts through -x0j); per layer and table, the lens of its
    contribution, the contribution's size (its mean RMS at the head, relative to the final
    stream) and the layer's path coefficient; and the lens of all embedding paths together.

    Each is a per-token multiple of `x0j(t)`, so the head's matmul is made once per table
    and chunk, and each lens only rescales it before the soft cap."""
    a, path = contribution_weights(model, stats, inverse_rms)
    n_layer, n_table = a.shape[:2]
    signs = np.where(net_weights(model) < 0, -1.0, 1.0)
    tables = [Lens(stats) for _ in range(n_table)]
    layers = [[Lens(stats) for _ in range(n_table)] for _ in range(n_layer)]
    total = Lens(stats)
    head, cap = model.lm_head.weight.float(), model.config.logit_softcap
    coef = torch.from_numpy(a).float()
    for start in range(0, len(stats.rows), CHUNK):
        rows = torch.from_numpy(stats.rows[start:start + CHUNK])
        z = [F.linear(norm(e.weight[rows].float()), head) for e in model.input_tables]
        part = coef[:, :, start:start + len(rows), None]
        for j in range(n_table):
            tables[j].add(soft_cap(float(signs[j]) * z[j], cap), start)
        for i, j in np.ndindex(n_layer, n_table):
            layers[i][j].add(soft_cap(part[i, j] * z[j], cap), start)
        every = cast(torch.Tensor, sum(part[:, j].sum(0) * z[j] for j in range(n_table)))  # n_table >= 1
        total.add(soft_cap(every, cap), start)
    size = (np.abs(a) * (stats.count / stats.total)).sum(-1)  # x0j(t) has RMS 1
    grid = [[layers[i][j].result().to_dict() | {"size": float(size[i, j]), "path": float(path[i])}
             for j in range(n_table)] for i in range(n_layer)]
    return Lenses([t.result() for t in tables], grid, total.result().to_dict())
