"""`ablate inspect`: what the trained models learned. Thin: parse, call the package, print.

`add_commands` plugs it into another argparse program (sweeps/cli.py); `main` (also
`python -m ablate.analysis`) runs it on its own. A trial that cannot be read is named on
one line of stderr and skipped; exit status 2 if none can be read or the input is bad.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ablate.results.render import PLOT_FORMATS


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
    from ablate.results.cli import check_plot_folder

    if args.plot is not None:  # before any weights are read
        check_plot_folder(args.plot)
    trials, problems = load_trials(args.paths)  # the lens functions run under no_grad
    insp = inspect(trials, problems, data=args.data, tokens=args.tokens,
                   max_tokens=args.max_tokens, max_rows=args.max_rows)
    for line in insp.problems:
        print(f"ablate: skipped {line}", file=sys.stderr)
    if not insp.trials:
        print("ablate: no trial could be read", file=sys.stderr)
        return 2
    if args.plot is not None:  # matplotlib only when asked
        from ablate.analysis.plots import check_free

        check_free(insp, args.plot, args.plot_format)
    write_inspection(insp, sys.stdout, args.format)
    if args.plot is not None:
        from ablate.analysis.plots import write_plots

        for path in write_plots(insp, args.plot, args.plot_format):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def input_errors() -> tuple[type[Exception], ...]:
    from ablate.model.config import ConfigError
    from ablate.results.cli import INPUT_ERRORS
    from ablate.trainer.data import DataError
    from ablate.trainer.weights import WeightsError
    return (*INPUT_ERRORS, ConfigError, DataError, WeightsError)


def main(argv: list[str] | None = None) -> int:
    from ablate.results.errors import run_command

    parser = argparse.ArgumentParser(prog="python -m ablate.analysis")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args, input_errors())
