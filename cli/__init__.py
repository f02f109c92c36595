"""`ablate`: the one command, and the one edge where a refusal becomes one line.

The root of the program, above every layer and owned by none: it builds the argparse root
and asks each layer for its commands (`add_commands(subparsers)` in sweeps.cli, trainer.cli,
results.cli and analysis.cli), so that no layer reaches another through its CLI. The same
root runs one layer's commands alone: `python -m ablate.results`, `ablate.trainer` and
`ablate.analysis` call `main` with that layer only.

The edge, `run_command`: an AblateError (bad input, whichever layer refused it: see
core/errors.py) or an expected failure of the world (a full disk, a permission, a corrupt
Parquet file, ...) becomes one `ablate: <message>` line on stderr and exit status 2; anything
else is a bug and keeps its traceback. A command line argparse cannot read is a UsageError,
with the nearest command or option to a mistyped one.

The layers' cli modules import only what their parsers need (heavy imports happen inside
the commands), so `ablate --help` answers at once.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any, NoReturn

from ablate.core.errors import AblateError, describe, did_you_mean, expected, refuse

DISTRIBUTION = "ablate-sweeps"  # on PyPI; the command and the import root are `ablate`
LAYERS = ("sweeps", "trainer", "results", "analysis")  # whose commands, in `--help`'s order
DESCRIPTION = "Ablation sweeps for LLM speedrun research."


class UsageError(AblateError):
    """A command line that argparse cannot read: an unknown command or option, a bad value."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError (one line at the edge, exit status 2)
    naming the command, with the nearest command or option to a mistyped one."""

    def __init__(self, *args: Any, root: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.root = self.prog if root is None else root  # the program's name, before the command

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", functools.partial(Parser, root=self.root))
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(self.root).strip()  # "ablate report" -> "report"
        text = f"{message}{self._suggestion(message)}"
        raise UsageError(f"{command}: {text}" if command else text)

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice[1], re.findall(r"'([^']*)'", choice[2]))
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown[1].startswith("-"):
            parsers = [self, *(c for a in self._actions if isinstance(a, argparse._SubParsersAction)
                               for c in a.choices.values())]
            options = {o for p in parsers for action in p._actions for o in action.option_strings}
            return did_you_mean(unknown[1].split("=")[0], options)
        return ""


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command (`args.func(args)`). An AblateError, or an expected failure of
    the world (core.errors.expected), becomes one `ablate: <message>` line on stderr and exit
    status 2; anything else is a bug and keeps its traceback."""
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `ablate report ... | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except AblateError as e:
        return refuse(str(e))
    except Exception as e:
        if expected(e):
            return refuse(describe(e))
        raise


def build_parser(layers: Sequence[str] = LAYERS, prog: str = "ablate",
                 description: str = DESCRIPTION) -> Parser:
    """The argparse root over the commands each of `layers` adds (its cli.add_commands)."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action=Version)
    commands = parser.add_subparsers(dest="command", required=True)
    for layer in layers:
        import_module(f"ablate.{layer}.cli").add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, layers: Sequence[str] = LAYERS,
         prog: str = "ablate", description: str = DESCRIPTION) -> int:
    """Parse `argv` (default: the process's arguments) over the commands of `layers`, run
    the command through the edge, and return its exit status."""
    parser = build_parser(layers, prog, description)
    try:
        return run_command(parser.parse_args(argv))
    except UsageError as e:
        return refuse(str(e))
    except KeyboardInterrupt:
        print("ablate: interrupted", file=sys.stderr)
        return 130


class Version(argparse.Action):
    """--version: argparse's own, but the installed version is looked up only when asked
    (importlib.metadata would cost every `ablate --help` a tenth of its time)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS,
                 help: str = "show program's version number and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any,
                 option_string: str | None = None) -> NoReturn:
        print(f"ablate {version()}")
        parser.exit()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout without installing
        return "(not installed)"
