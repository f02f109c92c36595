"""What each trial's model learned, and the same per config (mean ± std over seeds).

Per trial: the final mixing weights (layers x streams), the logit lens of each input table
and of each table's contribution at each layer, compared with the validation shards'
next-token statistics, nearest neighbours of chosen tokens in each table, and with token
lambdas the tokens whose lambdas went highest and lowest. Configs are grouped as
`ablate report` groups them (results.configs): every field equal but seed and labels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ablate.analysis.lens import LensScore, final_inverse_rms, lenses, net_weights
from ablate.analysis.neighbours import table_neighbours, token_lambda_extremes
from ablate.analysis.nexttokens import MAX_TOKENS, NextTokens, load_next_tokens
from ablate.analysis.trials import Trial
from ablate.analysis.vocab import Vocabulary, vocabulary
from ablate.results.configs import config_label, group_configs
from ablate.results.errors import InputError

LENS = tuple(f.name for f in LensScore.__dataclass_fields__.values())
LAYER = (*LENS, "size", "path")  # a contribution's lens, its size at the head, its path weight
NEIGHBOURS = 5
DEFAULT_TOKENS = 5  # without --tokens: the most frequent validation tokens


@dataclass
class TrialResult:
    trial: Trial
    data: str
    config: int  # index into Inspection.configs
    mixing: np.ndarray  # (layers, 1 + tables): residual, x00, x01, ...
    tables: np.ndarray  # (tables, len(LENS))
    net: np.ndarray  # (tables,): each table's mixing weights summed along their paths to the head
    layers: np.ndarray  # (layers, tables, len(LAYER))
    direct: np.ndarray  # (len(LENS),): every embedding path together, no block
    neighbours: list[dict[int, list[tuple[int, float]]]]  # per table: token -> neighbours
    token_lambdas: list[dict[str, list[tuple[int, float]]]] | None
    vocab: Vocabulary
    reference: dict[str, float]  # the data's H(next | t) and KL(successors || unigram)

    @property
    def streams(self) -> list[str]:
        return ["residual"] + table_names(len(self.tables))


@dataclass
class ConfigResult:
    key: dict[str, Any]
    label: str
    members: list[int]  # trial indices
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # mixing, tables, layers, direct, val_loss
    std: dict[str, np.ndarray] = field(default_factory=dict)  # NaN with one seed


@dataclass
class Inspection:
    trials: list[TrialResult]
    configs: list[ConfigResult]
    fields: tuple[str, ...]  # config fields that vary (columns)
    fixed: dict[str, Any]  # config fields equal everywhere
    problems: list[str]  # trials refused, one line each


def table_names(n: int) -> list[str]:
    return [f"x0{j}" for j in range(n)]


def data_folder(trial: Trial, override: str | os.PathLike | None) -> Path:
    """The validation shards: --data, else the trial's own data folder, else the built-in
    corpus kept under the storage root (`<storage>/.data/builtin`)."""
    if override is not None:
        return Path(override)
    own = Path(str(trial.config.get("data", "")))
    if own.is_dir():
        return own
    builtin = trial.curve.resolve().parents[2] / ".data" / "builtin"
    if builtin.is_dir():
        return builtin
    raise InputError(f"{trial.curve}: its data folder {own} is not here; name the validation "
                     "shards with --data DIR")


def inspect_trial(trial: Trial, stats: NextTokens, vocab: Vocabulary,
                  tokens: Sequence[str] | None) -> TrialResult:
    """Every measurement of one trial (its config index is set by `inspect`)."""
    model = trial.model
    chosen = ([vocab.parse(t) for t in tokens] if tokens
              else [int(t) for t in np.argsort(-np.bincount(stats.stream))[:DEFAULT_TOKENS]])
    lens = lenses(model, stats, final_inverse_rms(model, stats.stream))
    return TrialResult(
        trial=trial, data=stats.source, config=-1,
        mixing=np.array(model.mixing_weights()),
        tables=np.array([[getattr(s, m) for m in LENS] for s in lens.tables]),
        net=net_weights(model),
        layers=np.array([[[cell[m] for m in LAYER] for cell in layer] for layer in lens.layers]),
        direct=np.array([lens.direct[m] for m in LENS]),
        neighbours=table_neighbours(model, chosen, NEIGHBOURS,
                                    among=np.bincount(stats.stream, minlength=stats.vocab) > 0),
        token_lambdas=token_lambda_extremes(model, NEIGHBOURS), vocab=vocab,
        reference=dict(entropy_next=stats.entropy_next(),
                       kl_unigram=stats.kl_unigram_reference()))


def inspect(trials: Sequence[Trial], problems: Sequence[str] = (),
            data: str | os.PathLike | None = None, tokens: Sequence[str] | None = None,
            max_tokens: int = MAX_TOKENS, max_rows: int | None = 8192) -> Inspection:
    """Inspect trials and group them into configs. A trial whose data cannot be read joins
    `problems`; InputError (e.g. a bad --tokens) stops everything."""
    cache: dict[tuple[str, int], NextTokens] = {}
    results, problems = [], list(problems)
    for trial in trials:
        try:
            folder = data_folder(trial, data)
            vocab_size = trial.model.config.vocab_size
            key = (str(folder.resolve()), vocab_size)
            if key not in cache:
                cache[key] = load_next_tokens(folder, vocab_size, max_tokens, max_rows)
        except InputError as e:
            if data is not None:
                raise
            problems.append(str(e))
            continue
        vocab = vocabulary(vocab_size, trial.model.config.eot_token, folder)
        results.append(inspect_trial(trial, cache[key], vocab, tokens))
    return group(results, problems)


def group(results: list[TrialResult], problems: list[str]) -> Inspection:
    """Configs of the inspected trials, with mean and std of every measurement."""
    if not results:
        return Inspection([], [], (), {}, problems)
    axes = list(dict.fromkeys(a for r in results for a in r.trial.axes))
    info = pa.table({"params": [r.trial.params for r in results]})
    configs = group_configs(info, axes=axes)
    out = []
    for c in range(len(configs)):
        members = [i for i, r in enumerate(results) if configs.index[i] == c]
        key = configs.key_dict(c)
        out.append(summarize(ConfigResult(key, config_label(configs.fields, key), members),
                             [results[i] for i in members]))
        for i in members:
            results[i].config = c
    return Inspection(results, out, configs.fields, configs.fixed, problems)


def summarize(config: ConfigResult, members: list[TrialResult]) -> ConfigResult:
    """Mean and sample std (ddof 1; NaN with one seed) of each measurement."""
    for name in ("mixing", "tables", "net", "layers", "direct"):
        stack = np.stack([getattr(m, name) for m in members])
        config.mean[name], config.std[name] = _mean_std(stack)
    config.mean["val_loss"], config.std["val_loss"] = _mean_std(
        np.array([m.trial.val_loss for m in members]))
    return config


def _mean_std(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = stack.mean(axis=0)
    std = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.full_like(mean, math.nan)
    return mean, std
