"""Text output of an inspection: rich tables for the terminal, Markdown, and JSON.

The tables show per config the mean ± std over seeds; JSON carries every trial's numbers
at full precision, and the per-config means and stds, for other tools.
"""

from __future__ import annotations

import json
import math
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from ablate.analysis.inspection import LAYER, LENS, Inspection, TrialResult, table_names
from ablate.core.files import jsonable
from ablate.results.configs import display
from ablate.results.render import md_table

FORMATS = ("table", "markdown", "json")
Section = tuple[str, list[str], list[list[str]]]


def write_inspection(insp: Inspection, stream: TextIO, format: str = "table") -> None:
    if format == "table":
        console = Console(file=stream, width=None if stream.isatty() else 200)
        for title, headers, rows in sections(insp):
            table = Table(*headers, title=title, title_justify="left")
            for row in rows:
                table.add_row(*row)
            console.print(table)
    elif format == "markdown":
        stream.write("\n".join(f"**{title}**\n\n{md_table(headers, rows)}\n"
                               for title, headers, rows in sections(insp)))
    elif format == "json":
        stream.write(json.dumps(to_json(insp), indent=2, allow_nan=False) + "\n")
    else:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")


def sections(insp: Inspection) -> list[Section]:
    out = [trials_section(insp), tables_section(insp), mixing_section(insp),
           layers_section(insp), neighbours_section(insp)]
    if any(t.token_lambdas for t in insp.trials):
        out.append(token_lambdas_section(insp))
    return out


def title(insp: Inspection) -> str:
    fixed = ", ".join(f"{k}={display(v)}" for k, v in insp.fixed.items()
                      if k in ("preset", "num_iterations", "extra_embeddings", "lambda_init",
                               "token_lambdas"))
    refs = {json.dumps(t.reference, sort_keys=True): t for t in insp.trials}
    data = "; ".join(f"{t.data}: H(next|t) {t.reference['entropy_next']:.3f}, "
                     f"KL(successors||unigram) {t.reference['kl_unigram']:.3f} nats"
                     for t in refs.values())
    return (f"{len(insp.trials)} trials in {len(insp.configs)} configs"
            + (f" ({fixed})" if fixed else "") + f"; validation data {data}")


def _key(insp: Inspection, config: int) -> list[str]:
    return [f"#{config + 1}"] + [display(insp.configs[config].key.get(f)) for f in insp.fields]


def trials_section(insp: Inspection) -> Section:
    headers = ["#", *insp.fields, "trial", "seed", "val loss", "weights"]
    rows = [_key(insp, t.config) + [t.trial.trial_id, display(t.trial.seed),
                                    f"{t.trial.val_loss:.4f}", str(t.trial.weights)]
            for t in sorted(insp.trials, key=lambda t: t.config)]
    return title(insp), headers, rows


def tables_section(insp: Inspection) -> Section:
    headers = ["#", *insp.fields, "seeds", "val loss", "read", "net weight", *LENS]
    rows = []
    for c, config in enumerate(insp.configs):
        n = len(config.members)
        loss = _pm(float(config.mean["val_loss"]), float(config.std["val_loss"]), 4)
        names = table_names(len(config.mean["tables"]))
        for j, name in enumerate(names):
            rows.append(_key(insp, c) + [str(n), loss, name,
                                         _pm(config.mean["net"][j], config.std["net"][j], 2)]
                        + [_pm(config.mean["tables"][j, m], config.std["tables"][j, m])
                           for m in range(len(LENS))])
        rows.append(_key(insp, c) + [str(n), loss, "all paths", ""]
                    + [_pm(config.mean["direct"][m], config.std["direct"][m])
                       for m in range(len(LENS))])
    return ("Logit lens of each input table, head(±norm(x0j(t))), against what follows t in "
            "the validation data (mean ± std over seeds; KL in nats, top-1 as a share of "
            "tokens, both weighted by token frequency; the sign is that of the table's net "
            "weight: its mixing weights summed along their paths to the head). 'all paths': every table's "
            "contribution at every layer as it reaches the head, no block: its ce_next near "
            "the val loss means the model predicts from embeddings + head alone"), headers, rows


def mixing_section(insp: Inspection) -> Section:
    width = max(c.mean["mixing"].shape[1] for c in insp.configs)
    headers = ["#", *insp.fields, "layer", "residual", *table_names(width - 1)]
    rows = []
    for c, config in enumerate(insp.configs):
        mean, std = config.mean["mixing"], config.std["mixing"]
        for i in range(len(mean)):
            cells = [_pm(mean[i, j], std[i, j], 3) for j in range(mean.shape[1])]
            rows.append(_key(insp, c) + [str(i)] + cells + ["-"] * (width - len(cells)))
    return "Final mixing weights l[i, j] (mean ± std over seeds)", headers, rows


