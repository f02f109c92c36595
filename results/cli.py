"""The results subcommands of `ablate`: report, stats, import-logs. Thin: parse, validate,
call the package, print.

`add_commands` plugs them into another argparse program (sweeps/cli.py); `main` runs them
on their own. Bad input raises one of INPUT_ERRORS, whose message names the file or
option; the program prints it as one `ablate: ...` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np
from rich.console import Console

from ablate.results import render
from ablate.results.curves import CurveError, read_curve
from ablate.results.errors import InputError
from ablate.results.load import load_curves
from ablate.results.logs import import_logs, to_record_log
from ablate.results.report import build_report, jsonable
from ablate.results.stats import summarize, ttest_less
from ablate.results.trials import DEFAULT_BY

INPUT_ERRORS: tuple[type[Exception], ...] = (CurveError, InputError)
FORMATS = ("table", "markdown", "csv", "json")


def add_commands(subparsers: Any) -> None:
    """Add report, stats and import-logs to `subparsers` (from add_subparsers)."""
    report = subparsers.add_parser(
        "report", help="tables and plots of the curves under storage directories",
        description="Per config (trials differing only by seed): final val loss and training "
                    "time over seeds, time to target, t-test against the target, Pareto "
                    "frontier with P(non-dominated).")
    report.add_argument("dirs", nargs="+", metavar="DIR",
                        help="storage roots (searched for **/curves/*.parquet) or curve files")
    report.add_argument("--target", type=float, help="target val loss (e.g. 2.92, 3.28)")
    report.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of the test and intervals (default 0.05)")
    report.add_argument("--by", type=_column_list, default=DEFAULT_BY, metavar="COL,COL",
                        help="columns (or params keys) defining a config "
                             f"(default: {','.join(DEFAULT_BY)})")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--plot", type=Path, metavar="DIR", help="also write PNG plots here")
    report.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap resamples for P(non-dominated) (default 1000)")
    report.set_defaults(func=run_report)

    stats = subparsers.add_parser(
        "stats", help="record-claim statistics of numbers typed by hand",
        description="n, mean, median, std, min, max and the one-sided t-test that the mean "
                    "is below the target (scipy.stats.ttest_1samp, alternative='less').")
    stats.add_argument("values", nargs="+", type=float, metavar="VALUE")
    stats.add_argument("--target", type=float, required=True)
    stats.add_argument("--alpha", type=float, default=0.05)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=run_stats)

    logs = subparsers.add_parser(
        "import-logs", help="import published record logs as curve files",
        description="Parse `step:N/M val_loss:X train_time:Tms step_avg:Sms` lines into "
                    "<out>/<sweep>/curves/<trial>.parquet. Never overwrites.")
    logs.add_argument("files", nargs="+", type=Path, metavar="FILE")
    logs.add_argument("--out", type=Path, required=True, metavar="DIR")
    logs.add_argument("--sweep", default="records", help="sweep name (default: records)")
    logs.set_defaults(func=run_import_logs)

    export = subparsers.add_parser(
        "export-log", help="print a curve as a record log, to compare with published runs",
        description="Print `step:N/M val_loss:X train_time:Tms step_avg:Sms` lines for a curve "
                    "file, the format of modded-nanogpt's record logs.")
    export.add_argument("curve", type=Path, metavar="CURVE", help="one trial's curve file")
    export.set_defaults(func=run_export_log)


def run_report(args: argparse.Namespace) -> int:
    _check_alpha(args.alpha)
    if args.resamples < 1:
        raise InputError(f"--resamples: must be at least 1, not {args.resamples}")
    if args.plot is not None:
        try:
            args.plot.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--plot {args.plot}: cannot create that folder "
                             f"({e.strerror or e})") from None
    loaded = load_curves(args.dirs, lambdas=args.plot is not None)  # only plots need them
    skipped = [str(p) for p in loaded.problems]
    for problem in skipped:
        print(f"ablate: warning: skipped {problem}", file=sys.stderr)
    if loaded.table.num_rows == 0:
        why = f"{len(skipped)} skipped, see warnings" if skipped else \
            "looked for **/curves/*.parquet"
        raise InputError(f"{', '.join(map(str, args.dirs))}: no readable curve files ({why})")
    report = build_report(loaded.table, target=args.target, alpha=args.alpha, by=args.by,
                          resamples=args.resamples)
    if args.format == "table":
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
        render.print_tables(report, console, skipped)
    elif args.format == "markdown":
        sys.stdout.write(render.markdown(report, skipped))
    elif args.format == "csv":
        sys.stdout.write(render.csv_text(report))
    else:
        sys.stdout.write(render.json_text(report, skipped))
    if args.plot is not None:
        from ablate.results.plots import write_plots  # matplotlib only when asked for
        paths = write_plots(report, loaded.table, args.plot)
        print(f"ablate: wrote {len(paths)} plots to {args.plot}", file=sys.stderr)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    _check_alpha(args.alpha)
    bad = [v for v in args.values if not math.isfinite(v)]
    if bad:
        raise InputError(f"VALUE: {bad[0]} is not a finite number")
    values = np.array(args.values)
    summary = summarize(values)
    ttest = ttest_less(values, args.target, args.alpha)
    if args.json:
        data = {"summary": summary.at(0), "ttest": ttest.at(0)}
        print(json.dumps(jsonable(data), indent=2))
    else:
        sys.stdout.write(render.stats_text(summary, ttest))
    return 0


def run_import_logs(args: argparse.Namespace) -> int:
    for path in import_logs(args.files, args.out, args.sweep):
        print(path)
    return 0


def run_export_log(args: argparse.Namespace) -> int:
    sys.stdout.write(to_record_log(read_curve(args.curve)))
    return 0


class UsageError(InputError):
    """An argparse error (bad option or value) under `main`, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "ablate report" -> "report"
        raise UsageError(f"{command}: {message}" if command else message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one results command; bad input -> one `ablate: ...` line on stderr, status 2."""
    parser = _Parser(prog="ablate", description="Results of ablate sweeps.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except INPUT_ERRORS as e:
        print(f"ablate: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _column_list(text: str) -> tuple[str, ...]:
    columns = tuple(c.strip() for c in text.split(",") if c.strip())
    if not columns:
        raise argparse.ArgumentTypeError("expected column names separated by commas")
    return columns


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise InputError(f"--alpha: must be between 0 and 1, not {alpha}")


if __name__ == "__main__":
    raise SystemExit(main())
