"""The record history: imported record logs (logs.py) per record, in date order, and each
PR against its own baseline.

`ablate report DIR --by record` lands here instead of the config table: records are not
configs of one sweep but entries of three races, each with its own target (records.py).
Three tables come out:
- one row per record (or per record and variant): date, distinct runs, mean final val loss
  with its t-interval, mean training time, and the one-sided p-value that the mean is below
  the track's target (`ttest_1samp(losses, target, alternative='less')`); the record rules
  ask p < 0.01, so a row that does not reach it is marked;
- per track, the records in date order with their time (steps, in the optimization track,
  where steps are the measure) and the change from the record before;
- in a record folder with a baseline subfolder, each other subfolder against that baseline:
  the differences of mean time and mean loss, each with Welch's p-value.
Baseline subfolders (a name holding "baseline", or the `--baseline variant=...` given) are
left out of their record's row and its place in the history: they are the PR's reference.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ablate.core.errors import printable
from ablate.core.files import jsonable
from ablate.core.states import COMPLETED
from ablate.results.compare import BaselineChoice
from ablate.results.configs import trial_params
from ablate.results.errors import InputError
from ablate.results.load import load_curves
from ablate.results.records import RECORD_ALPHA, TARGETS, TRACK_ORDER
from ablate.results.stats import mean_ci, summarize, ttest_less, welch
from ablate.results.trials import trials_from

PLOT_NAME = "record_progression"


@dataclass(frozen=True)
class RecordRow:
    track: str
    record: str
    variant: str | None  # None: every variant but the baselines, pooled
    date: str
    runs: int  # distinct completed runs (copies were merged at import)
    loss_mean: float
    loss_ci: float  # half-width of the t-interval at 1 - alpha
    time_s: float | None  # mean final training time; None where the logs have none
    steps: str  # the runs' last step (a range where they differ)
    target: float | None
    p: float  # one-sided: mean below target
    passes: bool | None  # p < RECORD_ALPHA; None where there is no target
    extra: dict[str, Any] = field(default_factory=dict)  # other --by fields


@dataclass(frozen=True)
class HistoryStep:
    track: str
    date: str
    record: str
    time_s: float | None
    steps: float
    change: float | None  # against the record before: seconds, or steps in optimization
    change_pct: float | None


@dataclass(frozen=True)
class VersusBaseline:
    track: str
    record: str
    variant: str
    baseline: str
    runs: int
    baseline_runs: int
    time_delta_s: float | None
    time_p: float | None
    loss_delta: float
    loss_p: float


@dataclass(frozen=True)
class RecordHistory:
    rows: list[RecordRow]
    history: list[HistoryStep]
    versus: list[VersusBaseline]
    alpha: float
    by: tuple[str, ...]
    left_out: int  # trials that are no imported record log
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    track: str
    record: str
    variant: str
    date: str
    loss: float
    time_s: float | None
    steps: int  # the run's last step
    hardware: str
    extra: tuple[tuple[str, Any], ...]


def build_history(paths: Sequence[str], by: Sequence[str] = ("record",),
                  baseline: BaselineChoice | None = None, alpha: float = 0.05,
                  target: float | None = None) -> RecordHistory:
    """The three tables of the module doc for the curves under `paths`. `target` replaces
    every track's own target. InputError when no trial is an imported record log or a
    --by/--baseline field is not one the record logs have."""
    runs, left_out = _runs(paths, by)
    baseline_name = _baseline_variant(baseline)
    with_variant = "variant" in by

    def is_baseline(variant: str) -> bool:
        if baseline_name is not None:
            return variant == baseline_name
        return "baseline" in variant.lower()

    groups: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for run in runs:
        if not with_variant and is_baseline(run.variant):
            continue
        key = (run.track, run.record, run.variant if with_variant else None, run.extra)
        groups[key].append(run)
    rows = [_row(key, members, alpha, target) for key, members in groups.items()]
    rows.sort(key=lambda r: (_track_rank(r.track), r.date or "9999", r.record, r.variant or "",
                             json.dumps(r.extra, default=str)))
    notes: list[str] = []
    versus = _versus(runs, is_baseline, alpha, notes)
    return RecordHistory(rows, _history(runs, is_baseline), versus, alpha, tuple(by), left_out,
                         notes)


def _runs(paths: Sequence[str], by: Sequence[str]) -> tuple[list[Run], int]:
    loaded = load_curves(paths, lambdas=False)
    if loaded.table.num_rows == 0:
        raise InputError(f"{', '.join(map(str, paths))}: no readable curve files")
    trials = trials_from(loaded.table)
    params = trial_params(trials.info)
    loss, time_s = trials.final_loss, trials.final_time_s
    steps = trials.step[trials.offsets[1:] - 1]  # the last step: a run may stop at the target
    extra_fields = [f for f in by if f not in ("record", "variant")]
    runs, left_out = [], 0
    for i, p in enumerate(params):
        if "record" not in p or "source" not in p:
            left_out += 1
            continue
        if trials.outcome[i] != COMPLETED or not math.isfinite(loss[i]):
            continue
        missing = [f for f in extra_fields if f not in p]
        if missing:
            known = sorted(k for k in p if k not in ("copies",))
            raise InputError(f"--by: unknown field {missing[0]} (the record logs have: "
                             f"{', '.join(known)})")
        runs.append(Run(track=p.get("track") or "", record=str(p["record"]),
                         variant=str(p.get("variant") or ""), date=str(p.get("date") or ""),
                         loss=float(loss[i]),
                         time_s=float(time_s[i]) if p.get("timed", True) else None,
                         steps=int(steps[i]), hardware=str(p.get("hardware") or ""),
                         extra=tuple((f, p[f]) for f in extra_fields)))
    if not runs:
        raise InputError(f"--by record: no imported record log among the curves under "
                         f"{', '.join(map(str, paths))} (import them with `ablate import-logs`)")
    return runs, left_out


def _baseline_variant(choice: BaselineChoice | None) -> str | None:
    if choice is None:
        return None
    fields = dict(choice.fields)
    if set(fields) != {"variant"}:
        other = sorted(set(fields) - {"variant"})[0]
        raise InputError(f"--baseline: {other}: with --by record the baseline is a record's "
                         f"subfolder: --baseline variant=NAME")
    return fields["variant"]


def _row(key: tuple[Any, ...], members: list[Run], alpha: float,
         target: float | None) -> RecordRow:
    track, record, variant, extra = key
    losses = np.array([m.loss for m in members])
    summary = summarize(losses)
    goal = target if target is not None else TARGETS.get(track)
    p = float(ttest_less(losses, goal, alpha).p[0]) if goal is not None else math.nan
    times = [m.time_s for m in members if m.time_s is not None]
    budgets = sorted({m.steps for m in members})
    steps = str(budgets[0]) if len(budgets) == 1 else f"{budgets[0]}-{budgets[-1]}"
    dates = sorted({m.date for m in members if m.date})
    return RecordRow(track=track, record=record, variant=variant, date=dates[0] if dates else "",
                     runs=len(members), loss_mean=float(summary.mean[0]),
                     loss_ci=float(mean_ci(summary, alpha)[0]),
                     time_s=float(np.mean(times)) if times else None, steps=steps,
                     target=goal, p=p,
                     passes=None if goal is None or math.isnan(p) else bool(p < RECORD_ALPHA),
                     extra=dict(extra))


def _history(runs: list[Run], is_baseline: Any) -> list[HistoryStep]:
    """Per track, each dated record (baselines left out) in date order, with the change of
    the track's measure from the record before it."""
    per_record: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        if run.date and not is_baseline(run.variant):
            per_record[(run.track, run.record)].append(run)
    steps: list[HistoryStep] = []
    for track in sorted({t for t, _ in per_record}, key=_track_rank):
        records = sorted(((r, m) for (t, r), m in per_record.items() if t == track),
                         key=lambda item: (min(m.date for m in item[1]), item[0]))
        before: float | None = None
        for record, members in records:
            times = [m.time_s for m in members if m.time_s is not None]
            time_s = float(np.mean(times)) if times else None
            mean_steps = float(np.mean([m.steps for m in members]))
            measure = mean_steps if track == "optimization" else time_s
            change = pct = None
            if measure is not None and before is not None:
                change, pct = measure - before, 100 * (measure - before) / before
            if measure is not None:
                before = measure
            steps.append(HistoryStep(track, min(m.date for m in members), record, time_s,
                                     mean_steps, change, pct))
    return steps


