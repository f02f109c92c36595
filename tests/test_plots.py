"""Plots read back from their matplotlib figures (reports of real Parquet curves written
here): every figure has a title that is not clipped, axes labelled with units, a legend or a
colour bar that tells configs apart, paper-sized text; Pareto markers differ per config,
error bars at one x are dodged, the parallel coordinates and the tokens/time panels show
what they claim; and a plot folder is refused unless --force, which replaces only plots."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from test_results_files import sweep_of_configs, write_trial
from test_results_identity import run

from ablate.results import build_report
from ablate.results.plots import (
    DODGE_SHARE,
    PAGE_IN,
    SMALL_PT,
    final_loss_figure,
    lambdas_figure,
    pareto_figure,
    plan_plots,
)


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig)
    fig.draw(fig.canvas.get_renderer())
    return fig


def inside(fig: Figure, artist) -> bool:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.x1 + 1 and box.y1 <= fig.bbox.y1 + 1


def legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def colorbar_labels(fig: Figure) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("s")
    sweep_of_configs(root)  # 2 extra_embeddings x 2 lambda_init x 3 seeds, lambdas logged
    return build_report([root], target=3.25, lambdas=True)


def test_every_figure_has_a_title_labelled_axes_with_units_and_a_key(report, tmp_path):
    plots = plan_plots(report, tmp_path)
    names = [p.path.stem for p in plots]
    assert names[:4] == ["loss_vs_time", "loss_vs_tokens_and_time", "pareto", "parallel_coordinates"]
    for plot in plots:
        fig = drawn(plot.figure())
        title = fig._suptitle
        assert title is not None and title.get_text(), plot.path
        assert inside(fig, title), plot.path  # never clipped
        for ax in fig.axes:
            if not ax.get_visible() or ax.get_label() == "<colorbar>":
                continue
            for axis_label in (ax.get_xlabel(), ax.get_ylabel()):
                assert "(" in axis_label and axis_label.endswith(")"), (plot.path, axis_label)
        key = legend_texts(fig) + colorbar_labels(fig)
        assert key, plot.path
        for legend in fig.legends:
            assert inside(fig, legend), plot.path
        # Paper-sized: at most both columns wide, no text under SMALL_PT.
        assert fig.get_figwidth() <= PAGE_IN
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
        assert min(sizes) >= SMALL_PT, plot.path
    texts = legend_texts(drawn(plots[0].figure()))
    assert [t.split()[0] for t in texts if t.startswith("#")] == ["#1", "#2", "#3", "#4"]
    assert "val loss (nats/token)" in plots[0].figure().axes[0].get_ylabel()


def test_tokens_and_time_are_two_panels_of_one_figure(report, tmp_path):
    plot = next(p for p in plan_plots(report, tmp_path) if p.path.stem == "loss_vs_tokens_and_time")
    by_tokens, by_time = plot.figure().axes
    assert by_tokens.get_xlabel() == "tokens seen (thousands)"  # 100 steps x 512 tokens
    assert by_time.get_xlabel() == "training time (s)"
    assert by_tokens.get_title() == "Per token" and by_time.get_title() == "Per second"
    assert len(by_tokens.get_lines()) == len(by_time.get_lines()) == 4 + 1  # configs + target
    first = by_tokens.get_lines()[0].get_xdata()
    assert first[0] == 0 and first[-1] == pytest.approx(100 * 512 / 1e3)


def test_parallel_coordinates_axes_levels_and_colours(report, tmp_path):
    plot = next(p for p in plan_plots(report, tmp_path) if p.path.stem == "parallel_coordinates")
    fig = plot.figure()
    ax = fig.axes[0]
    names = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert names == ["extra_embeddings", "lambda_init", "muon_lr", "mean final val loss (nats/token)"]
    assert colorbar_labels(fig) == ["mean final val loss (nats/token)"]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 4]
    assert len(lines) == 4  # one per config
    by_config = {}
    for line in lines:
        ys = line.get_ydata()
        by_config[(ys[0], ys[1], ys[2])] = (ys[3], line.get_color())
    # numeric extra_embeddings 0/2 and muon_lr 0.01/0.03 to scale, categorical lambda_init as
    # two evenly spaced levels; the loss axis ordered as the configs' mean losses
    assert set(by_config) == {(0, 0, 0), (0, 1, 0), (1, 0, 1), (1, 1, 1)}
    losses = {(k, init): report.configs[i].loss["mean"]
              for i, (k, init) in enumerate((c.key["extra_embeddings"], c.key["lambda_init"])
                                            for c in report.configs)}
    assert sorted(by_config.values(), key=lambda v: v[0])[0][0] == 0.0
    lowest = min(losses, key=losses.get)
    assert by_config[(lowest[0] / 2, ["one", "zero"].index(lowest[1]), lowest[0] / 2)][0] == 0.0


def test_pareto_markers_tell_every_config_apart(tmp_path):
    for k, seed in itertools.product(range(12), range(2)):  # more configs than colours
        write_trial(tmp_path, f"k{k}-{seed}", [6.0, 3.3 - 0.01 * k + 0.001 * seed],
                    [0.0, 20.0 + k + seed], extra_embeddings=k % 6, num_iterations=100 + 100 * (k // 6),
                    seed=seed)
    report = build_report([tmp_path])
    fig = pareto_figure(report)
    looks = [(tuple(np.round(c.lines[0].get_color() if not isinstance(c.lines[0].get_color(), str)
                             else [ord(ch) for ch in c.lines[0].get_color()], 3)),
              c.lines[0].get_marker()) for c in fig.axes[0].containers]
    assert len(looks) == 12 and len(set(looks)) == 12
    pareto = [c.pareto for c in report.configs]
    fills = [c.lines[0].get_markerfacecolor() for c in fig.axes[0].containers]
    assert all((fill != "white") == on for fill, on in zip(fills, pareto)) and any(pareto)
    assert sum(t.startswith("#") for t in legend_texts(fig)) == 12


def test_error_bars_at_one_x_are_dodged_by_a_capped_offset(tmp_path):
    for k, init, seed in itertools.product((0, 1, 2), ("zero", "one", "both"), range(2)):
        write_trial(tmp_path, f"{k}{init}{seed}", [6.0, 3.3 - 0.01 * k + 0.002 * seed],
                    extra_embeddings=k, lambda_init=init, seed=seed)
    report = build_report([tmp_path])
    fig = final_loss_figure(report, "extra_embeddings")
    xs = np.array([c.lines[0].get_xdata() for c in fig.axes[0].containers])  # line x point
    assert xs.shape == (3, 3)
    for column, true_x in zip(xs.T, (0, 1, 2)):
        assert len(set(column)) == 3  # three bars at one x, side by side
        assert np.all(np.abs(column - true_x) <= DODGE_SHARE * 1 / 2 + 1e-12)  # gap 1
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["0", "1", "2"]  # the true values, not the dodged ones
    assert fig.axes[0].get_xlabel() == "extra_embeddings (config value)"


def test_a_long_config_label_is_wrapped_not_clipped(tmp_path):
    for variant in ("a", "b"):
        long = {f"option_with_a_long_name_{i}": f"value-{i}-{variant}" + "x" * 20 for i in range(4)}
        write_trial(tmp_path, variant, [6.0, 3.0, 2.9], layers=2, seed=0, params=long)
    report = build_report([tmp_path], lambdas=True)
    assert len(report.fields) == 4
    fig = drawn(lambdas_figure(report, 0))
    title = fig._suptitle
    assert "\n" in title.get_text() and inside(fig, title)
    assert "value-3-a" + "x" * 20 in title.get_text().replace("\n", " ")


# --- the plot folder ------------------------------------------------------------------------

def test_an_existing_plot_folder_is_refused_unless_force(tmp_path, capsys):
    sweep_of_configs(tmp_path / "s")
    plots = tmp_path / "plots"
    plots.mkdir()  # an empty folder is taken
    argv = ["report", str(tmp_path / "s"), "--plot", str(plots), "--lambdas", "1", "--dpi", "30"]
    code, _, err = run(argv, capsys)
    assert code == 0 and "wrote 7 plots" in err
    (plots / "notes.txt").write_text("mine")
    before = {p.name: p.stat().st_mtime_ns for p in plots.iterdir()}
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err == (f"ablate: --plot {plots}: already exists; pass --force to replace the plots "
                   "in it (other files there are left alone)\n")
    assert {p.name: p.stat().st_mtime_ns for p in plots.iterdir()} == before
    # --force replaces the plots it draws, and only those
    outside = tmp_path / "elsewhere.png"
    outside.write_text("not a plot")
    (plots / "pareto.png").unlink()
    (plots / "pareto.png").symlink_to(outside)  # replaced as a file, never written through
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0 and "wrote 7 plots" in err
    after = {p.name: p.stat().st_mtime_ns for p in plots.iterdir()}
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in after if name.endswith(".png"))
    assert (plots / "notes.txt").read_text() == "mine" and after["notes.txt"] == before["notes.txt"]
    assert outside.read_text() == "not a plot" and not (plots / "pareto.png").is_symlink()
    assert (plots / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # a folder where a plot goes is not a plot file: refused before anything is written
    (plots / "pareto.png").unlink()
    (plots / "pareto.png").mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in plots.iterdir()}
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{plots / 'pareto.png'}: not a file" in err
    assert {p.name: p.stat().st_mtime_ns for p in plots.iterdir()} == before
    assert not [name for name in os.listdir(plots) if name.endswith(".tmp")]