def layers_section(insp: Inspection) -> Section:
    width = max(c.mean["layers"].shape[1] for c in insp.configs)
    kl, top1, size = (LAYER.index(m) for m in ("kl_next", "top1_next", "size"))
    headers = ["#", *insp.fields, "layer", "path", *table_names(width)]
    rows = []
    for c, config in enumerate(insp.configs):
        mean = config.mean["layers"]
        for i in range(len(mean)):
            cells = [f"{mean[i, j, kl]:.3f} / {mean[i, j, top1]:.2f} ({mean[i, j, size]:.2f})"
                     for j in range(mean.shape[1])]
            rows.append(_key(insp, c) + [str(i), f"{mean[i, 0, LAYER.index('path')]:.3f}"]
                        + cells + ["-"] * (width - len(cells)))
    return ("Lens of each table's contribution l[i,j]*x0j at layer i, as it reaches the head "
            "(path: how much of the layer's mix survives the later residual weights and "
            "skips): KL next / top-1 next (size: its RMS relative to the final stream), mean "
            "over seeds"), headers, rows


def neighbours_section(insp: Inspection) -> Section:
    headers = ["#", *insp.fields, "trial", "table", "token", "nearest (cosine)"]
    rows = []
    for t in _first_of_each(insp):
        for j, found in enumerate(t.neighbours):
            for token, near in found.items():
                rows.append(_key(insp, t.config) + [
                    t.trial.trial_id, f"x0{j}", t.vocab.decode(token),
                    "  ".join(f"{t.vocab.decode(n)} {cos:.2f}" for n, cos in near)])
    return ("Nearest neighbours of tokens in each table, among the tokens of the validation "
            "data (the first seed of each config)"), \
        headers, rows


def token_lambdas_section(insp: Inspection) -> Section:
    headers = ["#", *insp.fields, "trial", "layer", "highest", "lowest"]
    rows = []
    for t in _first_of_each(insp):
        for i, ends in enumerate(t.token_lambdas or []):
            rows.append(_key(insp, t.config) + [t.trial.trial_id, str(i)] + [
                "  ".join(f"{t.vocab.decode(tok)} {v:.2f}" for tok, v in ends[side])
                for side in ("high", "low")])
    return "Per-token lambdas of x00: the highest and lowest per layer", headers, rows


def _first_of_each(insp: Inspection) -> list[TrialResult]:
    return [insp.trials[c.members[0]] for c in insp.configs]


def _pm(mean: float, std: float, decimals: int = 3) -> str:
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.{decimals}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{decimals}f}"


def to_json(insp: Inspection) -> dict[str, Any]:
    return dict(
        fields=list(insp.fields), fixed=jsonable(insp.fixed), problems=insp.problems,
        metrics=dict(tables=list(LENS), layers=list(LAYER)),
        configs=[dict(number=c + 1, key=jsonable(config.key), label=config.label,
                      trials=[insp.trials[i].trial.trial_id for i in config.members],
                      mean={k: jsonable(v) for k, v in config.mean.items()},
                      std={k: jsonable(v) for k, v in config.std.items()})
                 for c, config in enumerate(insp.configs)],
        trials=[trial_json(t) for t in insp.trials])


def trial_json(t: TrialResult) -> dict[str, Any]:
    decode = t.vocab.decode
    return dict(
        trial_id=t.trial.trial_id, seed=t.trial.seed, config=t.config + 1,
        curve=str(t.trial.curve), weights=str(t.trial.weights), data=t.data,
        val_loss=jsonable(t.trial.val_loss), streams=t.streams, reference=jsonable(t.reference),
        mixing=jsonable(t.mixing), net_weights=jsonable(t.net),
        tables={name: dict(zip(LENS, jsonable(row))) for name, row in
                zip(table_names(len(t.tables)), t.tables)},
        layers=[{name: dict(zip(LAYER, jsonable(cell))) for name, cell in
                 zip(table_names(len(layer)), layer)} for layer in t.layers],
        all_paths=dict(zip(LENS, jsonable(t.direct))),
        neighbours={f"x0{j}": {decode(tok): [[n, decode(n), cos] for n, cos in near]
                               for tok, near in found.items()}
                    for j, found in enumerate(t.neighbours)},
        token_lambdas=None if t.token_lambdas is None else [
            {side: [[tok, decode(tok), v] for tok, v in ends[side]] for side in ends}
            for ends in t.token_lambdas])


