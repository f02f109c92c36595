"""results on real curve files in tmp_path: loading, reports, log import/export, plots, CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from ablate.cli import main
from ablate.core.errors import AblateError
from ablate.results.cli import add_commands
from ablate.results.curves import VERSION_KEY, CurveError, curve_path, read_curve, to_table, write_curve
from ablate.results.errors import InputError
from ablate.results.load import load_curves
from ablate.results.logs import import_logs, parse_log, to_record_log
from ablate.results.plots import write_plots
from ablate.results.report import analyse

ROOT = Path(__file__).resolve().parents[1]


def write_trial(storage: Path, trial_id: str, losses: Sequence[float],
                times_s: Sequence[float] | None = None, *, sweep: str = "demo",
                status: str = "completed", layers: int = 0, params: dict[str, Any] | None = None,
                **config: Any) -> Path:
    """A curve file with one row per (time, loss) point; config columns default to a tiny
    baseline. The last row gets `status`, the others "running"."""
    times_s = times_s if times_s is not None else [10.0 * i for i in range(len(losses))]
    config = {"preset": "tiny", "extra_embeddings": 0, "num_iterations": 100,
              "lambda_init": "zero", "token_lambdas": False, "seed": 0, "workers": 1, **config}
    last = len(losses) - 1
    steps = np.linspace(0, config["num_iterations"], len(losses)).astype(int)
    k = config["extra_embeddings"]
    rows = [{**config, "sweep": sweep, "trial_id": trial_id, "step": int(steps[i]),
             "train_time_ms": 1000.0 * t, "val_loss": loss,
             "train_loss": None if i == 0 else loss + 0.1, "tokens_seen": int(steps[i]) * 512,
             "lr": 1.0, "peak_mem_mb": 10.0,
             "lambdas": [[1.0 - 0.01 * i * layer] + [0.02 * i * (j + 1) for j in range(k + 1)]
                         for layer in range(layers)] if layers else None,
             "status": status if i == last else "running",
             "params": json.dumps({**config, **(params or {})})}
            for i, (t, loss) in enumerate(zip(times_s, losses))]
    return write_curve(curve_path(storage, sweep, trial_id), rows)


def sweep_of_configs(storage: Path) -> dict[tuple[int, str], list[float]]:
    """2 extra_embeddings x 2 lambda_init x 3 seeds; returns the final losses per config."""
    finals: dict[tuple[int, str], list[float]] = {}
    rng = np.random.default_rng(0)
    for k in (0, 2):
        for init in ("zero", "one"):
            for seed in range(3):
                final = 3.3 - 0.05 * k + (0.04 if init == "one" else 0) + rng.normal(0, 0.01)
                losses = [10.0, 5.0, 4.0, 3.6, final]
                times = [0.0, 5.0, 10.0, 15.0, 20.0 + 2 * k + seed]
                write_trial(storage, f"k{k}-{init}-{seed}", losses, times, extra_embeddings=k,
                            lambda_init=init, seed=seed, layers=3,
                            params={"muon_lr": 0.01 * (k + 1)})
                finals.setdefault((k, init), []).append(final)
    return finals


# --- loading -------------------------------------------------------------------------

def test_bad_files_are_reported_by_path_and_the_rest_analysed(tmp_path: Path) -> None:
    write_trial(tmp_path, "good-a", [5.0, 3.0])
    write_trial(tmp_path, "good-b", [5.0, 3.2], seed=1)
    curves = tmp_path / "demo" / "curves"
    corrupt = curves / "corrupt.parquet"
    corrupt.write_bytes(np.random.default_rng(0).bytes(500))
    foreign = curves / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    future = curves / "future.parquet"
    table = to_table([{"sweep": "demo", "trial_id": "future", "step": 0}])
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"99"}), future)
    wordy = curves / "wordy.parquet"  # a schema version that is not a number
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"two"}), wordy)
    timeless = write_trial(tmp_path, "timeless", [5.0, 3.1], [0.0, float("inf")], seed=2)
    nulls = write_trial(tmp_path, "nulls", [5.0, 3.1], seed=3)
    t = pq.read_table(nulls)
    i = t.schema.get_field_index("train_time_ms")
    pq.write_table(t.set_column(i, t.schema.field(i), pa.array([None, 1.0], pa.float64())), nulls)

    loaded = load_curves([tmp_path])
    assert {p.path for p in loaded.problems} == {corrupt, foreign, future, wordy, timeless, nulls}
    assert "not a number" in next(str(p) for p in loaded.problems if p.path == wordy)
    assert "not finite" in next(str(p) for p in loaded.problems if p.path == timeless)
    assert "null" in next(str(p) for p in loaded.problems if p.path == nulls)
    for problem in loaded.problems:
        assert str(problem.path) in str(problem) and "\n" not in str(problem)
    assert "newer" in next(str(p) for p in loaded.problems if p.path == future)
    assert "no schema version" in next(str(p) for p in loaded.problems if p.path == foreign)
    assert sorted(set(loaded.table["trial_id"].to_pylist())) == ["good-a", "good-b"]
    report = analyse(loaded.table)
    assert report.configs[0].counts["completed"] == 2


def test_a_bad_file_named_directly_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CurveError, match=str(bad)):
        load_curves([bad])
    with pytest.raises(InputError, match="no such file"):
        load_curves([tmp_path / "missing"])


def test_same_trial_in_two_storages_is_loaded_once(tmp_path: Path) -> None:
    write_trial(tmp_path / "a", "t1", [5.0, 3.0])
    write_trial(tmp_path / "b", "t1", [5.0, 3.0])
    loaded = load_curves([tmp_path / "a", tmp_path / "b", tmp_path / "a"])
    assert loaded.table.num_rows == 2
    assert len(loaded.problems) == 1 and "already loaded" in str(loaded.problems[0])


def test_a_curve_file_path_and_a_curves_folder_both_load(tmp_path: Path) -> None:
    path = write_trial(tmp_path, "t1", [5.0, 3.0])
    write_trial(tmp_path, "t2", [5.0, 3.0], seed=1)
    assert load_curves([path]).table.num_rows == 2
    assert load_curves([path.parent]).table.num_rows == 4


# --- the report ----------------------------------------------------------------------

def test_report_groups_seeds_and_matches_scipy(tmp_path: Path) -> None:
    finals = sweep_of_configs(tmp_path)
    report = analyse(load_curves([tmp_path]).table, target=3.25, alpha=0.05)
    assert len(report.configs) == 4
    for c in report.configs:
        x = np.array(finals[(c.key["extra_embeddings"], c.key["lambda_init"])])
        ref = sps.ttest_1samp(x, 3.25, alternative="less")
        assert c.loss["n"] == 3
        assert c.loss["mean"] == pytest.approx(np.mean(x), abs=1e-12)
        assert c.loss["std"] == pytest.approx(np.std(x, ddof=1), abs=1e-12)
        assert c.ttest is not None and c.ttest["p"] == pytest.approx(ref.pvalue, abs=1e-12)
        assert c.to_target is not None and c.to_target["of"] == 3
    best = min(report.configs, key=lambda c: c.loss["mean"])
    assert best.key["extra_embeddings"] == 2 and best.key["lambda_init"] == "zero"
    assert best.pareto and best.ttest is not None and best.ttest["reject"]


def test_failed_and_diverged_trials_are_counted_apart(tmp_path: Path) -> None:
    write_trial(tmp_path, "ok-0", [5.0, 3.0], seed=0)
    write_trial(tmp_path, "ok-1", [5.0, 3.2], seed=1)
    write_trial(tmp_path, "nan", [5.0, float("nan")], seed=2, status="diverged")
    write_trial(tmp_path, "bad", [5.0, 1.0], seed=3, status="failed")
    write_trial(tmp_path, "live", [5.0, 0.5], seed=4, status="running")
    write_trial(tmp_path, "inf", [5.0, float("inf")], seed=5)  # "completed" but not finite
    (c,) = analyse(load_curves([tmp_path]).table).configs
    assert c.counts == {"completed": 2, "running": 1, "diverged": 2, "failed": 1}
    assert c.loss["n"] == 2 and c.loss["mean"] == pytest.approx(3.1)


def test_final_row_is_the_max_step_whatever_the_row_order(tmp_path: Path) -> None:
    rows = [{"sweep": "s", "trial_id": "t", "step": s, "train_time_ms": 10.0 * s,
             "val_loss": 10.0 - s, "status": "completed" if s == 4 else "running",
             "params": "{}"} for s in (4, 0, 2, 1, 3)]
    write_curve(curve_path(tmp_path, "s", "t"), rows)
    report = analyse(load_curves([tmp_path]).table, by=())
    assert report.configs[0].loss["mean"] == 6.0
    assert report.trials.step.tolist() == [0, 1, 2, 3, 4]


def test_by_accepts_params_keys_and_rejects_unknown_ones(tmp_path: Path) -> None:
    sweep_of_configs(tmp_path)
    table = load_curves([tmp_path]).table
    report = analyse(table, by=["muon_lr"])
    assert [c.key["muon_lr"] for c in report.configs] == [0.01, 0.03]
    assert [c.loss["n"] for c in report.configs] == [6, 6]
    with pytest.raises(InputError, match="nosuchkey"):
        analyse(table, by=["nosuchkey"])


def test_budget_frontier_reports_the_best_point_within_each_budget(tmp_path: Path) -> None:
    write_trial(tmp_path, "fast", [6.0, 4.0, 3.5], [0.0, 1.0, 2.0])
    write_trial(tmp_path, "slow", [6.5, 3.8, 3.0], [0.0, 1.5, 4.0], seed=1)
    report = analyse(load_curves([tmp_path]).table)
    assert [(p.time_s, p.val_loss, p.trial_id) for p in report.budget] == [
        (0.0, 6.0, "fast"), (1.0, 4.0, "fast"), (1.5, 3.8, "slow"), (2.0, 3.5, "fast"),
        (4.0, 3.0, "slow")]


# --- record logs ---------------------------------------------------------------------

RECORD_LOG = """\
import os
print0(f"step:{step}/{train_steps} val_loss:{val_loss:.4f} train_time:{t:.0f}ms step_avg:{a:.2f}ms")
Running Python 3.12.7
Wed Jan  8 03:45:11 2025
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |
|   0  NVIDIA H100 80GB HBM3     On   | 00000000:19:00.0 Off |        0 |
+-----------------------------------------------------------------------------+
step:0/1770 val_loss:10.8258 train_time:0ms step_avg:0.08ms
step:1/1770 train_time:24538ms step_avg:nanms
step:10/1770 train_time:2473ms step_avg:247.3ms
step:125/1770 val_loss:4.363417 train_time:15530ms step_avg:124.24ms
step:1770/1770 val_loss:3.2781 train_time:189960ms step_avg:107.32ms
peak memory allocated: 24467 MiB reserved: 24850 MiB
"""


def test_parse_log_reads_validation_lines_only() -> None:
    points = parse_log(RECORD_LOG, "x.txt")
    assert [(p.step, p.total, p.val_loss, p.train_time_ms) for p in points] == [
        (0, 1770, 10.8258, 0.0), (125, 1770, 4.363417, 15530.0), (1770, 1770, 3.2781, 189960.0)]


def test_import_logs_writes_curves_and_never_overwrites(tmp_path: Path) -> None:
    log = tmp_path / "0c3f0e4a-record.txt"
    log.write_text(RECORD_LOG)
    out = tmp_path / "storage"
    (path,) = import_logs([log], out).written
    assert path == out / "records" / "curves" / "0c3f0e4a-record.txt.parquet"
    table = read_curve(path)
    assert table["status"].to_pylist() == ["running", "running", "completed"]
    assert {json.loads(p)["preset"] for p in table["params"].to_pylist()} == {"record"}
    assert table["seed"].to_pylist() == [None] * 3
    assert table["num_iterations"].to_pylist() == [1770] * 3
    again = import_logs([log], out)  # the same run again: nothing new, nothing rewritten
    assert again.written == [] and again.present == [path]

    log.write_text(RECORD_LOG.replace("val_loss:3.2781", "val_loss:3.2782"))
    with pytest.raises(InputError, match="refusing to overwrite"):
        import_logs([log], out)

    cut = tmp_path / "cut.txt"
    cut.write_text(RECORD_LOG.replace("step:1770/1770 val_loss:3.2781", "step:1500/1770 "
                                      "val_loss:3.3"))
    (path,) = import_logs([cut], out, sweep="mine").written
    # a run that stops before its total (as optimization-track runs may) still has a final loss
    assert read_curve(path)["status"].to_pylist()[-1] == "completed"


def test_log_without_validation_lines_is_bad_input(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(InputError, match="garbage.txt"):
        import_logs([garbage], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_record_log_export_round_trips_through_import(tmp_path: Path) -> None:
    losses = [10.82581, 4.3634172, 3.61234, 3.2780996]
    path = write_trial(tmp_path, "mine", losses, [0.0, 15.5301, 120.0004, 189.95987],
                       num_iterations=1770)
    original = read_curve(path)
    text = to_record_log(original)
    # the loss with every decimal the curve holds; the time in whole ms
    assert text.splitlines()[-1] == "step:1770/1770 val_loss:3.2780996 train_time:189960ms " \
                                    "step_avg:107.32ms"
    log = tmp_path / "exported.txt"
    log.write_text(text)
    (back_path,) = import_logs([log], tmp_path / "imported").written
    back = read_curve(back_path)
    assert back["step"].to_pylist() == original["step"].to_pylist()
    assert back["val_loss"].to_pylist() == original["val_loss"].to_pylist()
    np.testing.assert_allclose(back["train_time_ms"].to_numpy(),
                               original["train_time_ms"].to_numpy(), atol=0.5)
    assert back["status"].to_pylist()[-1] == "completed"
    again = to_record_log(back)  # with the most decimals any line had, the same numbers
    assert again.splitlines()[1].startswith("step:590/1770 val_loss:4.3634172 ")
    assert parse_log(again, "again.txt") == parse_log(text, "text.txt")


# --- plots ---------------------------------------------------------------------------

def test_plots_are_written_and_non_empty(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    sweep_of_configs(tmp_path / "s")
    code, _, err = run(["report", str(tmp_path / "s"), "--target", "3.25",
                        "--plot", str(tmp_path / "plots")], capsys)
    assert code == 0 and "wrote 10 plots" in err
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert {"loss_vs_time.png", "loss_vs_tokens_and_time.png", "pareto.png",
            "parallel_coordinates.png", "final_loss_vs_extra_embeddings.png",
            "final_loss_vs_muon_lr.png"} <= set(names)
    assert sum(n.startswith("lambdas_") for n in names) == 4  # one per config
    for path in (tmp_path / "plots").iterdir():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_no_final_loss_plot_without_a_numeric_field_that_varies(tmp_path: Path) -> None:
    write_trial(tmp_path / "s", "t", [5.0, 3.0])
    write_trial(tmp_path / "s", "u", [5.0, 3.1], lambda_init="one")
    paths = write_plots(analyse(load_curves([tmp_path / "s"])), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["loss_vs_time.png", "loss_vs_tokens_and_time.png",
                                             "parallel_coordinates.png", "pareto.png"]


# --- the CLI -------------------------------------------------------------------------

def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ablate: "), err
    for needle in needles:
        assert needle in lines[0]


def test_report_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_of_configs(tmp_path)
    code, out, err = run(["report", str(tmp_path), "--target", "3.25"], capsys)
    assert code == 0 and err == ""
    assert "12 trials in 4 configs" in out
    for header in ("extra_embeddings", "lambda_init", "seeds", "val loss", "to target", "P(nd)"):
        assert header in out
    assert "★" in out and "Best val loss within a training-time budget" in out


def test_report_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    finals = sweep_of_configs(tmp_path)
    code, out, _ = run(["report", str(tmp_path), "--format", "csv", "--target", "3.3"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 4
    row = next(r for r in rows if r["extra_embeddings"] == "2" and r["lambda_init"] == "zero")
    assert float(row["loss_mean"]) == pytest.approx(np.mean(finals[(2, "zero")]), abs=1e-12)
    assert row["ttest_reject"] == "True"

    code, out, _ = run(["report", str(tmp_path), "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and len(data["configs"]) == 4 and data["skipped"] == []
    assert all(c["ttest"] is None for c in data["configs"])

    code, out, _ = run(["report", str(tmp_path), "--format", "markdown", "--by",
                        "lambda_init"], capsys)
    assert code == 0 and "| # | lambda_init | seeds |" in out and "| 2 | zero | 6 |" in out
    assert "pooled by lambda_init" in out


def test_report_warns_about_skipped_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_trial(tmp_path, "good", [5.0, 3.0])
    bad = tmp_path / "demo" / "curves" / "bad.parquet"
    bad.write_bytes(b"\x00" * 64)
    code, out, err = run(["report", str(tmp_path)], capsys)
    assert code == 0 and f"warning: skipped {bad}" in err and "1 files skipped" in out


@pytest.mark.parametrize("argv, needles", [
    (["report", "{tmp}/missing"], ["missing", "no such file"]),
    (["report", "{tmp}/corrupt.parquet"], ["corrupt.parquet"]),
    (["report", "{tmp}/store", "--format", "xml"], ["--format", "xml"]),
    (["report", "{tmp}/empty"], ["empty", "no readable curve files"]),
    (["report", "{tmp}/store", "--by", "nosuchkey"], ["nosuchkey"]),
    (["report", "{tmp}/store", "--alpha", "1.5"], ["--alpha"]),
    (["report", "{tmp}/store", "--plot", "{tmp}/garbage.txt/plots"], ["--plot", "garbage.txt"]),
    (["import-logs", "{tmp}/garbage.txt", "--out", "{tmp}/out"], ["garbage.txt"]),
    (["stats", "--target", "2.92", "2.9", "abc"], ["abc"]),
    (["stats", "2.9", "2.91"], ["--target"]),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], needles: list[str]) -> None:
    write_trial(tmp_path / "store", "t", [5.0, 3.0])
    (tmp_path / "corrupt.parquet").write_bytes(np.random.default_rng(2).bytes(300))
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.txt").write_text("nothing to see\nstep:10/20 train_time:5ms\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, *[n.format(tmp=tmp_path) for n in needles])


def test_import_logs_command_refuses_to_overwrite(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run.txt"
    log.write_text(RECORD_LOG)
    argv = ["import-logs", str(log), "--out", str(tmp_path / "s"), "--sweep", "rec"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and out.strip() == ("imported 1 run from 1 file; skipped 0; merged 0 "
                                         f"duplicates -> {tmp_path / 's' / 'rec' / 'curves'}")
    log.write_text(RECORD_LOG.replace("val_loss:3.2781", "val_loss:3.2782"))  # another run
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "run.txt.parquet", "overwrite")
    code, out, _ = run(["report", str(tmp_path / "s"), "--target", "3.28"], capsys)
    assert code == 0 and "record" in out


def test_stats_command_matches_scipy(capsys: pytest.CaptureFixture[str]) -> None:
    values = [2.9194, 2.9201, 2.9188, 2.9179, 2.9205, 2.9190]
    code, out, _ = run(["stats", "--target", "2.92", "--json", *map(str, values)], capsys)
    data = json.loads(out)
    ref = sps.ttest_1samp(values, 2.92, alternative="less")
    assert code == 0 and data["summary"]["n"] == 6
    assert data["ttest"]["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert data["ttest"]["upper"] == pytest.approx(ref.confidence_interval(0.95).high, abs=1e-12)
    code, out, _ = run(["stats", "--target", "2.92", *map(str, values)], capsys)
    assert code == 0 and "p " in out and "at alpha 0.05" in out


def test_add_commands_plugs_into_another_parser(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    write_trial(tmp_path, "t", [5.0, 3.0])
    parser = argparse.ArgumentParser(prog="ablate")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(tmp_path), "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["configs"][0]["loss"]["n"] == 1
    args = parser.parse_args(["report", str(tmp_path / "nope")])
    with pytest.raises(AblateError, match="nope"):
        args.func(args)


def test_python_dash_m_results(tmp_path: Path) -> None:
    write_trial(tmp_path, "t", [5.0, 3.0])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ablate.results", "report", str(tmp_path),
                           "--format", "csv"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config,n,n_completed")


def test_results_never_imports_torch_or_ray() -> None:
    for path in (ROOT / "results").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in ("torch", "ray"), f"{path}: {line}"
