"""Reports that cannot be fooled: configs from the data, replicates by distinct seed,
comparison with a baseline (against scipy), the sweep's metadata, schema 1 files, and plots
that never overwrite."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from ablate.cli import main
from ablate.results import build_report, warning_lines, write_report
from ablate.results.curves import (
    META_KEY,
    SCHEMA,
    SCHEMA_V1_EXTRA,
    VERSION_KEY,
    curve_path,
    trial_meta,
    write_curve,
)
from ablate.results.errors import InputError
from ablate.results.load import load_curves
from ablate.results.plots import _time_bar
from ablate.results.report import analyse

TOL = dict(rtol=1e-12, atol=1e-12)
# What the trainer puts in `params` besides the fields a test varies (a subset, same shape).
TRAINER = {"preset": "tiny", "data": "data/builtin", "num_iterations": 100, "batch_size": 8,
           "val_every": 25, "lr_head": 0.008, "lr_muon": 0.05, "adam_betas": [0.8, 0.95],
           "device": "cpu", "compile": None, "checkpoint_every": 0, "workers": 1,
           "extra_embeddings": 0, "lambda_init": "zero", "token_lambdas": False}


def trial(storage: Path, trial_id: str, final: float, time_s: float = 20.0, *,
          sweep: str = "demo", seed: int | None = 0, status: str = "completed",
          meta: dict[str, Any] | None = None, **fields: Any) -> Path:
    """A three-point curve written the way the trainer writes it: row dicts carrying the
    trainer's own keys too, `params` with every field, labels included."""
    params = {**TRAINER, **fields, "seed": seed, "sweep": sweep, "trial_id": trial_id,
              "out": str(curve_path(storage, sweep, trial_id))}
    rows = [{**params, "workers": params["workers"], "step": step,
             "train_time_ms": 1000.0 * t, "val_loss": loss, "train_loss": None,
             "tokens_seen": step * 512, "lr": 1.0, "peak_mem_mb": 1.0, "lambdas": None,
             "status": status if step == 100 else "running", "params": json.dumps(params)}
            for step, t, loss in ((0, 0.0, 6.0), (50, time_s / 2, (6.0 + final) / 2),
                                  (100, time_s, final))]
    return write_curve(curve_path(storage, sweep, trial_id), rows, meta)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- config identity -----------------------------------------------------------------

def test_a_field_outside_any_column_list_makes_two_configs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the whole row on one line
    trial(tmp_path, "a", 2.2, lr_head=0.008, seed=0)
    trial(tmp_path, "b", 6.3, lr_head=0.0, seed=0)
    report = build_report([tmp_path])
    assert report.fields == ("lr_head",)
    assert [c.key for c in report.configs] == [{"lr_head": 0.0}, {"lr_head": 0.008}]
    assert [c.loss["n"] for c in report.configs] == [1, 1]
    assert report.fixed["preset"] == "tiny" and "seed" not in report.fixed

    code, out, err = run(["report", str(tmp_path), "--target", "3"], capsys)
    assert code == 0 and err == ""
    assert "2 trials in 2 configs (preset=tiny" in out
    assert "lr_head" in out and "± " not in out.split("Best val loss")[0]  # one seed each
    row = next(line for line in out.splitlines() if "0.008" in line)
    assert row.count("n/a") == 4  # p, upper bound, decision, P(nd)


def test_an_axis_nobody_declared_splits_configs(tmp_path: Path) -> None:
    for seed in range(2):
        trial(tmp_path, f"a{seed}", 3.0 + seed / 100, seed=seed, new_option="on")
        trial(tmp_path, f"b{seed}", 3.5 + seed / 100, seed=seed, new_option="off")
    report = build_report([tmp_path])
    assert report.fields == ("new_option",)
    assert [(c.key["new_option"], c.loss["n"]) for c in report.configs] == [("off", 2), ("on", 2)]


def test_labels_do_not_split_configs_but_workers_do(tmp_path: Path) -> None:
    trial(tmp_path, "a", 3.0, seed=0, sweep="one", data="/x", checkpoint_every=0,
          save_weights=True)
    trial(tmp_path, "b", 3.1, seed=1, sweep="two", data="/elsewhere", checkpoint_every=25,
          save_weights=None)
    (config,) = build_report([tmp_path]).configs
    assert config.loss["n"] == 2
    trial(tmp_path, "c", 3.2, seed=2, workers=2)
    report = build_report([tmp_path])
    assert report.fields == ("workers",) and len(report.configs) == 2


