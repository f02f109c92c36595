"""Benchmark: results/ against a straightforward pandas implementation of the same numbers.

Synthesises a sweep (default 10k trials x 1k validation points, in curve files with the
real schema: the config in each trial's `params`, as the trainer writes it, and the sweep's
axes in the file metadata), then times, side by side: load, config identity, per-config
seed statistics with the t-test, time to target, the config Pareto frontier with bootstrap
P(non-dominated), and the frontier over all curve points. The same numbers are computed
with DuckDB, polars and pandas over the same Parquet files (each skipped, saying so, when
not installed: `pip install -e '.[bench]'`); every one is checked to give the same numbers
as results/, and the timings are printed side by side, load and analysis apart.

    .venv/bin/python bench/analysis.py                 # full size (~1-2 min on 2 cores)
    .venv/bin/python bench/analysis.py --trials 1000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats as sps

from ablate.results.curves import META_KEY, SCHEMA, SCHEMA_VERSION, VERSION_KEY
from ablate.results.load import load_curves
from ablate.results.report import Report, analyse
from ablate.results.trials import COLUMNS

if TYPE_CHECKING:  # imported where used: pandas is optional (the bench extra)
    import pandas as pd

TARGET = 3.28
ALPHA = 0.05
AXES = ["extra_embeddings", "num_iterations", "lambda_init", "token_lambdas"]
# The rest of a trainer's params (values as the medium preset has them): fixed in the sweep.
FIXED = {"preset": "medium", "batch_size": 64, "val_every": 125, "val_tokens": 10485760,
         "cooldown_frac": 0.7, "lr_muon": 0.05, "lr_embed": 0.3,
         "lr_head": 0.008, "lr_scalar": 0.04, "adam_betas": [0.8, 0.95],
         "muon_momentum": 0.95, "muon_momentum_warmup": 300, "device": "cuda",
         "compile": True, "warmup_steps": 10, "checkpoint_every": 0, "workers": 8,
         "vocab_size": 50304, "n_layer": 16, "n_head": 8, "head_dim": 128, "d_model": 1024,
         "seq_len": 8192, "mlp_ratio": 4, "value_embeds": 5, "window": 1792,
         "logit_softcap": 15.0, "head_init_std": 0.005, "token_lambda_init": 1.0}


# --- synthetic sweep -----------------------------------------------------------------

def synthesise(out: Path, trials: int, points: int, files: int, seeds: int) -> None:
    """`trials` curves of `points` rows: config c = trial // seeds varies extra_embeddings,
    lambda_init, token_lambdas and num_iterations; ~2% diverge, ~1% fail."""
    rng = np.random.default_rng(0)
    folder = out / "bench" / "curves"
    folder.mkdir(parents=True)
    trial_meta = json.dumps({"sweep": {"axes": AXES, "target": TARGET}})
    meta = {VERSION_KEY: str(SCHEMA_VERSION).encode(), META_KEY: trial_meta.encode()}
    for part, ids in enumerate(np.array_split(np.arange(trials), files)):
        table = _trials_table(rng, ids, points, seeds)
        pq.write_table(table.replace_schema_metadata(meta), folder / f"part-{part:04d}.parquet")


def _trials_table(rng: np.random.Generator, ids: np.ndarray, points: int,
                  seeds: int) -> pa.Table:
    config = ids // seeds
    extra = (config % 6).astype(np.int32)
    init = np.where((config // 6) % 2 == 0, "zero", "one")
    token = (config // 12) % 2 == 1
    iters = (1000 + 50 * (config // 24)).astype(np.int32)
    fate = rng.random(len(ids))
    status = np.where(fate < 0.02, "diverged", np.where(fate < 0.03, "failed", "completed"))

    frac = np.linspace(0.0, 1.0, points)
    step = (frac[None, :] * iters[:, None]).astype(np.int64)
    step_ms = 250.0 + 8.0 * extra + 20.0 * token + rng.normal(0, 2.0, len(ids))
    time_ms = step * step_ms[:, None] * (1 + rng.normal(0, 0.002, step.shape))
    time_ms = np.maximum.accumulate(time_ms, axis=1)
    floor = 3.20 - 0.012 * extra + 0.03 * (init == "one") - 0.00004 * (iters - 1000)
    floor += rng.normal(0, 0.01, len(ids))
    loss = floor[:, None] + 7.6 * np.exp(-step / 120.0) + 0.25 * (1 - frac[None, :])
    loss += rng.normal(0, 0.004, loss.shape)
    loss[status == "diverged", -1] = np.nan

    rows = len(ids) * points
    row_status = np.full(step.shape, "running", dtype=object)
    row_status[:, -1] = status
    each = lambda values: np.repeat(values, points)  # noqa: E731  per-trial -> per-row
    params = [json.dumps({**FIXED, "data": "/data/fineweb10B", "num_iterations": int(n),
                          "seed": int(s), "out": f"/runs/bench/curves/t{i:06d}.parquet",
                          "sweep": "bench", "trial_id": f"t{i:06d}",
                          "extra_embeddings": int(e), "lambda_init": str(init_),
                          "token_lambdas": bool(t)})
              for i, e, init_, t, n, s in zip(ids, extra, init, token, iters, ids % seeds)]
    columns = {
        "sweep": pa.array(["bench"] * rows),
        "trial_id": pa.DictionaryArray.from_arrays(
            np.repeat(np.arange(len(ids), dtype=np.int32), points),
            [f"t{i:06d}" for i in ids]).cast(pa.string()),
        "seed": each(ids % seeds), "num_iterations": each(iters),
        "step": step.ravel(), "train_time_ms": time_ms.ravel(), "val_loss": loss.ravel(),
        "train_loss": loss.ravel() + 0.02, "tokens_seen": step.ravel() * 393216,
        "lr": np.ones(rows), "peak_mem_mb": np.full(rows, 24467.0),
        "lambdas": pa.nulls(rows, SCHEMA.field("lambdas").type),
        "status": pa.array(row_status.ravel(), pa.string()),
        "params": pa.DictionaryArray.from_arrays(
            np.repeat(np.arange(len(ids), dtype=np.int32), points), params).cast(pa.string()),
    }
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in SCHEMA}, schema=SCHEMA)


# --- the pandas reference ------------------------------------------------------------

def pandas_analysis(folder: Path, resamples: int,
                    timings: dict[str, tuple[float, float]]) -> dict:
    """The same numbers as results/ (analyse), written as one would with pandas."""
    import pandas as pd

    by = list(AXES)
    with timed(timings, "load"):
        # params repeats on every row of a trial: read it as a categorical, not 10M strings
        df = pd.read_parquet(folder, columns=["sweep", "trial_id", "step", "train_time_ms",
                                              "val_loss", "status", "params"],
                             read_dictionary=["params"])
        df["time_s"] = df["train_time_ms"] / 1000.0

    with timed(timings, "config fields from params"):
        # The sweep's axes are the fields that vary here (the rest are fixed or labels).
        parsed = [json.loads(text) for text in df["params"].cat.categories]
        codes = df["params"].cat.codes.to_numpy()
        for key in by:
            df[key] = np.array([p[key] for p in parsed])[codes]
        df = df.drop(columns="params")

    with timed(timings, "final rows + seed stats + t-test"):
        last = df.loc[df.groupby(["sweep", "trial_id"])["step"].idxmax()]
        done = last[(last["status"] == "completed") & np.isfinite(last["val_loss"])]
        agg = ["count", "mean", "median", "std", "min", "max"]
        loss = done.groupby(by)["val_loss"].agg(agg)
        times = done.groupby(by)["time_s"].agg(agg)
        tests = done.groupby(by)["val_loss"].apply(_pandas_ttest).unstack()
    with timed(timings, "time to target"):
        ttt = cast("pd.Series", df.groupby(["sweep", "trial_id"])[["step", "time_s", "val_loss"]]
                   .apply(_pandas_crossing))  # one float per trial
        done_ttt = done.join(ttt.rename("ttt"), on=["sweep", "trial_id"])
        reached = done_ttt.groupby(by)["ttt"].agg(["count", "mean"])
    with timed(timings, "frontiers + bootstrap"):
        front = frontier(times["mean"].to_numpy(), loss["mean"].to_numpy())
        points = df.loc[np.isfinite(df["val_loss"])].sort_values(["time_s", "val_loss"])
        before = points["val_loss"].cummin().shift(fill_value=np.inf)
        budget = points[points["val_loss"] < before][["time_s", "val_loss"]]
        p_nd = _pandas_bootstrap(done, by, resamples)
    return {"keys": list(loss.index), "loss": loss.to_numpy(float), "time": times.to_numpy(float),
            "ttest": tests.to_numpy(float), "reached": reached.to_numpy(float),
            "pareto": front, "p_nd": p_nd, "budget": budget.to_numpy()}


def _pandas_ttest(x: pd.Series) -> pd.Series:
    import pandas as pd

    r = sps.ttest_1samp(x.to_numpy(), TARGET, alternative="less")
    # scipy makes TtestResult's fields when it runs: the checker cannot see them
    return pd.Series({"t": r.statistic, "p": r.pvalue,  # pyright: ignore[reportAttributeAccessIssue]
                      "upper": r.confidence_interval(1 - ALPHA).high})


def _pandas_crossing(g: pd.DataFrame) -> float:
    """A trial's time to target, interpolated as results/ does."""
    g = g.sort_values("step")
    below = np.flatnonzero(g["val_loss"].to_numpy() <= TARGET)
    if len(below) == 0:
        return np.nan
    i = below[0]
    t, y = g["time_s"].to_numpy(), g["val_loss"].to_numpy()
    if i == 0 or not np.isfinite(y[i - 1]):
        return float(t[i])
    return float(t[i] - (TARGET - y[i]) * (t[i] - t[i - 1]) / (y[i - 1] - y[i]))


