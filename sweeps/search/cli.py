"""`ablate search-steps SPEC.toml`: the fewest steps whose mean final val loss beats the target.

Thin, like every subcommand: load and check the spec, open the study, settle it with the
curves on disk, run the search on Ray (`searcher`), print the verdicts and the answer. The
method is in `method` and docs/search.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ablate.sweeps.search.spec import SearchSpec, load_search_spec
from ablate.sweeps.spec import SpecError

if TYPE_CHECKING:  # optuna and scipy load with the command, not with `ablate --help`
    from ablate.sweeps.search.method import Probe, StepSearch, Verdict

STYLE = {"pass": "green", "fail": "red"}


def add_commands(subparsers: Any) -> None:
    from ablate.sweeps.cli import add_tracking_flags

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
    p.add_argument("-s", "--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override the spec, e.g. -s search.max_trials=60 -s fixed.lr_muon=0.04")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and show the step grid, seeds, budget, resources and where the "
                        "study and curves go; start nothing, write nothing")
    p.add_argument("--json-log", action="store_true",
                   help="no live lines: one JSON object per event on stdout")
    add_tracking_flags(p, "probe", "search")
    p.set_defaults(func=cmd_search_steps)


def cmd_search_steps(args) -> int:
    from ablate.sweeps import tracking
    from ablate.sweeps.cli import tracking_settings
    from ablate.sweeps.plan import check_data_fits, check_memory
    from ablate.sweeps.search.study import check_url, default_url
    from ablate.sweeps.storage import SPEC_FILE, TUNE_FILES
    from ablate.trainer.config import parse_assignments

    settings = parse_assignments(args.set or [], flag="-s") | tracking_settings(args)
    spec = load_search_spec(args.spec, settings)
    if args.optuna_storage is not None:
        check_url(args.optuna_storage)  # before the corpus or the folder is written
    check_memory(spec.sweep, embedded=not args.address)
    check_data_fits(spec.sweep)
    root = args.storage or spec.sweep.storage
    tracking.check(spec.sweep.tracking, str(Path(root) / spec.name))
    if "://" in root:
        raise SpecError(f"{root}: a step search needs a local (or mounted) storage folder: its "
                        "curves and default SQLite study live there")
    storage = Path(root)
    folder = storage / spec.name
    if storage.exists() and not storage.is_dir():
        raise SpecError(f"{storage}: the storage root is a file, not a folder")
    if any((folder / f).exists() for f in (*TUNE_FILES, SPEC_FILE)):
        raise SpecError(f"{folder}: a sweep named {spec.name!r} is stored there; "
                        "choose another --storage or sweep.name")
    url = args.optuna_storage or default_url(folder)
    if args.dry_run:
        print_plan(spec, folder, url, args.address, Console())
        return 0
    return run(spec, storage, url, args)


def run(spec: SearchSpec, storage: Path, url: str, args) -> int:
    """Open the study, settle it with the curves on disk, run the probes it still needs on
    Ray, then print (or emit) the verdicts and the answer."""
    import optuna

    from ablate.sweeps.cli import json_only_stdout
    from ablate.sweeps.search.method import StepSearch
    from ablate.sweeps.search.searcher import run_search
    from ablate.sweeps.search.study import open_study, open_verdicts, settle, shown, study_name, verdicts_name
    from ablate.sweeps.storage import resolve_data
    from ablate.sweeps.tuner import check_auth, check_fits, check_fits_machine, ray_session

    folder = storage / spec.name
    out = sys.stdout  # the JSON events' stream, whatever Ray prints meanwhile
    log = Log(None if not args.json_log else out)
    check_auth(args.address)
    check_fits_machine(spec.sweep, args.address)
    # Ray first: a gang that can never be placed is refused before anything is written
    with json_only_stdout(args.json_log), ray_session(args.address):
        waiting = check_fits(spec.sweep, embedded=not args.address)
        if waiting:
            log.say(f"[yellow]{waiting}[/]", "waiting", why=waiting)
        data = resolve_data(spec.sweep, storage)  # bad data is refused before a study exists
        if args.optuna_storage is None:
            folder.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = open_study(url, spec)
        recovered = settle(study, spec, folder / "curves")
        search = StepSearch(spec.search, study, open_verdicts(url, spec))
        s = spec.search
        log.say(f"[bold]{spec.name}[/]: steps {s.min_steps}..{s.max_steps} by {s.granularity}, "
                f"target {s.target}; {search.trials} trials done"
                + (f" ({recovered} from curves)" if recovered else "")
                + f"; studies {study_name(spec)!r} (probes) and {verdicts_name(spec)!r} (its best "
                f"trial: the answer) in {escape(shown(url))} -> {escape(str(folder))}",
                "search_start", search=spec.name, steps=s.grid, target=s.target, alpha=s.alpha,
                trials_done=search.trials, from_curves=recovered, folder=str(folder),
                study=study_name(spec), verdicts_study=verdicts_name(spec), storage=shown(url))
        failed: list[str] = []
        if not search.finished:
            failed = run_search(spec, storage, data, search, on_probe=log.on_probe,
                                on_result=log.on_result).failed
    for trial_id in failed:
        log.say(f"[red]trial {trial_id} failed[/]: see {folder / 'search'}; run the same command "
                "again to retry it", "trial_failed", trial=trial_id, folder=str(folder / "search"))
    if args.json_log:
        log.emit("report", **report_dict(spec, search))
    else:
        Console().print(render(spec, search))
    if not (search.finished or failed):  # Tune returned early: Ctrl-C or SIGTERM
        if args.json_log:
            log.emit("interrupted", trials=search.trials)
        print(f"ablate: interrupted: {search.trials} trials asked, the search goes on; run the "
              "same command again to continue", file=sys.stderr)
        return 130
    if not args.json_log:
        log.say(f"{spec.name}: {search.trials} trials; the probes' curves: `ablate report {folder}`")
    return 1 if failed else 0


class Log:
    """The search's progress lines: on a terminal, rich markup on stderr; otherwise (a file,
    a pipe, a batch job's log) one plain line per event, `YYYY-MM-DD HH:MM:SS text`, never
    wrapped; with --json-log, one JSON object per event on `json_out` instead."""

    def __init__(self, json_out: IO[str] | None = None):
        self.json_out = json_out
        self.console = Console(stderr=True) if sys.stderr.isatty() else None

    def say(self, markup: str, event: str | None = None, **fields: Any) -> None:
        if self.json_out is not None:
            if event is not None:
                self.emit(event, **fields)
            return
        if self.console is not None:
            self.console.print(markup)
            return
        from rich.errors import MarkupError
        from rich.text import Text

        from ablate.core.errors import printable

        try:
            text = printable(Text.from_markup(markup).plain)
        except MarkupError:  # a path or an error text that looks like markup: show it as is
            text = printable(markup)
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        sys.stderr.flush()

    def emit(self, event: str, **fields: Any) -> None:
        from ablate.sweeps import events

        if self.json_out is not None:  # events are written only with --json-log
            events.emit(self.json_out, event, **fields)

    def on_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A probe's validation report: a line in a log file and an event, not on a terminal
        (the start and end lines say enough there)."""
        if self.console is not None and self.json_out is None:
            return
        fields = {k: result.get(k) for k in ("step", "num_iterations", "val_loss", "train_loss",
                                             "train_time_ms", "tokens_seen")}
        val, train = (_num(fields[k], ".4f") for k in ("val_loss", "train_loss"))
        self.say(f"  {trial_id} step {fields['step']}/{fields['num_iterations']}  val {val}  "
                 f"train {train}", "result", trial_id=trial_id, **fields)

    def on_probe(self, probe: Probe, trial_id: str, loss: float | None, verdict: Verdict | None):
        where = f"{probe.steps} steps, seed {probe.seed} ({trial_id})"
        fields = dict(trial_id=trial_id, steps=probe.steps, seed=probe.seed)
        if verdict is None:
            self.say(f"  start  {where}", "probe_start", **fields)
        elif loss is None:
            self.say(f"  [red]failed[/] {where}", "probe_failed", **fields)
        else:
            self.say(f"  done   {where}: val loss {loss:.4f}; {probe.steps} steps: "
                     f"n={verdict.n} mean {verdict.mean:.4f} p={_num(verdict.p, '.3g')} "
                     f"-> {verdict.decision}", "probe_end", **fields, val_loss=loss,
                     verdict=asdict(verdict))