def test_by_pools_configs_and_keeps_their_seeds_apart(tmp_path: Path) -> None:
    for seed in range(2):
        trial(tmp_path, f"z{seed}", 3.0, seed=seed, lambda_init="zero")
        trial(tmp_path, f"o{seed}", 3.2, seed=seed, lambda_init="one")
    (pooled,) = build_report([tmp_path], by=["preset"]).configs
    assert pooled.loss["n"] == 4 and pooled.loss["mean"] == pytest.approx(3.1)
    assert build_report([tmp_path], by=["preset"]).duplicates == []
    with pytest.raises(InputError, match="--by: unknown field nosuch"):
        build_report([tmp_path], by=["nosuch"])
    with pytest.raises(InputError, match="lambda_init is not one of the fields configs are "
                                         "pooled by [(]preset[)]"):
        build_report([tmp_path], by=["preset"], baseline="lambda_init=zero")


# --- replicates ------------------------------------------------------------------------

def test_four_copies_of_one_seed_are_one_replicate_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [trial(tmp_path, "t0", 3.0 + i / 1000, sweep=f"copy{i}", seed=0) for i in range(4)]
    report = build_report([tmp_path], target=3.5)
    (config,) = report.configs
    assert config.loss["n"] == 1 and config.counts["completed"] == 4
    assert config.loss["mean"] == pytest.approx(3.0015, abs=1e-12)
    assert np.isnan(config.p_nondominated) and np.isnan(config.ttest["p"])
    (dup,) = report.duplicates
    assert dup["seed"] == 0 and dup["files"] == [str(p) for p in paths]

    code, out, err = run(["report", str(tmp_path), "--target", "3.5"], capsys)
    assert code == 0
    (warning,) = err.strip().splitlines()
    assert warning.startswith("ablate: warning: ") and all(str(p) in warning for p in paths)
    assert "seed 0 in 4 trials" in warning and "one replicate" in warning
    assert "1 (4 runs)" in out and "n/a" in out and "yes" not in out

    code, out, _ = run(["report", str(tmp_path), "--format", "json"], capsys)
    data = json.loads(out)
    assert data["duplicates"][0]["files"] == [str(p) for p in paths]
    assert data["warnings"] == [warning.removeprefix("ablate: warning: ")]
    assert data["configs"][0]["p_nondominated"] is None and data["configs"][0]["loss"]["n"] == 1


def test_a_two_seed_sweep_run_twice_has_n_2(tmp_path: Path) -> None:
    for copy in ("first", "second"):
        for seed in range(2):
            trial(tmp_path, f"s{seed}", 3.0 + seed / 10, sweep=copy, seed=seed)
    report = build_report([tmp_path])
    (config,) = report.configs
    assert config.loss["n"] == 2 and len(report.duplicates) == 2
    assert config.loss["std"] == pytest.approx(np.std([3.0, 3.1], ddof=1), abs=1e-12)


def test_record_logs_without_a_seed_are_each_a_replicate(tmp_path: Path) -> None:
    for name, loss in (("a", 3.27), ("b", 3.28), ("c", 3.29)):
        (tmp_path / f"{name}.txt").write_text(
            f"step:0/1770 val_loss:10.8 train_time:0ms step_avg:0.00ms\n"
            f"step:1770/1770 val_loss:{loss} train_time:180000ms step_avg:101.69ms\n")
    code = main(["import-logs", *(str(tmp_path / f"{n}.txt") for n in "abc"),
                 "--out", str(tmp_path / "s")])
    assert code == 0
    report = build_report([tmp_path / "s"], target=3.3)
    (config,) = report.configs
    assert config.loss["n"] == 3 and report.duplicates == []
    ref = sps.ttest_1samp([3.27, 3.28, 3.29], 3.3, alternative="less")
    assert config.ttest["p"] == pytest.approx(ref.pvalue, abs=1e-12)


# --- baseline --------------------------------------------------------------------------

def generated(storage: Path, rng: np.random.Generator) -> dict[tuple[int, int], tuple[float, float]]:
    """k = 0..3 with seeds 0..n-1 (k = 2 runs other seeds): (k, seed) -> (loss, time)."""
    out = {}
    for k, n in ((0, 5), (1, 5), (2, 4), (3, 2)):
        seeds = range(10, 10 + n) if k == 2 else range(n)
        for seed in seeds:
            loss = 3.3 - 0.02 * k + rng.normal(0, 0.01 * (k + 1))
            time_s = 100 + 3 * k + rng.normal(0, 1.5)
            trial(storage, f"k{k}-s{seed}", loss, time_s, seed=seed, extra_embeddings=k)
            out[(k, seed)] = (loss, time_s)
    return out


