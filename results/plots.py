"""Plots of a report (matplotlib, drawn off-screen): PNG, PDF or SVG.

Figures are built from `matplotlib.figure.Figure` rather than pyplot: no global state, no
GUI backend, safe to call from any thread or a headless cluster node. Every file a call
would write is known before drawing (`plan_plots`), so an existing file is refused before
anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablate.results.configs import determined, display
from ablate.results.errors import InputError
from ablate.results.render import PLOT_FORMATS, label
from ablate.results.report import Report

GRID_POINTS = 200
LEGEND_CHARS = 36  # legend labels are cut to this; the table has the full config


@dataclass(frozen=True)
class Plot:
    """A file to draw: where, and the function that draws it (None: no data, not written)."""

    path: Path
    draw: Callable[[Path, int | None], Path | None]


def plan_plots(report: Report, out: str | Path, format: str = "png",
               lambdas: Sequence[int] | None = None, max_configs: int = 8) -> list[Plot]:
    """Every plot the report supports: loss vs time, the Pareto plot, final loss vs each
    numeric field shown in the table, and block lambdas for each config in `lambdas`
    (config numbers, 1-based; None: every config). InputError for a config number that
    does not exist or an unknown format."""
    if format not in PLOT_FORMATS:
        raise InputError(f"--plot-format: must be one of {', '.join(PLOT_FORMATS)}, "
                         f"not {format!r}")
    out = Path(out)
    n = len(report.configs)
    chosen = list(range(1, n + 1)) if lambdas is None else list(dict.fromkeys(lambdas))
    bad = [c for c in chosen if not 1 <= c <= n]
    if bad:
        raise InputError(f"--lambdas: no config #{bad[0]} (the report has 1..{n})")
    plots = [
        Plot(out / f"loss_vs_time.{format}",
             lambda path, dpi: plot_curves(report, path, max_configs, dpi)),
        Plot(out / f"pareto.{format}", lambda path, dpi: plot_pareto(report, path, dpi)),
    ]
    for field in numeric_fields(report):
        plots.append(Plot(out / f"final_loss_vs_{_slug(field)}.{format}",
                          lambda path, dpi, field=field: plot_final_loss(report, field, path,
                                                                         dpi)))
    for number in chosen:
        config = number - 1
        name = f"lambdas_{number:03d}_{_slug(label(report, config))}.{format}"
        plots.append(Plot(out / name, lambda path, dpi, config=config:
                          plot_lambdas(report, config, path, dpi)))
    return plots


def check_free(plots: Sequence[Plot]) -> None:
    """InputError naming the first plot file that exists already (nothing is overwritten)."""
    for plot in plots:
        if plot.path.exists():
            raise InputError(f"{plot.path}: already exists; refusing to overwrite it "
                             "(choose another --plot folder)")


def write_plots(report: Report, out: str | Path, format: str = "png", dpi: int | None = None,
                lambdas: Sequence[int] | None = None, max_configs: int = 8) -> list[Path]:
    """Draw every planned plot into `out` (created if needed); returns the paths written.
    Refuses, before writing anything, if any of the files exists."""
    plots = plan_plots(report, out, format, lambdas, max_configs)
    check_free(plots)
    return draw_plots(plots, out, dpi)


def draw_plots(plots: Sequence[Plot], out: str | Path, dpi: int | None = None) -> list[Path]:
    """Draw planned plots (already checked free) into `out`; returns the paths written."""
    Path(out).mkdir(parents=True, exist_ok=True)
    written = [plot.draw(plot.path, dpi) for plot in plots]
    return [p for p in written if p is not None]


def numeric_fields(report: Report) -> list[str]:
    """Shown fields whose values are numbers (not booleans), with at least two of them."""
    out = []
    for field in report.fields:
        values = [c.key[field] for c in report.configs if c.key[field] is not None]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(values) and len(set(numbers)) > 1:
            out.append(field)
    return out


def short_label(report: Report, config: int) -> str:
    """`#3 1, one`: the config number and its shown values (the legend title names the
    fields), cut to LEGEND_CHARS."""
    values = ", ".join(display(report.configs[config].key[f]) for f in report.fields)
    text = f"#{config + 1} {values}".rstrip()
    return text if len(text) <= LEGEND_CHARS else text[:LEGEND_CHARS - 1] + "…"


def legend_title(report: Report) -> str | None:
    fields = ", ".join(report.fields)
    if not fields:
        return None
    return fields if len(fields) <= 2 * LEGEND_CHARS else fields[:2 * LEGEND_CHARS - 1] + "…"


def plot_curves(report: Report, path: Path, max_configs: int = 8,
                dpi: int | None = None) -> Path:
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
            n = report.configs[config].loss["n"] or len(members)  # replicates, if any
            ax.plot(grid, lines[-1][1], color=color, lw=1.6,
                    label=f"{short_label(report, config)} (n={n})")
            if len(members) > 1:
                ax.fill_between(grid, lines[-1][2], lines[-1][3], color=color, alpha=0.2, lw=0)
    if lines:
        start = 0.5 * max(grid[-1] for grid, *_ in lines)
        window = [(lo[grid >= start], mean[grid >= start]) for grid, mean, lo, _ in lines]
        low = min((lo.min() for lo, _ in window if len(lo)), default=np.nan)
        high = max((mean.max() for _, mean in window if len(mean)), default=np.nan)
        if report.target is not None:
            low = min(low, report.target)
        if np.isfinite(low) and np.isfinite(high):
            pad = 0.05 * (high - low) if high > low else 0.01
            tail.set_ylim(low - pad, high + pad)
        tail.set_xlim(start, 1.02 * max(grid[-1] for grid, *_ in lines) or 1.0)
    for ax in (whole, tail):
        if report.target is not None:
            ax.axhline(report.target, color="black", ls="--", lw=1,
                       label=f"target {report.target:g}")
        ax.set(xlabel="training time (s)", ylabel="val loss")
        ax.grid(alpha=0.3)
    whole.set_xlim(left=0)
    whole.set_title("Val loss vs training time (mean over seeds, band: min-max)")
    tail.set_title("Second half, zoomed")
    tail.legend(fontsize=8, title=legend_title(report), title_fontsize=8)
    fig.savefig(path, dpi=dpi or 110)
    return path


def plot_pareto(report: Report, path: Path, dpi: int | None = None) -> Path:
    """Mean final loss vs mean training time per config, t-interval error bars on both
    axes (a time interval stops at 0), the config frontier as a step line, and the best
    single curve point per budget.

    Points carry their config number (#, as in the table); the legend says which is which.
    """
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    ax = fig.add_subplot()
    configs = [(i, c) for i, c in enumerate(report.configs) if c.loss["n"] > 0]
    named = len(configs) <= 30
    for i, c in configs:
        below, above = _time_bar(c.time["mean"], c.time_ci)
        p_nd = "n/a" if np.isnan(c.p_nondominated) else f"{c.p_nondominated:.2f}"
        ax.errorbar(c.time["mean"], c.loss["mean"], xerr=[[below], [above]],
                    yerr=_finite(c.loss_ci), fmt="o" if c.pareto else "s",
                    color="tab:red" if c.pareto else "tab:gray", ms=6 if c.pareto else 4,
                    capsize=3, lw=1,
                    label=f"{short_label(report, i)}: P(nd) {p_nd}" if named else None)
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
        bars = [_time_bar(c.time["mean"], c.time_ci) for _, c in configs]
        low, high = _padded([c.time["mean"] - b for (_, c), (b, _) in zip(configs, bars)] +
                            [c.time["mean"] + a for (_, c), (_, a) in zip(configs, bars)])
        ax.set_xlim(max(low, 0.0), high)
        ax.set_ylim(*_padded([c.loss["mean"] - _finite(c.loss_ci) for _, c in configs] +
                             [c.loss["mean"] + _finite(c.loss_ci) for _, c in configs]))
    level = f"{1 - report.alpha:.0%}"
    ax.set(xlabel="mean training time (s)", ylabel="mean final val loss",
           title=f"Pareto frontier of configs (error bars: {level} t-interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              title=legend_title(report) if named else None, title_fontsize=7)
    fig.savefig(path, dpi=dpi or 110)
    return path


def plot_final_loss(report: Report, field: str, path: Path, dpi: int | None = None) -> Path:
    """Mean final loss vs one numeric field, a line per value of the other shown fields
    (but those that follow from this one: they would split every line into points), with
    t-interval error bars (configs with no completed seed are left out)."""
    xs_of = [display(c.key[field]) for c in report.configs]
    others = [f for f in report.fields if f != field
              and not determined(xs_of, [display(c.key[f]) for c in report.configs])]
    lines: dict[tuple[str, ...], list[int]] = {}
    for i, c in enumerate(report.configs):
        if c.loss["n"] > 0 and c.key[field] is not None:
            lines.setdefault(tuple(display(c.key[f]) for f in others), []).append(i)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for line, members in lines.items():
        members.sort(key=lambda i: report.configs[i].key[field])
        xs = [report.configs[i].key[field] for i in members]
        ys = [report.configs[i].loss["mean"] for i in members]
        ci = [_finite(report.configs[i].loss_ci) for i in members]
        name = ", ".join(line) or "all"
        ax.errorbar(xs, ys, yerr=ci, marker="o", capsize=3,
                    label=name if len(name) <= LEGEND_CHARS else name[:LEGEND_CHARS - 1] + "…")
    if report.target is not None:
        ax.axhline(report.target, color="black", ls="--", lw=1, label=f"target {report.target:g}")
    level = f"{1 - report.alpha:.0%}"
    ax.set(xlabel=field, ylabel="final val loss (mean over seeds)",
           title=f"Final val loss vs {field} (error bars: {level} t-interval)")
    if all(isinstance(c.key[field], int) for c in report.configs if c.key[field] is not None):
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=", ".join(others) or None, title_fontsize=8)
    fig.savefig(path, dpi=dpi or 120)
    return path


def plot_lambdas(report: Report, config: int, path: Path, dpi: int | None = None) -> Path | None:
    """One config's representative trial (final loss nearest the config's median): one
    panel per mixing weight, a line per layer. None (nothing written) if it logged none."""
    trial = _representative(report, config)
    steps, lambdas = _lambdas(report, trial)
    if lambdas is None:
        return None
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
    fig.suptitle(f"Block lambdas over training: #{config + 1} {label(report, config)} "
                 f"(trial {trial_id})")
    fig.savefig(path, dpi=dpi or 110)
    return path


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


def _lambdas(report: Report, trial: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(steps, array [point, layer, weight]) of a trial's logged lambdas; None if none."""
    table = report.table
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


def _time_bar(mean: float, ci: float) -> tuple[float, float]:
    """(below, above) the mean time: the interval's half-width, stopped at 0 below."""
    half = _finite(ci)
    return min(half, max(mean, 0.0)), half


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:60] or "all"
