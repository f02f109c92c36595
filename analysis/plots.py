"""Plots of an inspection (matplotlib's off-screen Figure, as results/plots.py draws).

Per config: a heatmap of the final mixing weights (layers x streams) and one of the
contribution lens (KL to the next token, layers x tables); across configs: each table's
lens against the validation statistics. Every path is known before drawing, and an
existing file is refused before anything is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ablate.analysis.inspection import LAYER, LENS, Inspection, table_names
from ablate.results.errors import InputError
from ablate.results.formats import PLOT_FORMATS
from ablate.results.plots import _slug


def plot_paths(insp: Inspection, out: str | Path, format: str = "png") -> dict[str, Path]:
    """Every file `write_plots` would write, by name."""
    if format not in PLOT_FORMATS:
        raise InputError(f"--plot-format: must be one of {', '.join(PLOT_FORMATS)}, not {format!r}")
    out = Path(out)
    paths = {"tables": out / f"table_lens.{format}"}
    for c, config in enumerate(insp.configs):
        slug = _slug(config.label)
        paths[f"mixing:{c}"] = out / f"mixing_{c + 1:03d}_{slug}.{format}"
        paths[f"layers:{c}"] = out / f"layer_lens_{c + 1:03d}_{slug}.{format}"
    return paths


def check_free(insp: Inspection, out: str | Path, format: str = "png") -> dict[str, Path]:
    """`plot_paths`, after refusing (InputError) if any of them exists."""
    paths = plot_paths(insp, out, format)
    for path in paths.values():
        if path.exists():
            raise InputError(f"{path}: already exists; refusing to overwrite it "
                             "(choose another --plot folder)")
    return paths


def write_plots(insp: Inspection, out: str | Path, format: str = "png") -> list[Path]:
    """Draw every plot into `out`; refuses, before writing, if any file exists."""
    paths = check_free(insp, out, format)
    Path(out).mkdir(parents=True, exist_ok=True)
    plot_table_lens(insp, paths["tables"])
    for c in range(len(insp.configs)):
        plot_mixing(insp, c, paths[f"mixing:{c}"])
        plot_layer_lens(insp, c, paths[f"layers:{c}"])
    return list(paths.values())


def _heatmap(fig: Figure, ax, values: np.ndarray, xlabels: list[str], cmap: str,
             label: str, centre: bool = False, notes: np.ndarray | None = None) -> None:
    finite = values[np.isfinite(values)]
    high = float(np.abs(finite).max()) if finite.size else 1.0
    limits = dict(vmin=-high, vmax=high) if centre else {}
    image = ax.imshow(values, cmap=cmap, aspect="auto", **limits)
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(values)))
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label=label)
    if values.size <= 200:
        for (i, j), v in np.ndenumerate(values):
            text = f"{v:.2f}" if notes is None or math.isnan(notes[i, j]) \
                else f"{v:.2f}\n±{notes[i, j]:.2f}"
            r, g, b, _ = image.cmap(image.norm(v))
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")


def plot_mixing(insp: Inspection, config: int, path: Path) -> Path:
    """Mean final l[i, j] of a config (std over seeds written in each cell)."""
    c = insp.configs[config]
    mean, std = c.mean["mixing"], c.std["mixing"]
    fig = Figure(figsize=(2 + 1.1 * mean.shape[1], 1.5 + 0.45 * len(mean)), layout="constrained")
    ax = fig.add_subplot()
    _heatmap(fig, ax, mean, ["residual", *table_names(mean.shape[1] - 1)], "RdBu_r",
             "mixing weight", centre=True, notes=std)
    ax.set_title(f"Final mixing weights l[i, j]\n#{config + 1} {c.label} (n={len(c.members)})",
                 fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_layer_lens(insp: Inspection, config: int, path: Path) -> Path:
    """Per layer and table: KL(next || lens of the contribution), mean over seeds."""
    c = insp.configs[config]
    kl = c.mean["layers"][:, :, LAYER.index("kl_next")]
    fig = Figure(figsize=(2.5 + 1.1 * kl.shape[1], 1.5 + 0.45 * len(kl)), layout="constrained")
    ax = fig.add_subplot()
    _heatmap(fig, ax, kl, table_names(kl.shape[1]), "viridis_r", "KL to next token (nats)")
    ax.set_title(f"Lens of each contribution l[i,j]*x0j\n#{config + 1} {c.label} "
                 f"(n={len(c.members)})", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_table_lens(insp: Inspection, path: Path) -> Path:
    """Per config, each table's KL to the next token and to the unigram, and its top-1
    agreement (error bars: std over seeds)."""
    fig = Figure(figsize=(11, 5 + 0.2 * len(insp.configs)), layout="constrained")
    axes = fig.subplots(1, 3)
    metrics = ("kl_next", "kl_unigram", "top1_next")
    width = max(len(c.mean["tables"]) for c in insp.configs) + 1
    for ax, metric in zip(axes, metrics):
        m = LENS.index(metric)
        for c, config in enumerate(insp.configs):
            mean = list(config.mean["tables"][:, m]) + [config.mean["direct"][m]]
            std = list(config.std["tables"][:, m]) + [config.std["direct"][m]]
            xs = np.r_[np.arange(len(mean) - 1), width - 1] + c / (len(insp.configs) + 1)
            ax.bar(xs, mean, width=1 / (len(insp.configs) + 1),
                   yerr=[0 if math.isnan(s) else s for s in std], capsize=2,
                   label=f"#{c + 1} {config.label}"[:40])
        ax.set_xticks(np.arange(width) + 0.3, [*table_names(width - 1), "all paths"])
        ax.set_title(metric.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    reference = insp.trials[0].reference["kl_unigram"]
    axes[0].axhline(reference, color="black", ls="--", lw=1, label="unigram predictor")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=8)
    fig.suptitle("Logit lens of each input table against the validation data's next tokens")
    fig.savefig(path, dpi=110)
    return path
