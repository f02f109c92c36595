"""`ablate`: one CLI whose subcommands are thin (parse, validate, call the package, print).

Bad input of any kind ends with one line naming the field or file and exit status 2.
Heavy imports (torch, ray) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeps.spec import SpecError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2, as argparse does)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def sweep_exists(storage: Path, name: str) -> bool:
    return (storage / name / "tuner.pkl").exists() or (storage / name / "curves").exists()


def cmd_sweep(args) -> int:
    from rich.console import Console

    from sweeps.spec import load_spec, resolve_data

    spec = load_spec(args.spec)
    storage = Path(args.storage or spec.storage)
    if sweep_exists(storage, spec.name):
        raise SpecError(f"{storage / spec.name}: a sweep named {spec.name!r} is already stored "
                        "there; resume it with `ablate resume`, or choose another --storage or name")
    data = resolve_data(spec, storage)
    console = Console(stderr=True)
    n = len(spec.trials())
    console.print(f"[bold]{spec.name}[/]: {n} trials x {spec.resources.workers} workers "
                  f"-> {storage / spec.name}")
    results = run_sweep(spec, storage, data, args.address, console)
    return finish(results, storage / spec.name, spec.target, console)


def run_sweep(spec, storage: Path, data: Path, address: str | None, console):
    from sweeps.progress import SweepProgress
    from sweeps.run import build_tuner, ray_session

    with ray_session(address):
        tuner = build_tuner(spec, storage, data, callbacks=[SweepProgress(list(spec.axes), console)])
        return tuner.fit()


def finish(results, folder: Path, target: float | None, console) -> int:
    """Say which trials failed (with the first line of their error), then print the report."""
    failed = [r for r in results if r.error is not None]
    for r in failed:
        first = str(r.error).strip().splitlines()[-1] if str(r.error).strip() else type(r.error).__name__
        console.print(f"[red]trial {r.path and Path(r.path).name} failed:[/] {first}")
    from results.cli import main as results_main
    report = ["report", str(folder)] + (["--target", str(target)] if target is not None else [])
    code = results_main(report)
    return 1 if failed or code else 0


def add_commands(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec on local Ray or a cluster")
    p.add_argument("spec", help="the sweep spec (TOML)")
    p.add_argument("--storage", help="storage root (default: the spec's, else ./runs)")
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://host:port")
    p.set_defaults(func=cmd_sweep)


def input_errors() -> tuple[type[BaseException], ...]:
    from model import ConfigError
    from results.cli import INPUT_ERRORS
    from results.curves import CurveError
    from trainer.data import DataError
    return (ConfigError, DataError, SpecError, CurveError, *INPUT_ERRORS)


def main(argv: list[str] | None = None) -> int:
    import results.cli
    import trainer.cli

    parser = Parser(prog="ablate", description="Ablation sweeps for LLM speedrun research.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_commands(sub)
    trainer.cli.add_commands(sub)
    results.cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except input_errors() as e:
        print(f"ablate: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ablate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
