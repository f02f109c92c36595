"""Text output of a report: a rich table for the terminal, Markdown, CSV and JSON.

The terminal and Markdown tables show what a reader compares at a glance (config columns
that vary, seeds, loss mean ± std, time, time to target, the test, Pareto); CSV and JSON
carry every number at full precision for other tools.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from ablate.results.report import ConfigResult, Report
from ablate.results.stats import Summary, TTest

BUDGET_ROWS = 12  # rows of the best-loss-within-budget table (thinned evenly)


def varying(report: Report) -> list[str]:
    """The `by` columns whose value differs between configs (the others go in the title)."""
    return [k for k in report.by if len({repr(c.key[k]) for c in report.configs}) > 1]


def label(report: Report, config: int) -> str:
    """A config's short name: its varying columns, `k=v, ...` (or "all" if none vary)."""
    key = report.configs[config].key
    return ", ".join(f"{k}={_value(key[k])}" for k in varying(report)) or "all"


def title(report: Report, skipped: Sequence[str] = ()) -> str:
    fixed = [k for k in report.by if k not in varying(report)]
    text = f"{len(report.trials)} trials in {len(report.configs)} configs"
    if fixed and report.configs:
        text += " (" + ", ".join(f"{k}={_value(report.configs[0].key[k])}" for k in fixed) + ")"
    if skipped:
        text += f"; {len(skipped)} files skipped (see warnings)"
    return text


def config_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the config table as display strings."""
    keys = varying(report)
    headers = ["#", *keys, "seeds", "val loss", "time (s)"]
    if report.target is not None:
        level = f"{1 - report.alpha:.0%}"
        headers += ["to target (s)", "p", f"upper {level}", f"< {report.target:g}"]
    headers += ["Pareto", "P(nd)", "apart"]
    rows = []
    for number, c in enumerate(report.configs, 1):
        row = [str(number), *(_value(c.key[k]) for k in keys)]
        row += [str(c.counts["completed"]), _mean_std(c.loss, 4), _mean_std(c.time)]
        if c.ttest is not None and c.to_target is not None:
            row += [_to_target(c), _num(c.ttest["p"], 3), _fixed(c.ttest["upper"], 4),
                    _decision(c)]
        row += ["★" if c.pareto else "", _fixed(c.p_nondominated, 2), _apart(c)]
        rows.append(row)
    return headers, rows


def budget_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the best-loss-within-budget line, at most BUDGET_ROWS rows."""
    points = report.budget
    if len(points) > BUDGET_ROWS:
        keep = np.unique(np.linspace(0, len(points) - 1, BUDGET_ROWS).round().astype(int))
        points = [points[i] for i in keep]
    headers = ["budget (s)", "best val loss", "config", "trial", "step"]
    rows = [[_num(p.time_s, 4), _fixed(p.val_loss, 4), label(report, p.config),
             f"{p.sweep}/{p.trial_id}", str(p.step)] for p in points]
    return headers, rows


def print_tables(report: Report, console: Console, skipped: Sequence[str] = ()) -> None:
    headers, rows = config_rows(report)
    table = Table(title=title(report, skipped), title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if 0 < i <= len(varying(report)) else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    headers, rows = budget_rows(report)
    budget = Table(title="Best val loss within a training-time budget (any curve point)",
                   title_justify="left")
    for h in headers:
        budget.add_column(h)
    for row in rows:
        budget.add_row(*row)
    console.print(budget)


def markdown(report: Report, skipped: Sequence[str] = ()) -> str:
    parts = [f"**{title(report, skipped)}**", "", _md_table(*config_rows(report)), "",
             "**Best val loss within a training-time budget (any curve point)**", "",
             _md_table(*budget_rows(report))]
    return "\n".join(parts) + "\n"


def csv_text(report: Report) -> str:
    """One row per config, every number at full precision (empty = not defined)."""
    records = [_flat(c) for c in report.configs]
    out = io.StringIO()
    fields = list(records[0]) if records else list(report.by)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return out.getvalue()


def json_text(report: Report, skipped: Sequence[str] = ()) -> str:
    return json.dumps({**report.to_dict(), "skipped": list(skipped)}, indent=2) + "\n"


def stats_text(summary: Summary, ttest: TTest) -> str:
    """The record-claim summary of hand-typed numbers, one statement a line."""
    s, t = summary.at(0), ttest.at(0)
    level = f"{1 - t['alpha']:.0%}"
    lines = [
        f"n       {s['n']}",
        f"mean    {s['mean']:.6g}",
        f"median  {s['median']:.6g}",
        f"std     {_num(s['std'], 6)}   (sample, ddof=1)",
        f"min     {s['min']:.6g}",
        f"max     {s['max']:.6g}",
        f"t       {_num(t['t'], 6)}   (one-sided, H1: mean < {t['target']:g})",
        f"p       {_num(t['p'], 6)}",
        f"upper   {_num(t['upper'], 6)}   ({level} upper confidence bound of the mean)",
    ]
    if math.isnan(t["p"]):
        lines.append("result  no test: needs at least 2 values")
    else:
        verdict = "below" if t["reject"] else "not shown to be below"
        lines.append(f"result  mean is {verdict} {t['target']:g} at alpha {t['alpha']:g}")
    return "\n".join(lines) + "\n"


def _flat(c: ConfigResult) -> dict[str, Any]:
    row: dict[str, Any] = dict(c.key)
    row.update({f"n_{k}": v for k, v in c.counts.items()})
    for name, summary, ci in (("loss", c.loss, c.loss_ci), ("time_s", c.time, c.time_ci)):
        row.update({f"{name}_{k}": v for k, v in summary.items() if k != "n"})
        row[f"{name}_ci"] = ci
    if c.ttest is not None and c.to_target is not None:
        row.update({k if k in ("target", "alpha") else f"ttest_{k}": v
                    for k, v in c.ttest.items()})
        row.update({f"to_target_{k}": v for k, v in c.to_target.items()})
    row["pareto"] = c.pareto
    row["p_nondominated"] = c.p_nondominated
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)])


def _mean_std(summary: dict[str, Any], decimals: int | None = None) -> str:
    """`mean ± std` with a shared number of decimals (4 significant digits of the mean
    when `decimals` is None: 1408 ± 5, 103.2 ± 1.3, 4.532 ± 0.012)."""
    mean, std = summary["mean"], summary["std"]
    if summary["n"] == 0:
        return "-"
    if decimals is None:
        decimals = min(3, max(0, 3 - math.floor(math.log10(abs(mean))))) if mean else 3
    if math.isnan(std):
        return _fixed(mean, decimals)
    return f"{_fixed(mean, decimals)} ± {_fixed(std, decimals)}"


def _to_target(c: ConfigResult) -> str:
    t = c.to_target
    assert t is not None
    if t["reached"] == 0:
        return f"never (0/{t['of']})" if t["of"] else "-"
    return f"{_mean_std(t)} ({t['reached']}/{t['of']})"


def _decision(c: ConfigResult) -> str:
    assert c.ttest is not None
    return "n/a" if math.isnan(c.ttest["p"]) else ("yes" if c.ttest["reject"] else "no")


def _apart(c: ConfigResult) -> str:
    return ", ".join(f"{n} {o}" for o, n in c.counts.items() if o != "completed" and n)


def _num(x: float, digits: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}g}"


def _fixed(x: float, decimals: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{decimals}f}"


def _value(v: Any) -> str:
    return "-" if v is None else str(v)
