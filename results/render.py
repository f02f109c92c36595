"""Text output of a report: a rich table for the terminal, Markdown, CSV and JSON.

The terminal and Markdown tables show what a reader compares at a glance (config fields
that vary, seeds, loss mean ± std, time, time to target, the test, Pareto, and the
differences from a baseline); CSV and JSON carry every number at full precision for other
tools. `write_report` is the one entry point for all four formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablate.core.errors import printable
from ablate.core.states import COMPLETED
from ablate.results.configs import config_label, display
from ablate.results.formats import FORMATS
from ablate.results.report import ConfigResult, Report
from ablate.results.stats import Summary, TTest

TITLE_FIELDS = 8  # constant fields named in a table's title; JSON has them all
BUDGET_ROWS = 12  # rows of the best-loss-within-budget table (thinned evenly)
MIN_WIDTH = 20  # a COLUMNS below this is ignored: no table fits, so it is surely stale


def write_report(report: Report, stream: TextIO, format: str = "table",
                 width: int | None = None) -> None:
    """Print `report` to `stream` as a table (rich, `width` columns: see `table_width`),
    markdown, csv or json. Warnings are not printed: see `warning_lines`."""
    if format == "table":
        print_tables(report, Console(file=stream, width=table_width(stream, width)))
    elif format == "markdown":
        stream.write(markdown(report))
    elif format == "csv":
        stream.write(csv_text(report))
    elif format == "json":
        stream.write(json_text(report))
    else:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")


def table_width(stream: TextIO, width: int | None = None,
                environ: Mapping[str, str] | None = None) -> int | None:
    """Columns a table may take: `width` if given, else `COLUMNS` (a whole number of at least
    MIN_WIDTH; anything else is ignored, as shells leave it unset or stale), else the
    terminal's own width (None: rich asks it), else 80 (a pipe or a file has no width, and
    80 reads anywhere)."""
    if width is not None:
        return width
    columns = (os.environ if environ is None else environ).get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) >= MIN_WIDTH:
        return int(columns)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):  # a stream with no file behind it
        pass
    return 80


def warning_lines(report: Report) -> list[str]:
    """What the report has to warn about (skipped files, seeds counted once, ignored
    metadata), one `ablate: warning: ...` line each, for stderr."""
    return [printable(line) for line in [f"ablate: warning: skipped {s}" for s in report.skipped]
            + [f"ablate: warning: {w}" for w in report.warnings]]


def label(report: Report, config: int) -> str:
    """A config's name: its shown fields, `k=v, ...` (or "all" if none vary)."""
    return config_label(report.fields, report.groups.keys[config])


def title(report: Report) -> str:
    text = f"{len(report.trials)} trials in {len(report.configs)} configs"
    if report.by is not None:
        text += f" pooled by {', '.join(report.by)}"
    if report.fixed and report.configs:
        shown = [f"{k}={'None' if v is None else display(v)}"
                 for k, v in list(report.fixed.items())[:TITLE_FIELDS]]
        more = len(report.fixed) - len(shown)
        text += " (" + ", ".join(shown) + (f", and {more} more fields the same in every "
                                            "config: --format json lists them" if more else "") + ")"
    if report.duplicates:
        count = len(report.duplicates)
        text += f"; {count} seed{'s' if count > 1 else ''} of a config ran more than once " \
                "(counted once, see warnings)"
    if report.skipped:
        text += f"; {len(report.skipped)} files skipped (see warnings)"
    return text


