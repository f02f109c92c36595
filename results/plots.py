"""Plots of a report (matplotlib, drawn off-screen): PNG, PDF or SVG.

Figures are built from `matplotlib.figure.Figure` rather than pyplot: no global state, no
GUI backend, safe to call from any thread or a headless cluster node. Every file a call
would write is known before drawing (`plan_plots`), so an existing file is refused before
anything is written; each figure can be had without a file (`Plot.figure`), which is how the
tests read titles, axis labels and legends.

Sizes are a paper's: a one-panel figure is COLUMN_IN wide (one column of a two-column paper),
a figure of panels PAGE_IN (both columns), and no text is smaller than SMALL_PT, so a figure
placed at its width reads as printed. Every axis names its quantity and unit; configs are
told apart by colour and marker (or line style), and carry the `#` of the tables.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablate.core.files import default_mode
from ablate.core.states import COMPLETED
from ablate.results.configs import determined, display
from ablate.results.errors import InputError
from ablate.results.formats import PLOT_FORMATS
from ablate.results.render import label
from ablate.results.report import Report

GRID_POINTS = 200
LEGEND_CHARS = 36  # legend labels are cut to this; the table has the full config
COLUMN_IN = 4.2  # one-panel figures: about a paper's column (3.3-3.5 in) with its margins
PAGE_IN = 7.0  # figures of panels: both columns of a paper
TITLE_PT, LABEL_PT, SMALL_PT = 10, 9, 8  # SMALL_PT: ticks, legends, point labels
DPI = 200  # PNG resolution: sharp at these sizes when printed
LOSS = "val loss (nats/token)"  # cross-entropy with the natural log, per token
DODGE_SHARE = 0.3  # dodged points of one x spread over at most this share of the gap to the next
LOG_SPAN = 20.0  # a positive numeric axis whose values span this factor or more is drawn log
MARKERS = "os^Dv<>pPX"
LINESTYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class Plot:
    """A file to draw: where, and the function that draws its figure (None: no data, no file)."""

    path: Path
    figure: Callable[[], Figure | None]


def plan_plots(report: Report, out: str | Path, format: str = "png",
               lambdas: Sequence[int] | None = None, max_configs: int = 8) -> list[Plot]:
    """Every plot the report supports: loss vs time, loss vs tokens beside loss vs time,
    the Pareto plot, the parallel coordinates of the shown fields against the final loss,
    final loss vs each numeric field shown in the table, and block lambdas for each config
    in `lambdas` (config numbers, 1-based; None: every config). InputError for a config
    number that does not exist or an unknown format."""
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
        Plot(out / f"loss_vs_time.{format}", lambda: curves_figure(report, max_configs)),
        Plot(out / f"loss_vs_tokens_and_time.{format}",
             lambda: tokens_and_time_figure(report, max_configs)),
        Plot(out / f"pareto.{format}", lambda: pareto_figure(report)),
        Plot(out / f"parallel_coordinates.{format}", lambda: parallel_figure(report)),
    ]
    for field in numeric_fields(report):
        plots.append(Plot(out / f"final_loss_vs_{_slug(field)}.{format}",
                          lambda field=field: final_loss_figure(report, field)))
    for number in chosen:
        config = number - 1
        name = f"lambdas_{number:03d}_{_slug(label(report, config))}.{format}"
        plots.append(Plot(out / name, lambda config=config: lambdas_figure(report, config)))
    return plots


def check_free(plots: Sequence[Plot], force: bool = False) -> None:
    """InputError naming the first plot file that exists already (nothing is overwritten);
    with `force`, only a path that is not a file (a folder) is refused: files are replaced."""
    for plot in plots:
        if force and (plot.path.is_symlink() or not plot.path.exists() or plot.path.is_file()):
            continue
        if force:
            raise InputError(f"{plot.path}: not a file; --force replaces plot files only")
        if plot.path.exists() or plot.path.is_symlink():
            raise InputError(f"{plot.path}: already exists; refusing to overwrite it "
                             "(choose another --plot folder, or --force)")


def write_plots(report: Report, out: str | Path, format: str = "png", dpi: int | None = None,
                lambdas: Sequence[int] | None = None, max_configs: int = 8,
                force: bool = False) -> list[Path]:
    """Draw every planned plot into `out` (created if needed); returns the paths written.
    Refuses, before writing anything, if any of the files exists (unless `force`)."""
    plots = plan_plots(report, out, format, lambdas, max_configs)
    check_free(plots, force)
    return draw_plots(plots, out, dpi)


def draw_plots(plots: Sequence[Plot], out: str | Path, dpi: int | None = None) -> list[Path]:
    """Draw planned plots (already checked) into `out`; returns the paths written. Each file
    is written whole or not at all (temp file, then a rename: a link at the path is replaced,
    never followed); only these files are touched."""
    Path(out).mkdir(parents=True, exist_ok=True)
    written = []
    for plot in plots:
        figure = plot.figure()
        if figure is not None:
            save(figure, plot.path, dpi)
            written.append(plot.path)
    return written


def save(figure: Figure, path: Path, dpi: int | None = None) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            figure.savefig(f, format=path.suffix.lstrip("."), dpi=dpi or DPI)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def numeric_fields(report: Report) -> list[str]:
    """Shown fields whose values are numbers (not booleans), with at least two of them."""
    out = []
    for field in report.fields:
        values = [c.key[field] for c in report.configs if c.key[field] is not None]
        if values and _numeric(values) and len(set(values)) > 1:
            out.append(field)
    return out


def short_label(report: Report, config: int) -> str:
    """`#3 1, one`: the config number and its shown values (the legend title names the
    fields), cut to LEGEND_CHARS."""
    values = ", ".join(display(report.configs[config].key[f]) for f in report.fields)
    return _cut(f"#{config + 1} {values}".rstrip())


def legend_title(report: Report) -> str | None:
    fields = ", ".join(report.fields)
    return _cut(fields, 2 * LEGEND_CHARS) if fields else None


def field_label(field: str) -> str:
    """An axis label for a config field with its unit where the name tells it (`_steps`,
    `_tokens`, `_ms`, ...); otherwise the value is as written in the config."""
    units = [(r"(^|_)(num_iterations|steps|every)$", "steps"), (r"(^|_)(tokens|seq_len)$", "tokens"),
             (r"_ms$", "ms"), (r"_s$", "s"), (r"_gb$", "GB"), (r"_mb$", "MB")]
    unit = next((u for pattern, u in units if re.search(pattern, field)), "config value")
    return f"{field} ({unit})"


def curves_figure(report: Report, max_configs: int = 8) -> Figure:
    """Val loss vs training time: per config the mean over seeds and a min-max band.

    Seeds validate at different times, so each is interpolated on a common time grid that
    stops where the shortest seed stops. Left: whole runs; right: the second half, where
    configs separate. The configs with the lowest mean final loss are shown.
    """
    fig = Figure(figsize=(PAGE_IN, 3.2), layout="constrained")
    whole, tail = fig.subplots(1, 2)
    lines = []
    chosen = _best_configs(report, max_configs)
    for config, style in zip(chosen, _styles(len(chosen))):
        members = _members(report, config)
        grid, mean, low, high = _mean_curve([_curve(report, t) for t in members])
        lines.append((grid, mean, low))
        for ax in (whole, tail):
            ax.plot(grid, mean, color=style["color"], ls=style["ls"], lw=1.4,
                    label=_with_n(report, config, len(members)))
            if len(members) > 1:
                ax.fill_between(grid, low, high, color=style["color"], alpha=0.15, lw=0)
    if lines:
        end = max(grid[-1] for grid, *_ in lines)
        start = 0.5 * end
        window = [(low[grid >= start], mean[grid >= start]) for grid, mean, low in lines]
        low = min((lo.min() for lo, _ in window if len(lo)), default=np.nan)
        high = max((mean.max() for _, mean in window if len(mean)), default=np.nan)
        if report.target is not None:
            low = min(low, report.target)
        if np.isfinite(low) and np.isfinite(high):
            pad = 0.05 * (high - low) if high > low else 0.01
            tail.set_ylim(low - pad, high + pad)
        tail.set_xlim(start, 1.02 * end or 1.0)
    for ax, name in ((whole, "Whole runs"), (tail, "Second half, zoomed")):
        _target_line(ax, report)
        _axes(ax, name, "training time (s)", LOSS)
    whole.set_xlim(left=0)
    _title(fig, "Val loss vs training time (mean over seeds, band: min-max over seeds)")
    _legend(fig, whole, legend_title(report))
    return fig


def tokens_and_time_figure(report: Report, max_configs: int = 8) -> Figure:
    """Val loss vs tokens seen beside val loss vs training time, one figure with a shared
    loss axis: what a config gains per token and what it gains per second read side by side
    (a config that wins per token but loses per second shows as a crossing). Means over seeds
    as in `curves_figure`; trials that logged no tokens are left out of the tokens panel."""
    fig = Figure(figsize=(PAGE_IN, 3.2), layout="constrained")
    by_tokens, by_time = fig.subplots(1, 2, sharey=True)
    chosen = _best_configs(report, max_configs)
    tokens_max = max((x.max() for t in range(len(report.trials)) if len(x := _tokens(report, t)[0])),
                     default=0.0)
    scale, unit = next(((10.0 ** p, u) for p, u in ((9, "billions"), (6, "millions"), (3, "thousands"))
                        if tokens_max >= 10.0 ** p), (1.0, "tokens"))
    for config, style in zip(chosen, _styles(len(chosen))):
        members = _members(report, config)
        name = _with_n(report, config, len(members))
        for ax, curves in ((by_time, [_curve(report, t) for t in members]),
                           (by_tokens, [c for t in members if len((c := _tokens(report, t))[0])])):
            if not curves:
                continue
            grid, mean, _, _ = _mean_curve(curves)
            ax.plot(grid / (scale if ax is by_tokens else 1.0), mean, color=style["color"],
                    ls=style["ls"], lw=1.4, label=name)
    if tokens_max == 0:
        by_tokens.text(0.5, 0.5, "no tokens_seen logged", transform=by_tokens.transAxes,
                       ha="center", va="center", fontsize=LABEL_PT)
    for ax in (by_tokens, by_time):
        _target_line(ax, report)
    _axes(by_tokens, "Per token", f"tokens seen ({unit})", LOSS)
    _axes(by_time, "Per second", "training time (s)", LOSS)
    by_time.yaxis.set_tick_params(labelleft=True)
    _title(fig, "Val loss vs tokens seen and vs training time (mean over seeds)")
    _legend(fig, by_time, legend_title(report))
    return fig


def pareto_figure(report: Report) -> Figure:
    """Mean final loss vs mean training time per config, t-interval error bars on both
    axes (a time interval stops at 0), the config frontier as a step line, and the best
    single curve point per budget.

    Each config has its own colour and marker (filled and larger on the frontier, hollow
    off it) and its `#` beside the point; the legend says which is which. Points sit where
    the data puts them (no dodging: both axes are measurements), so close configs are told
    apart by colour, and their bars drawn thin and translucent.
    """
    configs = [(i, c) for i, c in enumerate(report.configs) if c.loss["n"] > 0]
    named = len(configs) <= 30
    fig = Figure(figsize=(COLUMN_IN, 3.0 + (0.16 * (len(configs) + 3) if named else 0.5)),
                 layout="constrained")
    ax = fig.add_subplot()
    styles = _styles(len(report.configs), markers=True)
    for i, c in configs:
        below, above = _time_bar(c.time["mean"], c.time_ci)
        p_nd = "n/a" if np.isnan(c.p_nondominated) else f"{c.p_nondominated:.2f}"
        color, marker = styles[i]["color"], styles[i]["marker"]
        ax.errorbar(c.time["mean"], c.loss["mean"], xerr=[[below], [above]],
                    yerr=_finite(c.loss_ci), fmt=marker, color=color, ecolor=color,
                    elinewidth=0.8, alpha=0.9, capsize=2, ms=7 if c.pareto else 5,
                    mfc=color if c.pareto else "white", mew=1.2, zorder=3 if c.pareto else 2,
                    label=f"{short_label(report, i)}: P(nd) {p_nd}" if named else None)
    front = sorted((c.time["mean"], c.loss["mean"]) for _, c in configs if c.pareto)
    if front:
        x, y = zip(*front)
        ax.plot(x, y, color="black", drawstyle="steps-post", lw=1.0, alpha=0.7,
                label="config frontier (means; filled markers)")
    if report.budget:
        ax.plot([p.time_s for p in report.budget], [p.val_loss for p in report.budget],
                color="tab:blue", alpha=0.4, drawstyle="steps-post", lw=1,
                label="best curve point within budget")
    _target_line(ax, report)
    if configs:
        bars = [_time_bar(c.time["mean"], c.time_ci) for _, c in configs]
        low, high = _padded([c.time["mean"] - b for (_, c), (b, _) in zip(configs, bars)] +
                            [c.time["mean"] + a for (_, c), (_, a) in zip(configs, bars)])
        ax.set_xlim(max(low, 0.0), high)
        ax.set_ylim(*_padded([c.loss["mean"] - _finite(c.loss_ci) for _, c in configs] +
                             [c.loss["mean"] + _finite(c.loss_ci) for _, c in configs]))
        shown = [(i, c) for i, c in configs if named or c.pareto]
        _point_labels(ax, [(c.time["mean"], c.loss["mean"]) for _, c in shown],
                      [f"#{i + 1}" for i, _ in shown])
    level = f"{1 - report.alpha:.0%}"
    _axes(ax, None, "mean training time (s)", f"mean final {LOSS}")
    _title(fig, f"Pareto frontier of configs (bars: {level} t-interval over seeds)")
    # Over 30 configs the legend keeps the lines and the `#` of the frontier's points: the
    # table names the rest.
    _legend(fig, ax, legend_title(report) if named else None)
    return fig


def parallel_figure(report: Report) -> Figure | None:
    """Parallel coordinates: one line per config (with a completed seed) through an axis per
    shown field and a last axis of its mean final loss, coloured by that loss (colour bar).
    A numeric field is drawn to scale (log if it spans LOG_SPAN or more), any other field as
    evenly spaced levels in the order of the table. None (no file) without a varying field."""
    configs = [i for i, c in enumerate(report.configs) if c.loss["n"] > 0]
    if not report.fields or len(configs) < 2:
        return None
    loss = np.array([report.configs[i].loss["mean"] for i in configs])
    columns = [_parallel_axis(field, [report.configs[i].key[field] for i in configs])
               for field in report.fields]
    columns.append(_parallel_axis(f"mean final {LOSS}", list(loss)))
    fig = Figure(figsize=(PAGE_IN, 3.6), layout="constrained")
    ax = fig.add_subplot()
    colors = ScalarMappable(Normalize(loss.min(), loss.max()), "viridis")
    for row in np.argsort(-loss):  # the lowest loss drawn last, on top
        ys = [column["y"][row] for column in columns]
        ax.plot(range(len(columns)), ys, color=colors.to_rgba(loss[row]), lw=1.5, alpha=0.9)
        if len(configs) <= 30:
            ax.annotate(f"#{configs[row] + 1}", (len(columns) - 1, ys[-1]), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=SMALL_PT)
    for x, column in enumerate(columns):
        ax.axvline(x, color="0.3", lw=0.8)
        for y, text in column["ticks"]:
            ax.annotate(text, (x, y), xytext=(-3, 0), textcoords="offset points", ha="right",
                        va="center", fontsize=SMALL_PT, color="0.2", zorder=4,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                              "alpha": 0.8})
    ax.set_xticks(range(len(columns)),
                  [textwrap.fill(c["name"], 16) for c in columns], fontsize=SMALL_PT)
    ax.set_yticks([])
    ax.set_xlim(-0.35, len(columns) - 1 + 0.25)
    ax.set_ylim(-0.05, 1.05)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    _axes(ax, None, "config field (each axis on its own scale, in the field's units)",
          "position on each axis (its min to max)")
    bar = fig.colorbar(colors, ax=ax, pad=0.04)
    bar.set_label(f"mean final {LOSS}", fontsize=LABEL_PT)
    bar.ax.tick_params(labelsize=SMALL_PT)
    _title(fig, f"Config fields against final val loss: one line per config "
                f"({len(configs)} configs, mean over seeds)")
    return fig


def final_loss_figure(report: Report, field: str) -> Figure:
    """Mean final loss vs one numeric field, a line per value of the other shown fields
    (but those that follow from this one: they would split every line into points), with
    t-interval error bars (configs with no completed seed are left out).

    Lines that share an x are dodged sideways, each by a fixed share of the gap to the next
    x (at most DODGE_SHARE of it in all), so their bars sit side by side instead of on top
    of each other; the axis keeps the true values as ticks. A field spanning LOG_SPAN or
    more is drawn on a log axis, dodged by a factor.
    """
    xs_of = [display(c.key[field]) for c in report.configs]
    others = [f for f in report.fields if f != field
              and not determined(xs_of, [display(c.key[f]) for c in report.configs])]
    lines: dict[tuple[str, ...], list[int]] = {}
    for i, c in enumerate(report.configs):
        if c.loss["n"] > 0 and c.key[field] is not None:
            lines.setdefault(tuple(display(c.key[f]) for f in others), []).append(i)
    values = sorted({report.configs[i].key[field] for m in lines.values() for i in m})
    log = len(values) > 1 and values[0] > 0 and values[-1] / values[0] >= LOG_SPAN
    where = np.log10(values) if log else np.array(values, dtype=float)
    gap = float(np.diff(where).min()) if len(where) > 1 else 1.0
    step = DODGE_SHARE * gap / max(len(lines), 1)
    fig = Figure(figsize=(COLUMN_IN, 3.0 + 0.16 * (len(lines) + 1)), layout="constrained")
    ax = fig.add_subplot()
    for (line, members), style in zip(lines.items(), _styles(len(lines), markers=True)):
        members.sort(key=lambda i: report.configs[i].key[field])
        offset = (list(lines).index(line) - (len(lines) - 1) / 2) * step
        xs = np.array([report.configs[i].key[field] for i in members], dtype=float)
        xs = xs * 10.0 ** offset if log else xs + offset
        ys = [report.configs[i].loss["mean"] for i in members]
        ci = [_finite(report.configs[i].loss_ci) for i in members]
        numbers = ",".join(f"#{i + 1}" for i in members)
        ax.errorbar(xs, ys, yerr=ci, marker=style["marker"], color=style["color"],
                    ls=style["ls"], capsize=2, ms=5, lw=1.2, elinewidth=0.9,
                    label=_cut(f"{', '.join(line) or 'all'} ({numbers})"))
    _target_line(ax, report)
    if log:
        ax.set_xscale("log")
    ax.set_xticks(values, [display(v) for v in values])
    ax.minorticks_off()
    level = f"{1 - report.alpha:.0%}"
    _axes(ax, None, field_label(field), f"mean final {LOSS}")
    _title(fig, f"Final val loss vs {field} (bars: {level} t-interval over seeds"
                + ("; lines dodged sideways)" if len(lines) > 1 else ")"))
    _legend(fig, ax, _cut(", ".join(others), 2 * LEGEND_CHARS) or None)
    return fig


def lambdas_figure(report: Report, config: int) -> Figure | None:
    """One config's representative trial (final loss nearest the config's median): one
    panel per mixing weight, a line per layer. None (nothing written) if it logged none."""
    trial = _representative(report, config)
    steps, lambdas = _lambdas(report, trial)
    if lambdas is None:
        return None
    n_weights = lambdas.shape[2]
    cols = min(n_weights, 3)
    rows = -(-n_weights // cols)
    fig = Figure(figsize=(PAGE_IN if cols > 1 else COLUMN_IN, 2.3 * rows + 0.9),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    layers = ScalarMappable(Normalize(0, max(lambdas.shape[1] - 1, 1)), "viridis")
    for w, ax in enumerate(axes.flat):
        if w >= n_weights:
            ax.set_visible(False)
            continue
        for layer in range(lambdas.shape[1]):
            ax.plot(steps, lambdas[:, layer, w], color=layers.to_rgba(np.asarray(layer)), lw=1.2)
        _axes(ax, "residual x" if w == 0 else f"x0{w - 1}", "training step (optimizer steps)",
              "mixing weight (unitless)")
    bar = fig.colorbar(layers, ax=axes, shrink=0.9)
    bar.set_label("layer", fontsize=LABEL_PT)
    bar.ax.tick_params(labelsize=SMALL_PT)
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    trial_id = report.trials.info["trial_id"][trial].as_py()
    _title(fig, f"Block lambdas over training: #{config + 1} {label(report, config)} "
                f"(trial {trial_id})")
    return fig


def _members(report: Report, config: int) -> np.ndarray:
    """Trials to draw for a config: its completed ones, or all of them if none completed."""
    mine = report.groups.index == config
    done = mine & (report.trials.outcome == COMPLETED)
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


def _styles(n: int, markers: bool = False) -> list[dict[str, str]]:
    """n looks told apart by colour (ten), then line style, and marker: no two alike below
    a hundred (the marker steps on by one every ten colours)."""
    return [{"color": f"C{i % 10}", "ls": LINESTYLES[(i // 10) % len(LINESTYLES)],
             "marker": MARKERS[(i + i // 10) % len(MARKERS)] if markers else ""}
            for i in range(n)]


def _mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, min, max) of curves interpolated on a grid from 0 to the shortest end."""
    grid = np.linspace(0, min(x[-1] for x, _ in curves), GRID_POINTS)
    ys = np.array([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def _tokens(report: Report, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens seen, val loss) of a trial's points that logged tokens (imported logs may not)."""
    t = report.trials
    span = slice(t.offsets[trial], t.offsets[trial + 1])
    if "tokens_seen" not in report.table.column_names:
        return np.zeros(0), np.zeros(0)
    tokens = report.table["tokens_seen"].take(pa.array(t.rows[span])).to_numpy(
        zero_copy_only=False).astype(float)
    keep = np.isfinite(tokens)
    return tokens[keep], t.val_loss[span][keep]


def _with_n(report: Report, config: int, members: int) -> str:
    n = report.configs[config].loss["n"] or members  # replicates, if any
    return f"{short_label(report, config)} (n={n})"


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _cut(text: str, chars: int = LEGEND_CHARS) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def _target_line(ax: Axes, report: Report) -> None:
    if report.target is not None:
        ax.axhline(report.target, color="black", ls="--", lw=1, label=f"target {report.target:g}")


def _axes(ax: Axes, title: str | None, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title, fontsize=LABEL_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=SMALL_PT)
    ax.grid(alpha=0.3)


def _title(fig: Figure, text: str) -> None:
    """The figure's title, wrapped to its width (a long config label is never cut off)."""
    chars = int(fig.get_figwidth() * 72 / (0.62 * TITLE_PT))  # an average glyph is ~0.6 em
    fig.suptitle(textwrap.fill(text, chars), fontsize=TITLE_PT)


def _legend(fig: Figure, ax: Axes, title: str | None) -> None:
    """`ax`'s legend under the figure, across its width (never over the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    columns = 2 if fig.get_figwidth() >= PAGE_IN and len(handles) > 1 else 1
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=SMALL_PT,
               title=title, title_fontsize=SMALL_PT, frameon=False)


def _point_labels(ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str]) -> None:
    """Each text beside its point, at the first of a few offsets where it covers no text
    placed before it: close configs would otherwise print their numbers on one another.
    Positions are reckoned in points from the axes' size before layout (close enough)."""
    width, height = cast(Figure, ax.figure).get_size_inches() * 72  # ours: a Figure, no SubFigure
    box = ax.get_position()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    scale_x = box.width * width / ((x1 - x0) or 1.0)
    scale_y = box.height * height / ((y1 - y0) or 1.0)
    placed: list[tuple[float, float, float, float]] = []
    offsets = [(4, 3), (4, -11), (-4, 3), (-4, -11), (4, 11), (-4, 11), (4, -19), (-4, -19)]
    for (x, y), text in zip(points, texts):
        px, py = (x - x0) * scale_x, (y - y0) * scale_y
        size = 0.62 * SMALL_PT * len(text)
        boxes = []  # (offset, the text's box there), in order of preference
        for dx, dy in offsets:
            left = px + dx if dx > 0 else px + dx - size
            boxes.append(((dx, dy), (left, py + dy, left + size, py + dy + SMALL_PT)))
        (dx, dy), box_ = next(
            ((offset, b) for offset, b in boxes
             if not any(b[0] < p[2] and p[0] < b[2] and b[1] < p[3] and p[1] < b[3] for p in placed)),
            boxes[-1])  # none clear: the last
        placed.append(box_)
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx > 0 else "right", va="bottom", fontsize=SMALL_PT)


def _parallel_axis(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """One axis of the parallel coordinates: each value's height in [0, 1], and ticks.

    Numbers to scale (log10 if positive and spanning LOG_SPAN or more); anything else as
    levels evenly spaced in order of first appearance (the table's order)."""
    if _numeric(values) and all(np.isfinite(values)):
        raw = np.array(values, dtype=float)
        log = raw.min() > 0 and raw.max() / raw.min() >= LOG_SPAN
        where = np.log10(raw) if log else raw
        low, high = where.min(), where.max()
        y = (where - low) / (high - low) if high > low else np.full(len(raw), 0.5)
        distinct = sorted(set(values))
        text = (lambda v: display(v)) if all(isinstance(v, int) for v in values) else (
            lambda v: f"{v:.4g}")
        if len(distinct) <= 6:
            ticks = [(float(y[values.index(v)]), text(v)) for v in distinct]
        else:
            ticks = [(k / 4, text(10 ** (low + k / 4 * (high - low)) if log else
                                  low + k / 4 * (high - low))) for k in range(5)]
        return {"name": name + (" (log)" if log else ""), "y": y, "ticks": ticks}
    shown = [display(v) for v in values]
    levels = list(dict.fromkeys(shown))
    step = 1 / (len(levels) - 1) if len(levels) > 1 else 0.0
    y = np.array([levels.index(v) * step if len(levels) > 1 else 0.5 for v in shown])
    return {"name": name, "y": y,
            "ticks": [(i * step if len(levels) > 1 else 0.5, _cut(v, 14))
                      for i, v in enumerate(levels)]}


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
