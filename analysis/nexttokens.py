"""Next-token statistics of the validation shards: what a perfect 1-gram predictor knows.

For every token t, the empirical distribution of the token that follows it (sparse: the
(t, next) pairs that occur, with counts), and the unigram distribution of next tokens. A
table read through the head "acts as a 1-gram predictor" when its prediction for t is close
to the successor distribution of t.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablate.results.errors import InputError
from ablate.trainer.data import DataError, find_shards, read_shard

MAX_TOKENS = 10_000_000  # validation tokens read at most


@dataclass(frozen=True)
class NextTokens:
    """Successor counts of the tokens in `rows` (the tokens analysed, ascending ids)."""

    vocab: int
    source: str
    stream: np.ndarray  # the validation tokens read (int64), for measuring activations
    rows: np.ndarray  # (n,) token ids analysed: those followed by something, most frequent first cut
    count: np.ndarray  # (n,) how often each is followed by a token
    pair_row: np.ndarray  # (m,) row of each (t, next) pair, ascending
    pair_next: np.ndarray  # (m,) the next token
    pair_count: np.ndarray  # (m,) how often
    unigram: np.ndarray  # (vocab,) distribution of next tokens
    best: np.ndarray  # (n,) the count of each row's most frequent successor

    @property
    def total(self) -> int:
        return int(self.count.sum())

    def entropy_next(self) -> float:
        """H(next | t), nats, weighted by how often t occurs: the loss of the perfect 1-gram
        predictor on these tokens."""
        p = self.pair_count / self.count[self.pair_row]
        return float(-(self.pair_count * np.log(p)).sum() / self.total)

    def kl_unigram_reference(self) -> float:
        """Mean KL(successors of t || unigram): what predicting the unigram for every token
        leaves on the table (the mutual information of t and its next token)."""
        p = self.pair_count / self.count[self.pair_row]
        return float((self.pair_count * np.log(p / self.unigram[self.pair_next])).sum()
                     / self.total)


def read_validation(data_dir: str | Path, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Up to `max_tokens` validation tokens, shard after shard."""
    out, have = [], 0
    for path in find_shards(data_dir, "val"):
        part = np.asarray(read_shard(path)[: max_tokens - have], dtype=np.int64)
        out.append(part)
        have += part.size
        if have >= max_tokens:
            break
    return np.concatenate(out)


def next_token_stats(tokens: np.ndarray, vocab: int, source: str = "",
                     max_rows: int | None = None) -> NextTokens:
    """Successor statistics of a token stream; the `max_rows` most frequent tokens are kept
    (all of a byte vocabulary; a cut for GPT-2's, whose head costs V x V to apply)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size < 2:
        raise InputError(f"{source or 'data'}: fewer than 2 validation tokens")
    if tokens.max() >= vocab:
        raise InputError(f"{source or 'data'}: holds token {int(tokens.max())}, outside the "
                         f"model's vocabulary ({vocab}); other data than the trial's?")
    prev, nxt = tokens[:-1], tokens[1:]
    count = np.bincount(prev, minlength=vocab)
    rows = np.flatnonzero(count)
    if max_rows is not None and rows.size > max_rows:
        rows = np.sort(rows[np.argsort(-count[rows], kind="stable")[:max_rows]])
    row_of = np.full(vocab, -1)
    row_of[rows] = np.arange(rows.size)
    keep = row_of[prev] >= 0
    codes, pair_count = np.unique(row_of[prev[keep]] * vocab + nxt[keep], return_counts=True)
    pair_row, pair_next = codes // vocab, codes % vocab
    starts = np.searchsorted(pair_row, np.arange(rows.size))
    return NextTokens(
        vocab=vocab, source=source, stream=tokens, rows=rows, count=count[rows],
        pair_row=pair_row, pair_next=pair_next, pair_count=pair_count,
        unigram=np.bincount(nxt, minlength=vocab) / nxt.size,
        best=np.maximum.reduceat(pair_count, starts))


def load_next_tokens(data_dir: str | Path, vocab: int, max_tokens: int = MAX_TOKENS,
                     max_rows: int | None = 8192) -> NextTokens:
    """`next_token_stats` of a data folder's validation shards; InputError names the folder."""
    try:
        tokens = read_validation(data_dir, max_tokens)
    except DataError as e:
        raise InputError(str(e)) from None
    return next_token_stats(tokens, vocab, str(data_dir), max_rows)