def config_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the config table as display strings."""
    keys = list(report.fields)
    headers = ["#", *keys, "seeds", "val loss", "time (s)"]
    if report.target is not None:
        level = f"{1 - report.alpha:.0%}"
        headers += ["to target (s)", "p", f"upper {level}", f"< {report.target:g}"]
    headers += ["Pareto", "P(nd)", "apart"]
    rows = []
    for number, c in enumerate(report.configs, 1):
        row = [str(number), *(display(c.key[k]) for k in keys)]
        row += [_seeds(c), _mean_std(c.loss, 4), _mean_std(c.time)]
        if c.ttest is not None and c.to_target is not None:
            row += [_to_target(c), _test(c.ttest["p"]), _test(c.ttest["upper"], 4, fixed=True),
                    _decision(c)]
        row += ["★" if c.pareto else "", _test(c.p_nondominated, 2, fixed=True), _apart(c)]
        rows.append(row)
    return headers, rows


def baseline_title(report: Report) -> str:
    assert report.baseline is not None
    level = f"{1 - report.alpha:.0%}"
    return (f"Against baseline #{report.baseline + 1} ({label(report, report.baseline)}): "
            f"config minus baseline, two-sided {level} intervals; Welch's t-test, and the "
            "paired t-test where both ran the same seeds")


def baseline_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the comparison with the baseline: a Welch row per config, and a
    paired row where the seeds pair."""
    level = f"{1 - report.alpha:.0%}"
    keys = list(report.fields)
    headers = ["#", *keys, "test", "n", "Δ loss", f"{level} CI", "p", "Δ time (s)",
               f"{level} CI", "p"]
    rows = []
    if report.baseline is None:
        return headers, rows
    n_base = report.configs[report.baseline].loss["n"]
    for number, c in enumerate(report.configs, 1):
        vs = c.vs_baseline
        if vs is None:
            continue
        front = [str(number), *(display(c.key[k]) for k in keys)]
        tests = [("Welch", f"{c.loss['n']} vs {n_base}", "welch")]
        if vs["pairs"] is not None:
            tests.append(("paired", f"{vs['pairs']} pairs", "paired"))
        for name, n, test in tests:
            row = [*front, name, n]
            for side, decimals in (("loss", 4), ("time_s", None)):
                result = vs[side][test]
                digits = decimals if decimals is not None else _decimals(c.time["mean"])
                row += [_signed(vs[side]["delta"], digits),
                        _interval(result["low"], result["high"], digits), _test(result["p"])]
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


def print_tables(report: Report, console: Console) -> None:
    """The config, baseline and budget tables, their columns in the order of `config_rows`,
    `baseline_rows` and `budget_rows` (the Markdown tables' order too)."""
    shown = list(range(1, len(report.fields) + 1))
    headers, rows = config_rows(report)
    groups = [[headers.index(h) for h in names if h in headers] for names in (
        ["seeds", "val loss", "time (s)"], headers[-7:-3] if report.target is not None else [],
        ["Pareto", "P(nd)", "apart"])]
    print_fitted(console, title(report), headers, rows, labels=shown, groups=groups,
                 keep_labels=True)
    if report.baseline is not None:
        headers, rows = baseline_rows(report)
        n = len(shown)
        print_fitted(console, baseline_title(report), headers, rows, labels=shown,
                     keys=[n + 1, n + 2], groups=[[n + 3, n + 4, n + 5], [n + 6, n + 7, n + 8]])
    headers, rows = budget_rows(report)
    print_fitted(console, "Best val loss within a training-time budget (any curve point)",
                 headers, rows, labels=[2], groups=[[1], [3, 4]])


LABEL_MIN = 12  # a label column folds down to this many characters


