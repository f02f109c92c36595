"""`ablate inspect`: what the trained models learned. Thin: parse, call the package, print.

`add_commands` is what the analysis layer gives the `ablate` program (ablate.cli), which
also runs it alone as `python -m ablate.analysis`. A trial that cannot be read is named on
one line of stderr and skipped; if none can be read, or the input is bad, the command
raises an AblateError (InputError, CurveError, WeightsError, DataError, TrainConfigError),
which the CLI's edge prints as one line with exit status 2. torch loads with the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ablate.results.formats import PLOT_FORMATS


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "inspect", help="what the extra embeddings learned (reads saved weights)",
        description="Per trial and per config (mean ± std over seeds): final mixing weights, "
                    "the logit lens of each input table and of each table's contribution at "
                    "each layer against the validation data's next-token statistics, nearest "
                    "neighbours of tokens in each table, and per-token lambdas.")
    p.add_argument("paths", nargs="+", metavar="DIR_OR_TRIAL",
                   help="storage roots or sweep folders (every curves/*.parquet below), "
                        "curve files, or weights files")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="validation shards (default: each trial's own data folder)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--plot", type=Path, metavar="DIR", help="also write plots here")
    p.add_argument("--plot-format", choices=PLOT_FORMATS, default="png")
    p.add_argument("--tokens", nargs="+", metavar="TOKEN",
                   help="tokens whose nearest neighbours to show: ids (97, #97), one "
                        "character of the byte corpus, or one GPT-2 token's text with "
                        "tiktoken (default: the 5 most frequent)")
    p.add_argument("--max-tokens", type=_positive, default=10_000_000,
                   help="validation tokens read at most (default 10M)")
    p.add_argument("--max-rows", type=_positive, default=8192,
                   help="the most frequent tokens analysed by the lens (default 8192)")
    p.set_defaults(func=run_inspect)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def run_inspect(args) -> int:
    from ablate.analysis.inspection import inspect
    from ablate.analysis.render import write_inspection
    from ablate.analysis.trials import load_trials
    from ablate.core.files import check_out_folder
    from ablate.results.errors import InputError

    if args.plot is not None:  # before any weights are read
        check_out_folder(args.plot, "--plot")
    trials, problems = load_trials(args.paths)  # the lens functions run under no_grad
    insp = inspect(trials, problems, data=args.data, tokens=args.tokens,
                   max_tokens=args.max_tokens, max_rows=args.max_rows)
    if not insp.trials:  # a refusal is one line: the first trial's reason, and the count
        if not insp.problems:
            raise InputError(f"{', '.join(map(str, args.paths))}: no trial could be read "
                             "(no curves/*.parquet there)")
        more = len(insp.problems) - 1
        raise InputError(f"{insp.problems[0]}; no trial could be read"
                         + (f" ({more} more skipped)" if more else ""))
    for line in insp.problems:
        print(f"ablate: skipped {line}", file=sys.stderr)
    if args.plot is not None:  # matplotlib only when asked
        from ablate.analysis.plots import check_free

        check_free(insp, args.plot, args.plot_format)
    write_inspection(insp, sys.stdout, args.format)
    if args.plot is not None:
        from ablate.analysis.plots import write_plots

        for path in write_plots(insp, args.plot, args.plot_format):
            print(f"wrote {path}", file=sys.stderr)
    return 0