def print_plan(spec: SearchSpec, folder: Path, url: str, address: str | None, console: Console) -> None:
    """`--dry-run`: what the search would run and where it would write, from the validated
    spec alone. One trial shape (the step count changes neither batch nor memory)."""
    from ablate.sweeps.plan import plan, print_shapes
    from ablate.sweeps.search.study import shown, study_name, verdicts_name

    s, sweep, res = spec.search, spec.sweep, spec.sweep.resources
    longest = plan(dataclasses.replace(sweep, fixed={**sweep.fixed, "num_iterations": s.max_steps}),
                   str(folder), address)
    bisections = math.ceil(math.log2(len(s.grid))) + 1
    fixed = ", ".join(f"{k}={v}" for k, v in sweep.fixed.items())
    gpus = f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
    tracked = {k: v for k, v in dataclasses.asdict(sweep.tracking).items()
               if v != getattr(type(sweep.tracking), k)}
    console.print(f"[bold]{spec.name}[/]: fewest steps with mean final val loss < {s.target} "
                  f"({sweep.source})")
    for label, value in (
            ("preset", sweep.preset + (f"; fixed: {fixed}" if fixed else "")),
            ("steps", f"{s.min_steps:,}..{s.max_steps:,} by {s.granularity:,}: {len(s.grid)} step "
                      f"counts; a bisection probes about {min(bisections, len(s.grid))} of them"),
            ("test", f"one-sided t-test at alpha {s.alpha}"),
            ("seeds", f"{s.seeds_per_probe} per new step count, then one at a time up to "
                      f"{s.max_seeds}"),
            ("budget", f"{s.max_trials} trials over every resume (at most "
                       f"{s.max_trials * s.max_steps:,} steps)"),
            ("per trial", f"{res.workers} workers x ({res.cpus_per_worker:g} CPU{gpus}), "
                          f"one gang ({res.placement})"),
            ("at once", longest.concurrency),
            ("data", sweep.data),
            ("tracking", ", ".join(f"{k}={v}" for k, v in tracked.items()) or
                         "curves and TensorBoard only"),
            ("study", f"{study_name(spec)!r} (probes) and {verdicts_name(spec)!r} (the answer) "
                      f"in {shown(url)}"),
            ("curves", str(folder / "curves")),
            ("output", str(folder))):
        console.print(f"[bold]{label:>9}[/]  {value}")
    print_shapes(longest, console)


def report_dict(spec: SearchSpec, search: StepSearch) -> dict[str, Any]:
    """The report as data (--json-log): every decided or probed step count, and the answer."""
    return dict(search=spec.name, target=spec.search.target, alpha=spec.search.alpha,
                trials=search.trials, answered=search.answered,
                answer=search.answer if search.answered else None,
                verdicts=[asdict(v) for v in search.verdicts()], summary=answer_line(spec, search))


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


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None or math.isnan(x) else format(x, fmt)
