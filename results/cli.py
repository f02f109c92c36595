"""The results commands of `ablate`: report, stats, import-logs, export-log. Thin: parse,
validate, call the package, print.

`add_commands` is what the results layer gives the `ablate` program (ablate.cli), which
also runs them alone as `python -m ablate.results`. Bad input is refused with an
AblateError (InputError, CurveError) whose message names the file or option; the CLI's
edge prints it as one `ablate: ...` line and exits with status 2. Only what the parsers
need is imported here (numpy, pyarrow and scipy load with the command that uses them), so
`ablate --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ablate.core.errors import printable
from ablate.core.files import check_out_folder
from ablate.results.errors import InputError
from ablate.results.formats import FORMATS, PLOT_FORMATS

MAX_RESAMPLES = 100_000  # P(non-dominated) to ~0.003; more only costs time and memory


def add_commands(subparsers: Any) -> None:
    """Add report, stats, import-logs and export-log to `subparsers` (from add_subparsers)."""
    add_report(subparsers)
    add_stats(subparsers)
    add_import_logs(subparsers)
    add_export_log(subparsers)


def add_report(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report", help="tables and plots of the curves under storage directories",
        description="Per config (trials whose params agree on every field but the seed and "
                    "run labels): final val loss and training time over distinct seeds, time "
                    "to target, t-test against the target, Pareto frontier with "
                    "P(non-dominated), and differences from a baseline config.")
    report.add_argument("dirs", nargs="+", metavar="DIR",
                        help="storage roots (searched for **/curves/*.parquet) or curve files")
    report.add_argument("--target", type=finite,
                        help="target val loss (e.g. 2.92, 3.28); default: the sweep's")
    report.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of the tests and intervals (default 0.05)")
    report.add_argument("--by", type=_column_list, metavar="FIELD,FIELD",
                        help="pool configs by these fields (params keys or columns) instead "
                             "of telling configs apart by every field")
    report.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE]",
                        help="compare every config with this one (Welch's and paired "
                             "t-tests); default: the sweep's, if it recorded one")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--plot", type=Path, metavar="DIR",
                        help="also write plots here (a folder that holds anything is refused "
                             "unless --force)")
    report.add_argument("--force", action="store_true",
                        help="with --plot: replace the plot files in an existing folder (other "
                             "files there are left alone)")
    report.add_argument("--plot-format", choices=PLOT_FORMATS, default="png",
                        help="file format of the plots (default png)")
    report.add_argument("--dpi", type=int, help="resolution of PNG plots (default 200)")
    report.add_argument("--lambdas", type=_number_list, metavar="N,N",
                        help="config numbers (#) to plot block lambdas for (default: every "
                             "config)")
    report.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap resamples for P(non-dominated) (default 1000)")
    report.set_defaults(func=run_report)


def add_stats(subparsers: Any) -> None:
    stats = subparsers.add_parser(
        "stats", help="record-claim statistics of numbers typed by hand",
        description="n, mean, median, std, min, max and the one-sided t-test that the mean "
                    "is below the target (scipy.stats.ttest_1samp, alternative='less').")
    stats.add_argument("values", nargs="+", type=float, metavar="VALUE")
    stats.add_argument("--target", type=finite, required=True)
    stats.add_argument("--alpha", type=float, default=0.05)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=run_stats)


def add_import_logs(subparsers: Any) -> None:
    logs = subparsers.add_parser(
        "import-logs", help="import published record logs (files or whole folders) as curves",
        description="Read every run of every log (folders are searched for *.txt, *.log, "
                    "*.out, *.stdout) into <out>/<sweep>/curves/<trial>.parquet, one trial "
                    "a run, with its source, record, variant, date, track and hardware as "
                    "params. A file that is no run log is skipped with its reason; copies of "
                    "a run are one trial; curves already there are never rewritten.")
    logs.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                      help="log files or folders (e.g. modded-nanogpt's records/)")
    logs.add_argument("--out", type=Path, required=True, metavar="DIR")
    logs.add_argument("--sweep", default="records", help="sweep name (default: records)")
    logs.add_argument("--strict", action="store_true",
                      help="refuse (exit 2, nothing written) at the first file to skip")
    logs.set_defaults(func=run_import_logs)


def add_export_log(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export-log", help="print a curve as a record log, to compare with published runs",
        description="Print `step:N/M val_loss:X train_time:Tms step_avg:Sms` lines for a curve "
                    "file, the format of modded-nanogpt's record logs.")
    export.add_argument("curve", type=Path, metavar="CURVE", help="one trial's curve file")
    export.set_defaults(func=run_export_log)


def run_report(args: argparse.Namespace) -> int:
    """Validate every option, build the report, refuse existing plot files, then print and
    draw: nothing is written when any input is bad."""
    if args.by is not None and "record" in args.by:  # imported record logs: history.py
        from ablate.results.history import run_history

        return run_history(args)
    from ablate.results import render
    from ablate.results.compare import BaselineChoice
    from ablate.results.report import build_report

    _check_alpha(args.alpha)
    if not 1 <= args.resamples <= MAX_RESAMPLES:
        raise InputError(f"--resamples: must be in 1..{MAX_RESAMPLES:,}, not {args.resamples}")
    if args.dpi is not None and not 10 <= args.dpi <= 2400:
        raise InputError(f"--dpi: must be between 10 and 2400, not {args.dpi}")
    if args.plot is not None:
        check_out_folder(args.plot, "--plot")
        refuse_existing_plots(args.plot, args.force)
    baseline = None if args.baseline is None else BaselineChoice.parse(args.baseline)
    report = build_report(args.dirs, target=args.target, baseline=baseline, alpha=args.alpha,
                          by=args.by, resamples=args.resamples,
                          lambdas=args.plot is not None)  # only plots need them
    plots = None
    if args.plot is not None:
        from ablate.results.plots import check_free, plan_plots  # matplotlib only when asked

        plots = plan_plots(report, args.plot, args.plot_format, args.lambdas)
        check_free(plots, args.force)
    for line in render.warning_lines(report):
        print(line, file=sys.stderr)
    render.write_report(report, sys.stdout, args.format)
    if plots is not None:
        from ablate.results.plots import draw_plots

        assert args.plot is not None  # plots are planned only with --plot
        paths = draw_plots(plots, args.plot, args.dpi)
        print(f"ablate: wrote {len(paths)} plots to {args.plot}", file=sys.stderr)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    _check_alpha(args.alpha)
    bad = [v for v in args.values if not math.isfinite(v)]
    if bad:
        raise InputError(f"VALUE: {bad[0]} is not a finite number")
    import numpy as np

    from ablate.core.files import jsonable
    from ablate.results import render
    from ablate.results.stats import summarize, ttest_less

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
    """One line per file skipped and per copy merged, then the sums (the last line)."""
    from ablate.results.logs import import_logs

    result = import_logs(args.paths, args.out, args.sweep, strict=args.strict)
    for skip in result.skipped:
        print(printable(f"skipped {skip}"))
    for copy, kept in result.copies:
        print(printable(f"merged {copy}: the same run as {kept}"))
    print(printable(f"{result.summary()} -> {Path(args.out) / args.sweep / 'curves'}"))
    return 0


def run_export_log(args: argparse.Namespace) -> int:
    from ablate.results.curves import read_curve
    from ablate.results.logs import to_record_log

    sys.stdout.write(to_record_log(read_curve(args.curve), source=str(args.curve)))
    return 0


def finite(text: str) -> float:
    """A finite number: a target of inf or nan would make every mean "below" it, or none."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


finite.__name__ = "finite number"  # what argparse's message calls the expected type


def _column_list(text: str) -> tuple[str, ...]:
    columns = tuple(c.strip() for c in text.split(",") if c.strip())
    if not columns:
        raise argparse.ArgumentTypeError("expected column names separated by commas")
    return columns


def _number_list(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected config numbers separated by commas, "
                                         f"got {text!r}") from None
    if not numbers:
        raise argparse.ArgumentTypeError("expected config numbers separated by commas")
    return numbers


def refuse_existing_plots(folder: Path, force: bool) -> None:
    """A plot folder that exists and holds anything is refused (its plots would be
    replaced) unless `force`; an empty one is taken."""
    if not force and folder.is_dir() and any(folder.iterdir()):
        raise InputError(f"--plot {folder}: already exists; pass --force to replace the plots "
                         "in it (other files there are left alone)")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise InputError(f"--alpha: must be between 0 and 1, not {alpha}")