def print_fitted(console: Console, caption: str, headers: list[str], rows: list[list[str]], *,
                 labels: Sequence[int] = (), keys: Sequence[int] = (),
                 groups: Sequence[Sequence[int]] = (), keep_labels: bool = False) -> None:
    """Print a table within the console's width without cutting a number. Label columns fold
    onto more lines between words (a value such as 0.0243 is one word, kept whole); number
    columns keep their longest cell whole; headers wrap between words. A table still too
    wide is printed in parts, each repeating the first column (`#`) and the `keys`, with the
    column `groups` packed into as few parts as fit; the labels go with the first part only,
    or, where even that is too wide, in a part of their own (`keep_labels`: the table that
    names the configs) or are left to `#` (a table read beside that one). A part that cannot
    fit (one column with the lead is wider than the console) is printed as wide as it needs.
    Within a part the columns keep the order of `headers`, so one table printed whole reads
    as its Markdown twin."""
    first = [0] if headers and 0 not in labels else []
    lead = first + list(keys)
    parts, labels, caption = _fitted_parts(_Widths(headers, rows, list(labels)), console.width, lead,
                                           groups, keep_labels or not first, caption)
    widths = _Widths(headers, rows, labels)
    for number, part in enumerate(parts or [[]]):
        _print_part(console, widths, caption if number == 0 else None, sorted(lead + part), keys)


@dataclass
class _Widths:
    """The widths a table's columns need: a label its longest word (it folds between words,
    down to LABEL_MIN), a number its longest cell, a header its longest word."""
    headers: list[str]
    rows: list[list[str]]
    labels: list[int]

    def word(self, i: int) -> int:
        return max([len(word) for r in self.rows for word in r[i].split()], default=0)

    def cell(self, i: int, whole_header: bool = False) -> int:
        longest = max([len(r[i]) for r in self.rows], default=0)
        if i in self.labels:
            return max(min(max(longest, len(self.headers[i])), LABEL_MIN), self.word(i))
        return max(longest, len(self.headers[i]) if whole_header else _header_width(self.headers[i]))

    def need(self, cols: list[int], whole_headers: bool = False) -> int:
        """The table's width with these columns (rich's borders and padding included)."""
        return sum(self.cell(i, whole_headers) for i in cols) + 3 * len(cols) + 1


def _fitted_parts(widths: _Widths, width: int, lead: list[int], groups: Sequence[Sequence[int]],
                  labels_apart: bool, caption: str) -> tuple[list[list[int]], list[int], str]:
    """The columns of each part (besides the `lead`), the label columns still shown, and the
    caption. `labels_apart`: labels too wide to go with the first part get a part of their own
    rather than being left to `#`."""
    need, labels = widths.need, widths.labels
    units: list[list[int]] = []  # what is kept together: a group, or, too wide, each column
    for group in [list(g) for g in groups if g]:
        units += [group] if need(lead + group) <= width else [[i] for i in group]
    if labels and need(lead + labels + (units[0] if units else [])) <= width:
        units = [labels + units[0], *units[1:]] if units else [labels]
    elif labels and labels_apart:
        units = ([labels] if need(lead + labels) <= width else [[i] for i in labels]) + units
    elif labels:
        labels = []  # the numbers in `#` name the configs, as in the table above
        caption += " (# as in the configs table)"
    parts: list[list[int]] = []
    for unit in units:
        if parts and need(lead + parts[-1] + unit) <= width:
            parts[-1] += unit
        else:
            parts.append(list(unit))
    return parts, labels, caption


def _print_part(console: Console, widths: _Widths, title: str | None, cols: list[int],
                keys: Sequence[int]) -> None:
    """One part of a fitted table: its columns `cols`, titled (the first part) or not."""
    width, labels = console.width, widths.labels
    # cells as plain Text: a value from a curve is shown as it is, never read as markup
    table = Table(title=Text(printable(title)) if title is not None else None, title_justify="left")
    # Number columns get a fixed width (rich's own squeeze would crop a table whose
    # columns have minimums): whole headers where they fit, else their longest word.
    whole = widths.need([i for i in cols if i not in labels], whole_headers=True) + sum(
        widths.cell(i) + 3 for i in cols if i in labels) <= width
    for i in cols:
        if i in labels:  # rich gives a label what the numbers leave, folding it
            table.add_column(widths.headers[i], justify="left", overflow="fold", min_width=widths.word(i))
        else:
            table.add_column(widths.headers[i], justify="left" if i in keys else "right",
                             overflow="fold", width=widths.cell(i, whole))
    for row in widths.rows:
        table.add_row(*(Text(printable(row[i])) for i in cols))
    # One column and the lead still too wide: the numbers win over the width.
    out = console if widths.need(cols) <= width else Console(file=console.file, width=widths.need(cols))
    out.print(table)