def _versus(runs: list[Run], is_baseline: Any, alpha: float,
            notes: list[str]) -> list[VersusBaseline]:
    """Each non-baseline subfolder of a record against its baseline subfolder (_matching)."""
    by_record: dict[tuple[str, str], dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_record[(run.track, run.record)][run.variant].append(run)
    out = []
    for (track, record), variants in sorted(by_record.items()):
        bases = [v for v in variants if is_baseline(v)]
        if not bases:
            continue
        for variant in sorted(v for v in variants if not is_baseline(v)):
            chosen = _matching(variants, variant, bases)
            if not chosen:
                notes.append(f"{record}/{variant or '.'}: no single baseline to compare with "
                             f"({', '.join(sorted(bases))})")
                continue
            out.append(_compare(track, record, variant, chosen[0], variants[variant],
                                variants[chosen[0]], alpha))
    return out


def _matching(variants: dict[str, list[Run]], variant: str, bases: list[str]) -> list[str]:
    """The baseline on the same hardware (unknown hardware matches any): the one with the same
    last steps if exactly one has them, else the only one; none when that is ambiguous (a PR
    on 8 GPUs is no match for a baseline on 1)."""
    def hardware(name: str) -> set[str]:
        return {m.hardware for m in variants[name]} - {""}

    mine = hardware(variant)
    candidates = [b for b in bases if not mine or not hardware(b) or hardware(b) == mine]
    steps = {m.steps for m in variants[variant]}
    same = [b for b in candidates if {m.steps for m in variants[b]} == steps]
    if len(same) == 1:
        return same
    return candidates if len(candidates) == 1 else []


def _compare(track: str, record: str, variant: str, base: str, runs: list[Run],
             base_runs: list[Run], alpha: float) -> VersusBaseline:
    groups = np.array([0] * len(runs) + [1] * len(base_runs))
    loss = welch(np.array([m.loss for m in runs + base_runs]), groups, 2, 1, alpha)
    time_delta = time_p = None
    if all(m.time_s is not None for m in runs + base_runs):
        times = np.array([m.time_s for m in runs + base_runs], dtype=np.float64)
        time = welch(times, groups, 2, 1, alpha)
        time_delta, time_p = float(time.delta[0]), float(time.p[0])
    return VersusBaseline(track, record, variant, base, len(runs), len(base_runs), time_delta,
                          time_p, float(loss.delta[0]), float(loss.p[0]))


def _track_rank(track: str) -> int:
    return TRACK_ORDER.index(track) if track in TRACK_ORDER else len(TRACK_ORDER)


# --- output ------------------------------------------------------------------------------

def tables(history: RecordHistory) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows) of each table, as text cells."""
    level = f"{1 - history.alpha:.0%}"
    extra = [f for f in history.by if f not in ("record", "variant")]
    headers = ["track", "date", "record", *(["variant"] if "variant" in history.by else []),
               *extra, "runs", f"val loss ({level} CI)", "time (s)", "steps", "target",
               "p (mean < target)", f"p < {RECORD_ALPHA:g}"]
    rows = []
    for r in history.rows:
        rows.append([r.track or "?", r.date or "-", r.record,
                     *([r.variant or "."] if "variant" in history.by else []),
                     *(str(r.extra.get(f)) for f in extra), str(r.runs),
                     _loss(r.loss_mean, r.loss_ci), _num(r.time_s, 2), r.steps,
                     "-" if r.target is None else f"{r.target:g}", _p(r.p),
                     "n/a" if r.passes is None else ("yes" if r.passes else "NO")])
    pooled = "" if "variant" in history.by else "; baseline subfolders left out"
    out = [(f"Records: mean final val loss over distinct runs, one-sided t-test against the "
            f"track's target{pooled}", headers, rows)]
    steps = []
    for s in history.history:
        unit = "steps" if s.track == "optimization" else "s"
        change = "-" if s.change is None else f"{s.change:+.{0 if unit == 'steps' else 2}f} " \
                                              f"{unit} ({s.change_pct:+.1f}%)"
        steps.append([s.track, s.date, s.record, _num(s.time_s, 2), f"{s.steps:.0f}", change])
    out.append(("History: records in date order per track, change from the record before "
                "(optimization track: in steps)",
                ["track", "date", "record", "time (s)", "steps", "change"], steps))
    if history.versus:
        out.append(("PR against its own baseline subfolder (Welch's t-test, PR minus baseline)",
                    ["record", "variant", "baseline", "runs", "Δ time (s)", "p (time)",
                     "Δ val loss", "p (loss)"],
                    [[v.record, v.variant or ".", v.baseline, f"{v.runs} vs {v.baseline_runs}",
                      "-" if v.time_delta_s is None else f"{v.time_delta_s:+.2f}", _p(v.time_p),
                      f"{v.loss_delta:+.5f}", _p(v.loss_p)] for v in history.versus]))
    return out


def write_history(history: RecordHistory, stream: TextIO, format: str = "table") -> None:
    if format == "json":
        stream.write(json.dumps(jsonable(asdict(history)), indent=2) + "\n")
        return
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        fields = [f for f in RecordRow.__dataclass_fields__ if f != "extra"]
        writer.writerow(fields + list(history.rows[0].extra if history.rows else []))
        for r in history.rows:
            writer.writerow([getattr(r, f) for f in fields] + list(r.extra.values()))
        stream.write(buffer.getvalue())
        return
    if format == "markdown":
        from ablate.results.render import md_table

        for caption, headers, rows in tables(history):
            stream.write(f"**{printable(caption)}**\n\n{md_table(headers, rows)}\n\n")
        return
    from rich.console import Console

    from ablate.results.render import print_fitted, table_width

    console = Console(file=stream, width=table_width(stream))
    for caption, headers, rows in tables(history):
        # numbered as the config tables are: `#` repeats in each part of a table too wide
        label = headers.index("record") + 1
        keys = [1] if label != 1 else []  # the track, where it comes first
        others = [i for i in range(1, len(headers) + 1) if i != label and i not in keys]
        print_fitted(console, caption, ["#", *headers],
                     [[str(n), *row] for n, row in enumerate(rows, 1)],
                     labels=[label], keys=keys, groups=[[i] for i in others], keep_labels=True)


def warning_lines(history: RecordHistory) -> list[str]:
    lines = [f"ablate: {printable(n)}" for n in history.notes]
    if history.left_out:
        lines.append(f"ablate: {history.left_out} trial(s) are no imported record log; "
                     "left out of the record tables")
    return lines


def plot_progression(history: RecordHistory, path: Path, dpi: int | None = None) -> Path:
    """Training time of each record against its date, one line a track, log y axis."""
    import datetime

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6), layout="constrained")
    ax = fig.add_subplot()
    for track in sorted({s.track for s in history.history}, key=_track_rank):
        points = [(datetime.date.fromisoformat(s.date), s.time_s) for s in history.history
                  if s.track == track and s.time_s is not None and s.time_s > 0]
        if points:
            x, y = zip(*points)
            ax.plot(x, y, marker="o", ms=3, lw=1.2, drawstyle="steps-post",
                    label=f"{track or '?'} ({len(points)} records)")
    ax.set_yscale("log")
    ax.set(xlabel="record date", ylabel="mean training time (s, log scale)",
           title="Record progression: training time per record")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=dpi or 110)
    return path


def run_history(args: Any) -> int:
    """`ablate report DIR --by record[,variant,...]`: validate, build, refuse an existing plot
    file, then print and draw (nothing is written when any input is bad)."""
    from ablate.results.formats import PLOT_FORMATS

    if not 0 < args.alpha < 1:
        raise InputError(f"--alpha: must be between 0 and 1, not {args.alpha}")
    if args.format not in ("table", "markdown", "csv", "json"):
        raise InputError(f"--format: must be table, markdown, csv or json, not {args.format}")
    plot_path = None
    if args.plot is not None:
        if args.plot_format not in PLOT_FORMATS:
            raise InputError(f"--plot-format: must be one of {', '.join(PLOT_FORMATS)}")
        plot_path = Path(args.plot) / f"{PLOT_NAME}.{args.plot_format}"
        if plot_path.exists():
            raise InputError(f"{plot_path}: already exists; refusing to overwrite it")
    baseline = None if args.baseline is None else BaselineChoice.parse(args.baseline)
    history = build_history(args.dirs, by=args.by, baseline=baseline, alpha=args.alpha,
                            target=args.target)
    for line in warning_lines(history):
        print(line, file=sys.stderr)
    write_history(history, sys.stdout, args.format)
    if plot_path is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot_progression(history, plot_path, args.dpi)
        print(f"ablate: wrote {plot_path}", file=sys.stderr)
    return 0


def _loss(mean: float, ci: float) -> str:
    return f"{mean:.4f}" if math.isnan(ci) else f"{mean:.4f} ± {ci:.4f}"


def _num(x: float | None, decimals: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{decimals}f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.2g}"
