"""`ablate search-steps SPEC.toml`: the fewest steps whose mean final val loss beats the target.

Thin, like every subcommand: load and check the spec, open the study, settle it with the
curves on disk, run the search on Ray (`searcher`), print the verdicts and the answer. The
method is in `method` and docs/search.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ablate.sweeps.search.spec import SearchSpec, load_search_spec
from ablate.sweeps.spec import SpecError

if TYPE_CHECKING:  # optuna and scipy load with the command, not with `ablate --help`
    from ablate.sweeps.search.method import Probe, StepSearch, Verdict

STYLE = {"pass": "green", "fail": "red"}


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search-steps", help="find the fewest steps whose mean final val loss beats the target",
        description="A noisy bisection over the step grid, driven through an Optuna study "
                    "(resumable, watchable with optuna-dashboard); each probe is a Ray Tune "
                    "trial of the spec's config at one step count and seed.")
    p.add_argument("spec", help="the search spec (TOML: [sweep], [resources], [fixed], [search])")
    p.add_argument("--storage", help="storage root (default: the spec's, else ./runs)")
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://host:port")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="Optuna RDB storage URL (default: sqlite:///<storage>/<name>/optuna.db)")
    p.set_defaults(func=cmd_search_steps)


def cmd_search_steps(args) -> int:
    import optuna

    from ablate.sweeps import tracking
    from ablate.sweeps.plan import check_memory
    from ablate.sweeps.search.method import StepSearch
    from ablate.sweeps.search.searcher import run_search
    from ablate.sweeps.search.study import (
        check_url,
        default_url,
        open_study,
        open_verdicts,
        settle,
        shown,
        study_name,
        verdicts_name,
    )
    from ablate.sweeps.storage import SPEC_FILE, TUNE_FILES, resolve_data
    from ablate.sweeps.tuner import check_fits, ray_session

    spec = load_search_spec(args.spec)
    if args.optuna_storage is not None:
        check_url(args.optuna_storage)  # before the corpus or the folder is written
    check_memory(spec.sweep, embedded=not args.address)
    tracking.check(spec.sweep.tracking, str(Path(args.storage or spec.sweep.storage) / spec.name))
    if "://" in (args.storage or spec.sweep.storage):
        raise SpecError(f"{args.storage or spec.sweep.storage}: a step search needs a local (or "
                        "mounted) storage folder: its curves and default SQLite study live there")
    storage = Path(args.storage or spec.sweep.storage)
    folder = storage / spec.name
    console = Console(stderr=True)
    if any((folder / f).exists() for f in (*TUNE_FILES, SPEC_FILE)):
        raise SpecError(f"{folder}: a sweep named {spec.name!r} is stored there; "
                        "choose another --storage or sweep.name")
    # Ray first: a gang that can never be placed is refused before anything is written
    with ray_session(args.address):
        waiting = check_fits(spec.sweep, embedded=not args.address)
        if waiting:
            console.print(f"[yellow]{waiting}[/]")
        data = resolve_data(spec.sweep, storage)  # bad data is refused before a study exists
        if args.optuna_storage is None:
            folder.mkdir(parents=True, exist_ok=True)
        url = args.optuna_storage or default_url(folder)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_study(url, spec)
        recovered = settle(study, spec, folder / "curves")
        search = StepSearch(spec.search, study, open_verdicts(url, spec))
        console.print(f"[bold]{spec.name}[/]: steps {spec.search.min_steps}..{spec.search.max_steps}"
                      f" by {spec.search.granularity}, target {spec.search.target}; "
                      f"{search.trials} trials done" + (f" ({recovered} from curves)" if recovered else "")
                      + f"; studies {study_name(spec)!r} (probes) and {verdicts_name(spec)!r} (its best "
                      f"trial: the answer) in {shown(url)} -> {folder}")
        failed: list[str] = []
        if not search.finished:
            failed = run_search(spec, storage, data, search, on_probe=_progress(console)).failed
    for trial_id in failed:
        console.print(f"[red]trial {trial_id} failed[/]: see {folder / 'search'}; "
                      "run the same command again to retry it")
    Console().print(render(spec, search))
    if not (search.finished or failed):  # Tune returned early: Ctrl-C or SIGTERM
        print(f"ablate: interrupted: {search.trials} trials asked, the search goes on; run the "
              "same command again to continue", file=sys.stderr)
        return 130
    return 1 if failed else 0


def _progress(console: Console):
    def on_probe(probe: Probe, trial_id: str, loss: float | None, verdict: Verdict | None):
        where = f"{probe.steps} steps, seed {probe.seed} ({trial_id})"
        if verdict is None:
            console.print(f"  start  {where}")
        elif loss is None:
            console.print(f"  [red]failed[/] {where}")
        else:
            console.print(f"  done   {where}: val loss {loss:.4f}; {probe.steps} steps: "
                          f"n={verdict.n} mean {verdict.mean:.4f} p={_num(verdict.p, '.3g')} "
                          f"-> {verdict.decision}")
    return on_probe


def render(spec: SearchSpec, search: StepSearch) -> Table:
    """The probes with their statistics, and the answer as the caption."""
    s = spec.search
    table = Table(title=f"{spec.name}: fewest steps with mean final val loss < {s.target} "
                        f"(one-sided t-test, alpha {s.alpha})")
    for col in ("steps", "n", "mean", "std", "t", "p", "decision"):
        table.add_column(col, justify="left" if col == "decision" else "right")
    for v in search.verdicts():
        mark = " (answer)" if search.answered and v.steps == search.answer else ""
        table.add_row(str(v.steps), str(v.n), _num(v.mean, ".4f"), _num(v.std, ".4f"),
                      _num(v.t, ".2f"), _num(v.p, ".3g"),
                      f"[{STYLE.get(v.decision, 'yellow')}]{v.decision}[/]{mark}")
    table.caption = answer_line(spec, search)
    return table


def answer_line(spec: SearchSpec, search: StepSearch) -> str:
    s = spec.search
    if search.answered and search.answer is not None:
        return f"answer: {search.answer} steps ({search.trials} trials)"
    if search.answered:
        return f"answer: none; {s.max_steps} steps do not beat {s.target} ({search.trials} trials)"
    lo, hi = search.bracket()
    span = (f"{search.grid[lo + 1]}..{search.grid[hi]}" if hi < len(search.grid)
            else f"{search.grid[lo + 1]}..{s.max_steps} (or none)")
    if not search.spent:  # interrupted (Ctrl-C, SIGTERM) or stopped by a failed probe
        return (f"undecided so far ({search.trials} trials): the answer lies in {span}; run the "
                "same command again to continue")
    return (f"undecided after {search.trials} trials (search.max_trials = {s.max_trials}): the "
            f"answer lies in {span}; raise search.max_trials and run again to continue")


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or math.isnan(x) else format(x, fmt)