def _header_width(header: str) -> int:
    """Headers wrap between words: the longest word is what a column needs for its header."""
    return max(len(word) for word in header.split()) if header.strip() else 0


def markdown(report: Report) -> str:
    parts = [f"**{printable(title(report))}**", "", md_table(*config_rows(report)), ""]
    if report.baseline is not None:
        parts += [f"**{baseline_title(report)}**", "", md_table(*baseline_rows(report)), ""]
    parts += ["**Best val loss within a training-time budget (any curve point)**", "",
              md_table(*budget_rows(report))]
    return "\n".join(parts) + "\n"


def csv_text(report: Report) -> str:
    """One row per config, every number at full precision (empty = not defined)."""
    records = [_flat(c, number, report.baseline is not None)
               for number, c in enumerate(report.configs, 1)]
    out = io.StringIO()
    fields = list(records[0]) if records else ["config", *report.fields]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return out.getvalue()


def json_text(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


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


def _flat(c: ConfigResult, number: int, with_baseline: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"config": number, **c.key, "n": c.loss["n"]}
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
    if with_baseline:
        row.update(_flat_baseline(c.vs_baseline))
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


def _flat_baseline(vs: dict[str, Any] | None) -> dict[str, Any]:
    """Columns of the comparison with the baseline, present (maybe empty) in every row."""
    row: dict[str, Any] = {"baseline": None if vs is None else vs["baseline"],
                           "pairs": None if vs is None else vs["pairs"]}
    for side in ("loss", "time_s"):
        row[f"{side}_delta"] = None if vs is None else vs[side]["delta"]
        for test in ("welch", "paired"):
            result = None if vs is None else vs[side][test]
            for k in ("t", "df", "p", "low", "high"):
                row[f"{side}_{test}_{k}"] = None if result is None else result[k]
    return row


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(printable(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)])


def _decimals(mean: float) -> int:
    """Decimals giving 4 significant digits of `mean` (at most 3): 1408, 103.2, 4.532."""
    if not mean or not math.isfinite(mean):
        return 3
    return min(3, max(0, 3 - math.floor(math.log10(abs(mean)))))


def _mean_std(summary: dict[str, Any], decimals: int | None = None) -> str:
    """`mean ± std` with a shared number of decimals (4 significant digits of the mean
    when `decimals` is None: 1408 ± 5, 103.2 ± 1.3, 4.532 ± 0.012)."""
    mean, std = summary["mean"], summary["std"]
    if summary["n"] == 0:
        return "-"
    if decimals is None:
        decimals = _decimals(mean)
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


def _seeds(c: ConfigResult) -> str:
    """Replicates, and the completed trials behind them when a seed ran more than once."""
    n, runs = c.loss["n"], c.counts[COMPLETED]
    return f"{n} ({runs} runs)" if runs > n else str(n)


def _test(x: float | None, digits: int = 3, fixed: bool = False) -> str:
    """A test's number; `n/a` where it is undefined (fewer than 2 replicates)."""
    if x is None or math.isnan(x):
        return "n/a"
    return _fixed(x, digits) if fixed else _num(x, digits)


def _signed(x: float, decimals: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:+.{decimals}f}"


def _interval(low: float, high: float, decimals: int) -> str:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "n/a"
    return f"[{low:+.{decimals}f}, {high:+.{decimals}f}]"


def _apart(c: ConfigResult) -> str:
    return ", ".join(f"{n} {o}" for o, n in c.counts.items() if o != COMPLETED and n)


def _num(x: float, digits: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}g}"


def _fixed(x: float, decimals: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{decimals}f}"