@pytest.mark.parametrize("seed, alpha", [(0, 0.05), (1, 0.01), (2, 0.2)])
def test_baseline_comparison_equals_scipy(tmp_path: Path, seed: int, alpha: float) -> None:
    runs = generated(tmp_path, np.random.default_rng(seed))
    report = build_report([tmp_path], baseline="extra_embeddings=0", alpha=alpha)
    assert report.baseline == 0 and report.configs[0].vs_baseline is None

    def values(k: int, side: int) -> tuple[list[int], np.ndarray]:
        seeds = sorted(s for kk, s in runs if kk == k)
        return seeds, np.array([runs[(k, s)][side] for s in seeds])

    for k, config in enumerate(report.configs[1:], 1):
        vs = config.vs_baseline
        assert vs is not None and vs["baseline"] == 1
        for name, side in (("loss", 0), ("time_s", 1)):
            seeds, x = values(k, side)
            base_seeds, y = values(0, side)
            ref = sps.ttest_ind(x, y, equal_var=False)
            ci = ref.confidence_interval(1 - alpha)
            got = vs[name]
            np.testing.assert_allclose(
                [got["delta"], got["welch"]["t"], got["welch"]["df"], got["welch"]["p"],
                 got["welch"]["low"], got["welch"]["high"]],
                [np.mean(x) - np.mean(y), ref.statistic, ref.df, ref.pvalue, ci.low, ci.high],
                **TOL)
            if set(seeds) <= set(base_seeds) and seeds != base_seeds:  # k = 3: 2 of 5 seeds
                assert got["paired"] is None
            elif seeds == base_seeds:
                ref = sps.ttest_rel(x, y)
                ci = ref.confidence_interval(1 - alpha)
                paired = got["paired"]
                np.testing.assert_allclose(
                    [paired["t"], paired["df"], paired["p"], paired["low"], paired["high"]],
                    [ref.statistic, ref.df, ref.pvalue, ci.low, ci.high], **TOL)
                assert vs["pairs"] == len(seeds)
            else:  # k = 2: other seeds
                assert got["paired"] is None and vs["pairs"] is None