def _pandas_bootstrap(done: pd.DataFrame, by: list[str], resamples: int) -> np.ndarray:
    """P(non-dominated) with the same draws as results/: seed 0, trials ordered by config
    then by appearance."""
    done = done.assign(config=done.groupby(by, sort=True).ngroup())
    done = done.sort_values(["config", "trial_id"])
    counts = done.groupby("config").size()
    base = (counts.cumsum() - counts).to_numpy()[done["config"].to_numpy()]
    size = counts.to_numpy()[done["config"].to_numpy()]
    rng = np.random.default_rng(0)
    wins = np.zeros(len(counts))
    for _ in range(resamples):
        pick = base + (rng.random(len(done)) * size).astype(np.int64)
        means = done.iloc[pick].groupby("config")[["time_s", "val_loss"]].mean()
        wins += frontier(means["time_s"].to_numpy(), means["val_loss"].to_numpy())
    return wins / resamples


# --- the same numbers with polars and with DuckDB, over the same Parquet files -----------

def ttest_of(n: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(t, p, upper) of the one-sided t-test against TARGET from a group's n, mean and std."""
    se = std / np.sqrt(n)
    t = (mean - TARGET) / se
    return np.column_stack([t, sps.t.cdf(t, n - 1), mean + sps.t.ppf(1 - ALPHA, n - 1) * se])


def bootstrap(config: np.ndarray, time_s: np.ndarray, loss: np.ndarray, resamples: int) -> np.ndarray:
    """P(non-dominated) with results/'s draws: trials sorted by config (then trial id)."""
    counts = np.bincount(config)
    starts = np.cumsum(counts) - counts
    base, size = starts[config], counts[config]
    rng = np.random.default_rng(0)
    wins = np.zeros(len(counts))
    for _ in range(resamples):
        pick = base + (rng.random(len(config)) * size).astype(np.int64)
        wins += frontier(np.add.reduceat(time_s[pick], starts) / counts,
                         np.add.reduceat(loss[pick], starts) / counts)
    return wins / resamples


def polars_analysis(folder: Path, resamples: int,
                    timings: dict[str, tuple[float, float]]) -> dict:
    """The same numbers with polars (its own threads; the bootstrap's draws in numpy)."""
    import polars as pl  # pyright: ignore[reportMissingImports]  # the bench extra; skipped without it

    trial = ["sweep", "trial_id"]
    with timed(timings, "load"):
        df = pl.read_parquet(folder / "*.parquet", columns=[
            "sweep", "trial_id", "step", "train_time_ms", "val_loss", "status", "params"])
        df = df.with_columns(time_s=pl.col("train_time_ms") / 1000.0)
    with timed(timings, "final rows + config fields + seed stats + t-test"):
        last = df.filter(pl.col("step") == pl.col("step").max().over(trial))
        kinds = {"extra_embeddings": pl.Int64, "num_iterations": pl.Int64, "lambda_init": pl.Utf8}
        last = last.with_columns(
            *[pl.col("params").str.json_path_match(f"$.{k}").cast(v).alias(k) for k, v in kinds.items()],
            (pl.col("params").str.json_path_match("$.token_lambdas") == "true").alias("token_lambdas"))
        done = last.filter((pl.col("status") == "completed") & pl.col("val_loss").is_finite())
        stats = done.group_by(AXES).agg(
            *[getattr(pl.col(c), f)().alias(f"{c}_{f}") for c in ("val_loss", "time_s")
              for f in ("count", "mean", "median", "std", "min", "max")]).sort(AXES)
        loss = stats.select([f"val_loss_{f}" for f in ("count", "mean", "median", "std", "min", "max")]
                            ).to_numpy().astype(float)
        times = stats.select([f"time_s_{f}" for f in ("count", "mean", "median", "std", "min", "max")]
                             ).to_numpy().astype(float)
        tests = ttest_of(loss[:, 0], loss[:, 1], loss[:, 3])
    with timed(timings, "time to target"):
        hits = (df.with_columns(prev_t=pl.col("time_s").shift(1).over(trial),
                                prev_l=pl.col("val_loss").shift(1).over(trial))
                .filter(pl.col("val_loss") <= TARGET).group_by(trial, maintain_order=True).first())
        crossing = pl.when(pl.col("prev_l").is_null() | ~pl.col("prev_l").is_finite()).then(
            pl.col("time_s")).otherwise(pl.col("time_s") - (TARGET - pl.col("val_loss")) * (
                pl.col("time_s") - pl.col("prev_t")) / (pl.col("prev_l") - pl.col("val_loss")))
        ttt = hits.select(*trial, crossing.alias("ttt"))
        reached = (done.join(ttt, on=trial, how="left").group_by(AXES)
                   .agg(pl.col("ttt").count().alias("n"), pl.col("ttt").mean().alias("mean"))
                   .sort(AXES).select("n", "mean").to_numpy().astype(float))
    with timed(timings, "frontiers + bootstrap"):
        front = frontier(times[:, 1], loss[:, 1])
        points = df.filter(pl.col("val_loss").is_finite()).select("time_s", "val_loss").sort(
            ["time_s", "val_loss"])
        budget = points.filter(pl.col("val_loss") < pl.col("val_loss").cum_min().shift(
            1, fill_value=np.inf)).to_numpy()
        order = done.with_columns(pl.struct(AXES).rank("dense").alias("config") - 1).sort(
            ["config", "trial_id"])
        p_nd = bootstrap(order["config"].to_numpy(), order["time_s"].to_numpy(),
                         order["val_loss"].to_numpy(), resamples)
    keys = [tuple(row) for row in stats.select(AXES).iter_rows()]
    return {"keys": keys, "loss": loss, "time": times, "ttest": tests, "reached": reached,
            "pareto": front, "p_nd": p_nd, "budget": budget}


def duckdb_analysis(folder: Path, resamples: int,
                    timings: dict[str, tuple[float, float]]) -> dict:
    """The same numbers in DuckDB's SQL (its own threads; the bootstrap's draws in numpy)."""
    import duckdb  # pyright: ignore[reportMissingImports]  # the bench extra; skipped without it

    con = duckdb.connect()
    axes = ", ".join(AXES)
    summary = ", ".join(f"{f}({c})" for c in ("val_loss", "time_s")
                        for f in ("count", "avg", "median", "stddev_samp", "min", "max"))
    with timed(timings, "load"):
        # params repeats on every row of a trial: one row per trial (stored per row, it
        # would be copied ten million times)
        con.execute(f"""create temp table pts as select sweep, trial_id, step, val_loss, status,
                        train_time_ms / 1000.0 as time_s from read_parquet('{folder}/*.parquet')""")
        con.execute(f"""create temp table params as select sweep, trial_id, any_value(params) as params
                        from read_parquet('{folder}/*.parquet') group by sweep, trial_id""")
    with timed(timings, "final rows + config fields + seed stats + t-test"):
        con.execute("""create temp table done as select sweep, trial_id, time_s, val_loss,
            json_extract(params, '$.extra_embeddings')::bigint as extra_embeddings,
            json_extract(params, '$.num_iterations')::bigint as num_iterations,
            json_extract_string(params, '$.lambda_init') as lambda_init,
            json_extract(params, '$.token_lambdas')::boolean as token_lambdas
            from (select * from pts qualify row_number() over (partition by sweep, trial_id
                                                               order by step desc) = 1)
            join params using (sweep, trial_id)
            where status = 'completed' and isfinite(val_loss)""")
        rows = con.execute(f"select {axes}, {summary} from done group by all order by {axes}"
                           ).fetchnumpy()
        values = list(rows.values())[len(AXES):]
        loss = np.column_stack(values[:6]).astype(float)
        times = np.column_stack(values[6:]).astype(float)
        tests = ttest_of(loss[:, 0], loss[:, 1], loss[:, 3])
    with timed(timings, "time to target"):
        reached = con.execute(f"""
            with hits as (select sweep, trial_id, case when prev_l is null or not isfinite(prev_l)
                    then time_s else time_s - ({TARGET} - val_loss) * (time_s - prev_t)
                    / (prev_l - val_loss) end as ttt
                from (select *, lag(time_s) over w as prev_t, lag(val_loss) over w as prev_l
                      from pts window w as (partition by sweep, trial_id order by step))
                where val_loss <= {TARGET}
                qualify row_number() over (partition by sweep, trial_id order by step) = 1)
            select count(ttt), avg(ttt) from done left join hits using (sweep, trial_id)
            group by {axes} order by {axes}""").fetchnumpy()
        reached = np.column_stack(list(reached.values())).astype(float)
    with timed(timings, "frontiers + bootstrap"):
        front = frontier(times[:, 1], loss[:, 1])
        budget = con.execute("""select time_s, val_loss from (select time_s, val_loss,
                min(val_loss) over (order by time_s, val_loss
                    rows between unbounded preceding and 1 preceding) as before
                from pts where isfinite(val_loss))
            where val_loss < coalesce(before, 'inf'::double) order by time_s, val_loss""").fetchnumpy()
        budget = np.column_stack([budget["time_s"], budget["val_loss"]])
        order = con.execute(f"""select dense_rank() over (order by {axes}) - 1 as config,
            time_s, val_loss from done order by config, trial_id""").fetchnumpy()
        p_nd = bootstrap(order["config"].astype(np.int64), np.asarray(order["time_s"]),
                         np.asarray(order["val_loss"]), resamples)
    keys = [tuple(v.item() if hasattr(v, "item") else v for v in row)
            for row in zip(*(rows[a] for a in AXES))]
    return {"keys": keys, "loss": loss, "time": times, "ttest": tests, "reached": reached,
            "pareto": front, "p_nd": p_nd, "budget": budget}


def frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-dominated mask by sort + running minimum (ties between means do not occur)."""
    order = np.lexsort((y, x))
    ys = y[order]
    mask = np.empty(len(x), bool)
    mask[order] = ys < np.concatenate([[np.inf], np.minimum.accumulate(ys)[:-1]])
    return mask


# --- comparison and timing -----------------------------------------------------------

def given(part: dict[str, Any] | None) -> dict[str, Any]:
    """A part of the report that exists where a target is given (as here, always)."""
    assert part is not None
    return part


def compare(report: Report, ref: dict) -> float:
    """Largest relative difference over every compared number (raises on a mismatch)."""
    configs = [c for c in report.configs if c.loss["n"] > 0]  # pandas drops empty groups
    assert list(report.fields) == AXES, report.fields
    keys = [tuple(c.key[k] for k in AXES) for c in configs]
    summary = ("n", "mean", "median", "std", "min", "max")
    ours = {
        "loss": np.array([[c.loss[k] for k in summary] for c in configs]),
        "time": np.array([[c.time[k] for k in summary] for c in configs]),
        "ttest": np.array([[given(c.ttest)[k] for k in ("t", "p", "upper")] for c in configs]),
        "reached": np.array([[given(c.to_target)[k] for k in ("reached", "mean")] for c in configs]),
    }
    assert list(ref["keys"]) == keys, "configs differ"
    worst = 0.0
    for name in ("loss", "time", "ttest", "reached"):
        a, b = ours[name], np.asarray(ref[name], dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
        both = np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a - b)[both] / np.maximum(np.abs(b[both]),
                                                                            1e-300), initial=0)))
    pareto = np.array([c.pareto for c in configs])
    assert np.array_equal(pareto, ref["pareto"]), "config frontiers differ"
    p_nd = np.array([c.p_nondominated for c in configs])
    several = np.array([c.loss["n"] > 1 for c in configs])  # ours is n/a at one seed
    assert np.isnan(p_nd[~several]).all()
    np.testing.assert_allclose(p_nd[several], ref["p_nd"][several], atol=1e-12,
                               err_msg="P(non-dominated)")
    budget = np.array([(p.time_s, p.val_loss) for p in report.budget])
    # the same points; a time may differ in its last bit (polars divides by 1000 as x * 0.001)
    np.testing.assert_allclose(budget, np.asarray(ref["budget"]), rtol=1e-15, atol=0,
                               err_msg="budget frontier")
    return worst


@contextmanager
def timed(timings: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    """Adds (wall, CPU) seconds under `name`; CPU time is less disturbed by a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    before = timings.get(name, (0.0, 0.0))
    timings[name] = (before[0] + time.perf_counter() - wall, before[1] + time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000, help="validation points a curve")
    parser.add_argument("--seeds", type=int, default=5, help="trials per config")
    parser.add_argument("--files", type=int, default=100, help="curve files to spread over")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--skip", nargs="*", choices=("duckdb", "polars", "pandas"), default=[],
                        help="leave these out (pandas takes ~70 s at full size)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthesise(Path(tmp), args.trials, args.points, args.files, args.seeds)
        print(f"synthesised {args.trials} trials x {args.points} points "
              f"({args.trials * args.points:,} rows, {args.files} files) "
              f"in {time.perf_counter() - start:.1f} s")
        os.sync()  # both sides then read from the page cache, none pays for write-back
        for path in Path(tmp).rglob("*.parquet"):
            path.read_bytes()
        report, ours = time_ours(Path(tmp), args.resamples)
        sides = [("results/ (numpy + pyarrow)", ours),
                 *time_theirs(report, Path(tmp) / "bench" / "curves", args.resamples, args.skip)]
    print_timings(sides)


def time_ours(folder: Path, resamples: int) -> tuple[Report, dict[str, tuple[float, float]]]:
    """results/' report of the sweep under `folder`, load and analysis timed apart."""
    ours: dict[str, tuple[float, float]] = {}
    with timed(ours, "load"):
        loaded = load_curves([folder], columns=COLUMNS)  # as `report` without --plot
    assert not loaded.problems, loaded.problems
    with timed(ours, "report (configs, stats, t-test, time to target, frontiers, bootstrap)"):
        report = analyse(loaded, alpha=ALPHA, resamples=resamples)
    assert report.target == TARGET and report.axes == tuple(AXES)  # from the metadata
    return report, ours


def time_theirs(report: Report, folder: Path, resamples: int,
                skip: list[str]) -> list[tuple[str, dict[str, tuple[float, float]]]]:
    """The other engines' timings, each checked to give the report's numbers."""
    sides = []
    for title, module, run in (("DuckDB (SQL)", "duckdb", duckdb_analysis),
                               ("polars (expressions)", "polars", polars_analysis),
                               ("pandas (groupby/apply)", "pandas", pandas_analysis)):
        if module in skip:
            print(f"{title}: skipped (--skip)")
            continue
        try:
            __import__(module)
        except ImportError:
            print(f"{title}: skipped ({module} is not installed: pip install -e '.[bench]')")
            continue
        theirs: dict[str, tuple[float, float]] = {}
        ref = run(folder, resamples, theirs)
        worst = compare(report, ref)
        print(f"{title}: {len(report.configs)} configs, {len(report.budget)} budget-frontier "
              f"points; same numbers (largest relative difference {worst:.1e})")
        sides.append((title, theirs))
    return sides


def print_timings(sides: list[tuple[str, dict[str, tuple[float, float]]]]) -> None:
    width = max(len(name) for _, timings in sides for name in timings)
    for title, timings in sides:
        print(f"\n{title:<{width + 2}} {'wall':>8} {'CPU':>8}")
        for name, (wall, cpu) in timings.items():
            print(f"  {name:<{width}} {wall:7.2f}s {cpu:7.2f}s")
    print(f"\n{'':<24} {'load':>14} {'analysis':>14} {'total':>14}   (wall s, CPU s)")
    for title, timings in sides:
        load = timings["load"]
        rest = [sum(v[i] for k, v in timings.items() if k != "load") for i in (0, 1)]
        print(f"{title.split(' (')[0]:<24} " + " ".join(
            f"{w:6.2f} {c:6.2f} " for w, c in (load, rest, (load[0] + rest[0], load[1] + rest[1]))))
    print(f"(machine load average while running: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
