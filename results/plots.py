"""PNG plots of a report (matplotlib, drawn off-screen with the Agg canvas).

Figures are built from `matplotlib.figure.Figure` rather than pyplot: no global state, no
GUI backend, safe to call from any thread or a headless cluster node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablate.results.render import label
from ablate.results.report import Report
from ablate.results.stats import mean_ci, summarize

GRID_POINTS = 200


def write_plots(report: Report, table: pa.Table, out: str | Path,
                max_configs: int = 8, max_lambda_plots: int = 4) -> list[Path]:
    """Every plot that the data supports, written into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_curves(report, out / "loss_vs_time.png", max_configs),
             plot_pareto(report, out / "pareto.png"),
             plot_extra_embeddings(report, out / "loss_vs_extra_embeddings.png")]
    paths += plot_lambdas(report, table, out, max_lambda_plots)
    return [p for p in paths if p is not None]


def plot_curves(report: Report, path: Path, max_configs: int = 8) -> Path:
    """Val loss vs training time: per config the mean over seeds and a min-max band.

    Seeds validate at different times, so each is interpolated on a common time grid that
    stops where the shortest seed stops. Left: whole runs; right: the second half, where
    configs separate. The configs with the lowest mean final loss are shown.
    """
    trials = report.trials
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    whole, tail = fig.subplots(1, 2)
    lines = []
    for config, color in zip(_best_configs(report, max_configs), _colors(max_configs)):
        members = _members(report, config)
        ends = [trials.time_s[trials.offsets[t + 1] - 1] for t in members]
        grid = np.linspace(0, min(ends), GRID_POINTS)
        ys = np.array([np.interp(grid, *_curve(report, t)) for t in members])
        lines.append((grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)))
        for ax in (whole, tail):
            ax.plot(grid, lines[-1][1], color=color, lw=1.6,
                    label=f"#{config + 1} {label(report, config)} (n={len(members)})")
            if len(members) > 1:
                ax.fill_between(grid, lines[-1][2], lines[-1][3], color=color, alpha=0.2, lw=0)
    if lines:
        start = 0.5 * max(grid[-1] for grid, *_ in lines)
        window = [(lo[grid >= start], mean[grid >= start]) for grid, mean, lo, _ in lines]
        low = min(lo.min() for lo, _ in window if len(lo))
        high = max(mean.max() for _, mean in window if len(mean))
        if report.target is not None:
            low = min(low, report.target)
        pad = 0.05 * (high - low) if high > low else 0.01
        tail.set_xlim(start, 1.02 * max(grid[-1] for grid, *_ in lines))
        tail.set_ylim(low - pad, high + pad)
    for ax in (whole, tail):
        if report.target is not None:
            ax.axhline(report.target, color="black", ls="--", lw=1,
                       label=f"target {report.target:g}")
        ax.set(xlabel="training time (s)", ylabel="val loss")
        ax.grid(alpha=0.3)
    whole.set_title("Val loss vs training time (mean over seeds, band: min-max)")
    tail.set_title("Second half, zoomed")
    tail.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def plot_pareto(report: Report, path: Path) -> Path:
    """Mean final loss vs mean training time per config, t-interval error bars on both
    axes, the config frontier as a step line, and the best single curve point per budget.

    Points carry their config number (#, as in the table); the legend says which is which.
    """
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    ax = fig.add_subplot()
    configs = [(i, c) for i, c in enumerate(report.configs) if c.loss["n"] > 0]
    named = len(configs) <= 30
    for i, c in configs:
        ax.errorbar(c.time["mean"], c.loss["mean"], xerr=_finite(c.time_ci),
                    yerr=_finite(c.loss_ci), fmt="o" if c.pareto else "s",
                    color="tab:red" if c.pareto else "tab:gray", ms=6 if c.pareto else 4,
                    capsize=3, lw=1, label=f"#{i + 1} {label(report, i)}: "
                    f"P(nd)={c.p_nondominated:.2f}" if named else None)
        if named or c.pareto:
            ax.annotate(f"#{i + 1}", (c.time["mean"], c.loss["mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted((c.time["mean"], c.loss["mean"]) for _, c in configs if c.pareto)
    if front:
        x, y = zip(*front)
        ax.plot(x, y, color="tab:red", drawstyle="steps-post", lw=1.2,
                label="config frontier (means)")
    if report.budget:
        ax.plot([p.time_s for p in report.budget], [p.val_loss for p in report.budget],
                color="tab:blue", alpha=0.5, drawstyle="steps-post", lw=1,
                label="best curve point within budget")
    if report.target is not None:
        ax.axhline(report.target, color="black", ls="--", lw=1, label=f"target {report.target:g}")
    if configs:
        ax.set_xlim(*_padded([c.time["mean"] - _finite(c.time_ci) for _, c in configs] +
                             [c.time["mean"] + _finite(c.time_ci) for _, c in configs]))
        ax.set_ylim(*_padded([c.loss["mean"] - _finite(c.loss_ci) for _, c in configs] +
                             [c.loss["mean"] + _finite(c.loss_ci) for _, c in configs]))
    level = f"{1 - report.alpha:.0%}"
    ax.set(xlabel="mean training time (s)", ylabel="mean final val loss",
           title=f"Pareto frontier of configs (error bars: {level} t-interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.savefig(path, dpi=110)
    return path


def plot_extra_embeddings(report: Report, path: Path) -> Path | None:
    """Mean final loss vs extra_embeddings, one line per lambda_init (and per value of any
    other config column that varies), with t-interval error bars. None without the axis."""
    info = report.info
    done = report.trials.outcome == "completed"
    if "extra_embeddings" not in info.column_names:
        return None
    extra = np.array([np.nan if v is None else v
                      for v in info["extra_embeddings"].to_pylist()], dtype=float)
    done &= ~np.isnan(extra)
    if not done.any():
        return None
    others = [k for k in report.by if k != "extra_embeddings"
              and len(set(info[k].to_pylist())) > 1]
    if "lambda_init" in info.column_names and "lambda_init" not in others:
        others.insert(0, "lambda_init")
    line_keys = list(zip(*(info[k].to_pylist() for k in others))) if others else \
        [()] * len(info)
    loss = report.trials.final_loss
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for line in sorted({line_keys[i] for i in np.flatnonzero(done)}, key=repr):
        members = np.flatnonzero(done & np.array([k == line for k in line_keys]))
        xs, group = np.unique(extra[members], return_inverse=True)
        summary = summarize(loss[members], group, len(xs))
        ci = np.nan_to_num(mean_ci(summary, report.alpha))
        name = ", ".join(f"{k}={v}" for k, v in zip(others, line)) or "all"
        ax.errorbar(xs, summary.mean, yerr=ci, marker="o", capsize=3, label=name)
    if report.target is not None:
        ax.axhline(report.target, color="black", ls="--", lw=1, label=f"target {report.target:g}")
    level = f"{1 - report.alpha:.0%}"
    ax.set(xlabel="extra_embeddings (k)", ylabel="final val loss (mean over seeds)",
           title=f"Final val loss vs extra embeddings (error bars: {level} t-interval)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def plot_lambdas(report: Report, table: pa.Table, out: Path, max_plots: int = 4) -> list[Path]:
    """Per config (the first `max_plots` that logged lambdas), one representative trial
    (final loss nearest the config's median): one panel per mixing weight, a line per layer."""
    paths = []
    for config in range(len(report.configs)):
        if len(paths) >= max_plots:
            break
        trial = _representative(report, config)
        steps, lambdas = _lambdas(report, table, trial)
        if lambdas is None:
            continue
        n_weights = lambdas.shape[2]
        cols = min(n_weights, 4)
        rows = -(-n_weights // cols)
        fig = Figure(figsize=(3.6 * cols, 2.8 * rows + 0.6), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
        layers = ScalarMappable(Normalize(0, max(lambdas.shape[1] - 1, 1)), "viridis")
        for w, ax in enumerate(axes.flat):
            if w >= n_weights:
                ax.set_visible(False)
                continue
            for layer in range(lambdas.shape[1]):
                ax.plot(steps, lambdas[:, layer, w], color=layers.to_rgba(layer), lw=1.2)
            ax.set_title("residual x" if w == 0 else f"x0{w - 1}", fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        bar = fig.colorbar(layers, ax=axes, label="layer", shrink=0.9)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        trial_id = report.trials.info["trial_id"][trial].as_py()
        fig.suptitle(f"Block lambdas over training: {label(report, config)} (trial {trial_id})")
        path = out / f"lambdas_{config:03d}_{_slug(label(report, config))}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _members(report: Report, config: int) -> np.ndarray:
    """Trials to draw for a config: its completed ones, or all of them if none completed."""
    mine = report.groups.index == config
    done = mine & (report.trials.outcome == "completed")
    return np.flatnonzero(done if done.any() else mine)


def _representative(report: Report, config: int) -> int:
    members = _members(report, config)
    loss = report.trials.final_loss[members]
    if np.isfinite(loss).any():
        return int(members[np.nanargmin(np.abs(loss - np.nanmedian(loss)))])
    return int(members[0])


def _curve(report: Report, trial: int) -> tuple[np.ndarray, np.ndarray]:
    t = report.trials
    span = slice(t.offsets[trial], t.offsets[trial + 1])
    return t.time_s[span], t.val_loss[span]


def _lambdas(report: Report, table: pa.Table,
             trial: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(steps, array [point, layer, weight]) of a trial's logged lambdas; None if none."""
    t = report.trials
    span = slice(t.offsets[trial], t.offsets[trial + 1])
    if "lambdas" not in table.column_names:  # loaded without them (load_curves(lambdas=False))
        return t.step[span], None
    values = table["lambdas"].take(pa.array(t.rows[span])).to_pylist()
    keep = [i for i, v in enumerate(values) if v]
    if not keep:
        return t.step[span], None
    layers = max(len(values[i]) for i in keep)
    weights = max(len(layer) for i in keep for layer in values[i])
    out = np.full((len(keep), layers, weights), np.nan)
    for row, i in enumerate(keep):
        for layer, mix in enumerate(values[i]):
            out[row, layer, :len(mix)] = [np.nan if v is None else v for v in mix]
    return t.step[span][keep], out


def _best_configs(report: Report, n: int) -> list[int]:
    with_curves = [i for i in range(len(report.configs)) if len(_members(report, i))]
    key = [report.configs[i].loss["mean"] for i in with_curves]
    ranked = sorted(zip(key, with_curves), key=lambda p: (np.isnan(p[0]), p[0]))
    return sorted(i for _, i in ranked[:n])


def _colors(n: int) -> Sequence[str]:
    base = [f"C{i}" for i in range(10)]
    return (base * (n // 10 + 1))[:n]


def _padded(values: list[float], share: float = 0.08) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = share * (high - low) if high > low else 0.01 * max(abs(high), 1.0)
    return low - pad, high + pad


def _finite(x: float) -> float:
    return x if np.isfinite(x) else 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:60] or "all"