def test_baseline_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = generated(tmp_path, np.random.default_rng(3))
    argv = ["report", str(tmp_path), "--baseline", "extra_embeddings=0"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and "Against baseline #1 (extra_embeddings=0)" in out
    assert out.count("paired") >= 2 and "Welch" in out and "Δ loss" in out

    code, out, _ = run([*argv, "--format", "markdown"], capsys)
    assert code == 0 and "| # | extra_embeddings | test | n | Δ loss | 95% CI | p |" in out
    assert "| 2 | 1 | paired | 5 pairs |" in out and "| 3 | 2 | Welch | 4 vs 5 |" in out

    code, out, _ = run([*argv, "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    x = np.array([runs[(1, s)][0] for s in range(5)])
    y = np.array([runs[(0, s)][0] for s in range(5)])
    assert rows[0]["baseline"] == "" and rows[1]["baseline"] == "1"
    assert float(rows[1]["loss_paired_p"]) == pytest.approx(sps.ttest_rel(x, y).pvalue, abs=1e-12)
    assert float(rows[1]["loss_welch_p"]) == pytest.approx(
        sps.ttest_ind(x, y, equal_var=False).pvalue, abs=1e-12)
    assert rows[2]["loss_paired_p"] == ""

    code, out, _ = run([*argv, "--format", "json"], capsys)
    data = json.loads(out)
    assert data["baseline"] == {"config": 1, "key": {"extra_embeddings": 0}}
    assert data["configs"][1]["vs_baseline"]["loss"]["paired"]["df"] == 4.0


@pytest.mark.parametrize("baseline, needles", [
    ("lr_hed=0.008", ["--baseline", "unknown field lr_hed"]),
    ("extra_embeddings=7", ["--baseline", "no config has extra_embeddings=7"]),
    ("lambda_init=zero", ["--baseline", "matches 4 configs", "add fields"]),
    ("seed=0", ["--baseline", "seed is a replicate field"]),
    ("out=/x.parquet", ["--baseline", "out is a placement field"]),
    ("extra_embeddings", ["--baseline", "KEY=VALUE"]),
])
def test_bad_baseline_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               baseline: str, needles: list[str]) -> None:
    generated(tmp_path, np.random.default_rng(0))
    plots = tmp_path / "plots"
    code, out, err = run(["report", str(tmp_path), "--baseline", baseline, "--plot", str(plots)],
                         capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("ablate: ")
    assert all(n in lines[0] for n in needles), lines[0]
    assert not plots.exists()


def test_baseline_values_match_as_typed(tmp_path: Path) -> None:
    trial(tmp_path, "a", 3.0, lr_head=0.0, token_lambdas=True)
    trial(tmp_path, "b", 3.1, lr_head=0.008, token_lambdas=False)
    assert build_report([tmp_path], baseline="lr_head=0").baseline == 0
    assert build_report([tmp_path], baseline="lr_head=8e-3").baseline == 1
    assert build_report([tmp_path], baseline="token_lambdas=true").baseline == 0
    assert build_report([tmp_path], baseline={"token_lambdas": False}).baseline == 1


# --- the sweep's metadata and the curve schema ------------------------------------------

SWEEP = {"sweep": {"axes": ["lambda_init", "extra_embeddings"], "target": 3.05}}


def test_sweep_axes_and_target_are_stored_and_become_the_defaults(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # headers whole, on one line
    for k in (0, 1):
        for init in ("zero", "one"):
            for seed in range(2):
                # lr_muon follows k here: the table shows the axes, not fields they determine
                trial(tmp_path, f"{k}{init}{seed}", 3.1 - 0.1 * k + 0.01 * seed, seed=seed,
                      extra_embeddings=k, lambda_init=init, lr_muon=0.05 * (k + 1), meta=SWEEP)
    path = curve_path(tmp_path, "demo", "0zero0")
    assert trial_meta(path)["sweep"] == SWEEP["sweep"]
    report = build_report([tmp_path])
    assert report.fields == ("lambda_init", "extra_embeddings") and report.target == 3.05
    assert report.configs[0].ttest is not None
    # Without axes every varying field shows, in the order the trainer lists them.
    assert build_report([tmp_path], target=2.0, axes=[]).fields == (
        "lr_muon", "extra_embeddings", "lambda_init")
    code, out, _ = run(["report", str(tmp_path)], capsys)
    assert code == 0 and "< 3.05" in out and "lr_muon" not in out.split("Best")[0]


def test_a_recorded_baseline_is_used_and_a_stale_one_only_warns(tmp_path: Path) -> None:
    meta = {"sweep": {"axes": ["extra_embeddings"], "target": None,
                      "baseline": {"extra_embeddings": 0}}}
    for k in (0, 1):
        trial(tmp_path, f"k{k}", 3.0 - 0.1 * k, extra_embeddings=k, meta=meta)
    assert build_report([tmp_path]).baseline == 0
    stale = {"sweep": {**meta["sweep"], "baseline": {"extra_embeddings": 5}}}
    for k in (0, 1):
        trial(tmp_path / "other", f"k{k}", 3.0, extra_embeddings=k, meta=stale)
    report = build_report([tmp_path / "other"])
    assert report.baseline is None and "no config has extra_embeddings=5" in report.warnings[0]


def test_write_curve_takes_the_trainers_rows_and_checks_the_sweep_meta(tmp_path: Path) -> None:
    path = trial(tmp_path, "t", 3.0, extra_embeddings=2, meta=SWEEP)
    table = pq.read_table(path)
    assert table.column_names == SCHEMA.names and table.schema.metadata[VERSION_KEY] == b"2"
    assert json.loads(table["params"][0].as_py())["extra_embeddings"] == 2
    for bad, needle in (({"axes": "k"}, "sweep.axes"), ({"target": "x"}, "sweep.target"),
                        ({"axis": []}, "sweep.axis"), ({"baseline": []}, "sweep.baseline")):
        with pytest.raises(ValueError, match=needle):
            trial(tmp_path, "u", 3.0, meta={"sweep": bad})
    assert not curve_path(tmp_path, "demo", "u").exists()


def test_malformed_sweep_meta_in_a_file_is_a_warning(tmp_path: Path) -> None:
    path = trial(tmp_path, "t", 3.0)
    table = pq.read_table(path)
    meta = {**table.schema.metadata, META_KEY: json.dumps({"sweep": {"axes": 3}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    report = build_report([tmp_path])
    assert len(report.configs) == 1 and "sweep.axes" in report.warnings[0]
    assert str(path) in report.warnings[0]


def schema1_file(path: Path, trials: Sequence[tuple[str, int, str, float]]) -> None:
    """A schema-1 file: the study's axes as columns, `params` without them."""
    v1 = pa.schema([*SCHEMA, *SCHEMA_V1_EXTRA])
    rows = [{"sweep": "old", "trial_id": tid, "seed": seed, "num_iterations": 10,
             "step": step, "train_time_ms": 100.0 * step, "val_loss": loss + (10 - step),
             "status": "completed" if step == 10 else "running",
             "params": json.dumps({"lr": 0.1}), "preset": "tiny", "extra_embeddings": 1,
             "lambda_init": init, "token_lambdas": False, "workers": 1}
            for tid, seed, init, loss in trials for step in (0, 10)]
    table = pa.Table.from_pylist(rows, schema=v1)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"1"}), path)


def test_schema_1_files_are_still_read(tmp_path: Path) -> None:
    schema1_file(tmp_path / "old" / "curves" / "part.parquet",
                 [("a", 0, "zero", 3.0), ("b", 1, "zero", 3.2), ("c", 0, "one", 3.5)])
    trial(tmp_path, "new", 3.1, seed=2, extra_embeddings=1)
    loaded = load_curves([tmp_path])
    assert loaded.problems == [] and "preset" not in loaded.table.column_names
    report = analyse(loaded)
    old = [c for c in report.configs if c.config.get("lr") == 0.1]
    assert sorted((c.config["lambda_init"], c.loss["n"]) for c in old) == [("one", 1), ("zero", 2)]
    assert all(c.config["extra_embeddings"] == 1 and c.config["preset"] == "tiny" for c in old)


# --- the public API ----------------------------------------------------------------------

def test_build_report_and_write_report_for_programs(tmp_path: Path) -> None:
    generated(tmp_path, np.random.default_rng(4))
    report = build_report([tmp_path], target=3.3, axes=["extra_embeddings"],
                          baseline={"extra_embeddings": 0}, alpha=0.1)
    assert warning_lines(report) == []
    for fmt in ("table", "markdown", "csv"):
        stream = io.StringIO()
        write_report(report, stream, fmt, width=120)
        assert "extra_embeddings" in stream.getvalue()
    stream = io.StringIO()
    write_report(report, stream, "json")
    data = json.loads(stream.getvalue())
    assert data["alpha"] == 0.1 and data["baseline"]["config"] == 1 and data["axes"] == [
        "extra_embeddings"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no readable curve files"):
        build_report([tmp_path / "empty"])


# --- plots ---------------------------------------------------------------------------------

def test_plots_refuse_to_overwrite_before_writing_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generated(tmp_path / "s", np.random.default_rng(5))
    plots = tmp_path / "plots"
    argv = ["report", str(tmp_path / "s"), "--plot", str(plots), "--plot-format", "svg",
            "--dpi", "80", "--lambdas", "2"]
    code, out, err = run(argv, capsys)
    assert code == 0 and "wrote 5 plots" in err  # no lambdas logged: no lambda plot
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["final_loss_vs_extra_embeddings.svg", "loss_vs_time.svg",
                     "loss_vs_tokens_and_time.svg", "parallel_coordinates.svg", "pareto.svg"]
    assert (plots / "pareto.svg").read_text().lstrip().startswith("<?xml")
    before = {p: p.stat().st_mtime_ns for p in plots.iterdir()}
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and "already exists" in err and str(plots) in err
    assert {p: p.stat().st_mtime_ns for p in plots.iterdir()} == before
    code, _, err = run([*argv[:-1], "9", "--force"], capsys)
    assert code == 2 and "--lambdas: no config #9" in err
    code, _, err = run(["report", str(tmp_path / "s"), "--plot", str(plots), "--plot-format",
                        "pdf", "--force"], capsys)
    assert code == 0 and (plots / "pareto.pdf").read_bytes()[:4] == b"%PDF"


def test_time_intervals_stop_at_zero() -> None:
    assert _time_bar(1.0, 3.0) == (1.0, 3.0)
    assert _time_bar(10.0, 3.0) == (3.0, 3.0)
    assert _time_bar(5.0, float("nan")) == (0.0, 0.0)


def test_the_sweep_drivers_call_gives_one_row_per_grid_point(tmp_path: Path) -> None:
    """As `ablate sweep` ends: build_report on the sweep folder with the spec's axes."""
    meta = {"sweep": {"axes": ["lr_head"], "target": 3.2}}
    for lr in (0.0, 0.004, 0.008):
        for seed in range(2):
            trial(tmp_path / "runs", f"lr{lr}-s{seed}", 3.0 + lr, seed=seed, lr_head=lr,
                  meta=meta)
    report = build_report([tmp_path / "runs" / "demo"], target=3.2, axes=["lr_head"])
    assert [(c.key, c.loss["n"]) for c in report.configs] == [
        ({"lr_head": 0.0}, 2), ({"lr_head": 0.004}, 2), ({"lr_head": 0.008}, 2)]
    assert all(c.ttest is not None and c.ttest["reject"] for c in report.configs)
