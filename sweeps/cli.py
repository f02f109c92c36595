"""The sweep commands of `ablate`: sweep, resume, stop, status, and search-steps (from
sweeps/search/cli.py). Thin: parse, validate, call the package, print.

`add_commands` is what the sweeps layer gives the `ablate` program (ablate.cli). Bad input
is refused with an AblateError (SpecError here), which the CLI's edge prints as one line
naming the field or file, with exit status 2. Heavy imports (torch, ray) happen inside the
commands that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ablate.core import states
from ablate.core.errors import AblateError
from ablate.sweeps import events
from ablate.sweeps.spec import SpecError


def cmd_sweep(args) -> int:
    from ablate.sweeps.plan import check_data_fits, check_memory
    from ablate.sweeps.spec import MAX_TRIALS, load_spec
    from ablate.sweeps.storage import is_stored, is_uri, join, storage_root
    from ablate.trainer.config import parse_assignments

    if not 1 <= args.max_trials <= MAX_TRIALS:
        raise SpecError(f"--max-trials: must be in 1..{MAX_TRIALS:,}, got {args.max_trials}")
    settings = parse_assignments(args.set or [], flag="-s")
    if args.name is not None:
        settings["sweep.name"] = args.name
    settings |= tracking_settings(args)
    spec = load_spec(args.spec, max_trials=None if args.yes else args.max_trials, settings=settings)
    storage = storage_root(args.storage or spec.storage)
    if not is_uri(storage) and Path(storage).exists() and not Path(storage).is_dir():
        raise SpecError(f"{storage}: the storage root is a file, not a folder")
    folder = join(storage, spec.name)
    if spec.sampling.method == "tpe":  # its study lives in the folder: refused before it is made
        from ablate.sweeps.tpe import check_space

        check_space(spec, folder)
    if args.dry_run:
        from rich.console import Console

        from ablate.sweeps.plan import plan, print_plan

        print_plan(plan(spec, folder, args.address), Console())
        check_memory(spec, embedded=not args.address)
        check_data_fits(spec)
        return 0
    check_memory(spec, embedded=not args.address)
    check_data_fits(spec)
    if is_stored(folder):
        raise SpecError(f"{folder}: a sweep named {spec.name!r} is already stored there; "
                        "resume it with `ablate resume`, or choose another --storage or --name")
    return run_sweep(spec, storage, folder, args)


def add_tracking_flags(parser, run: str, group: str) -> None:
    """--mlflow, --wandb and --wandb-project: one tracker run per `run`, grouped by `group`."""
    parser.add_argument("--mlflow", nargs="?", const="local", metavar="URI",
                        help=f"one MLflow run per {run}: in <storage>/<name>/mlflow.db, or at a "
                             "tracking URI (http://host:5000, sqlite:///..., file:///...)")
    parser.add_argument("--wandb", choices=["online", "offline"],
                        help=f"one W&B run per {run}, grouped by {group} (offline: `wandb sync` later)")
    parser.add_argument("--wandb-project", metavar="NAME", help="the W&B project (default ablate)")


def tracking_settings(args) -> dict[str, str]:
    """--mlflow and --wandb as the spec keys they set (tracking.*), validated like the file."""
    out = {}
    if args.mlflow is not None:
        out["tracking.mlflow"] = args.mlflow
    if args.wandb is not None:
        out["tracking.wandb"] = args.wandb
    if args.wandb_project is not None:
        out["tracking.wandb_project"] = args.wandb_project
    return out


def run_sweep(spec, storage: str, folder: str, args) -> int:
    from ablate.sweeps.spec import BUILTIN_DATA
    from ablate.sweeps.storage import claim, resolve_data, save_sweep
    from ablate.sweeps.tuner import trial_settings

    # the user's shards are only read: refused before Ray starts; the built-in corpus is
    # written into the storage root, so only once Ray is up
    data = None if spec.data == BUILTIN_DATA else resolve_data(spec, storage)

    def start() -> dict:
        settings = trial_settings(spec, storage, data or resolve_data(spec, storage))
        claim(folder)  # once Ray is up: a cluster that cannot be reached claims nothing
        save_sweep(spec, settings)
        return settings

    return fit(spec, folder, args, start)


def cmd_resume(args) -> int:
    """The same Tuner as `ablate sweep` built, from the spec and settings saved as JSON in the
    folder: nothing there is unpickled."""
    from ablate.sweeps.storage import check_links_stay_inside, load_sweep, storage_root, trial_prefix

    folder = storage_root(args.dir)
    check_links_stay_inside(folder)
    spec, settings = load_sweep(folder)
    settings["trial_prefix"] = trial_prefix(folder, settings)
    spec = dataclasses.replace(spec, tracking=resume_tracking(spec, args))
    return fit(spec, folder, args, lambda: settings)


def resume_tracking(spec, args):
    """Where a resumed sweep's trackers log: only the command line's --mlflow / --wandb, and
    what of the folder's own tracking stays inside the folder (MLflow 'local', W&B offline).
    A folder never chooses where data goes: its URI, or its W&B online project and entity,
    would send every metric wherever it names. Says on stderr what it leaves out."""
    from ablate.sweeps.spec import SpecError as Refused
    from ablate.sweeps.spec import Tracking, parse_tracking

    saved = spec.tracking
    kept = {}
    if saved.mlflow == "local":
        kept["mlflow"] = "local"
    if saved.wandb == "offline":
        kept |= {"wandb": "offline", "wandb_project": saved.wandb_project}
    left = []
    if saved.mlflow not in (None, "local"):
        left.append(f"mlflow {saved.mlflow}")
    if saved.wandb == "online":
        left.append(f"wandb online ({saved.wandb_entity or 'your'}/{saved.wandb_project})")
    given = {k.split(".", 1)[1]: v for k, v in tracking_settings(args).items()}
    if left and not given:
        print(f"ablate: resume: the folder's tracking ({'; '.join(left)}) is not used: a folder "
              "may not choose where data goes; pass --mlflow URI / --wandb online to log there",
              file=sys.stderr)

    def fail(where: str, why: str):
        raise Refused(f"{where}: {why}")

    return parse_tracking(kept | given, fail) if kept or given else Tracking()


def fit(spec, folder: str, args, settings: Callable[[], dict]) -> int:
    """Check what can be checked before Ray starts, show the sweep, fit its Tuner, report.
    `settings` runs once Ray is up (a new sweep prepares its data and claims its folder)."""
    from rich.text import Text

    from ablate.core.errors import printable
    from ablate.sweeps import tracking
    from ablate.sweeps.control import DriverWatch, driver_lock
    from ablate.sweeps.progress import RichView
    from ablate.sweeps.stoppers import StopControl
    from ablate.sweeps.storage import is_stored
    from ablate.sweeps.tuner import build_tuner, check_auth, check_fits, check_fits_machine, ray_session

    tracking.check(spec.tracking, folder)
    check_auth(args.address)
    check_fits_machine(spec, args.address)
    out = sys.stdout
    view = make_view(spec, out if args.json_log else None, args.summary_every)
    with DriverWatch(folder, out if args.json_log else None), \
            contextlib.ExitStack() as held:
        resuming = is_stored(folder)
        if resuming:  # one driver a sweep: a second is refused before Ray starts
            held.enter_context(driver_lock(folder))
        held.enter_context(json_only_stdout(args.json_log))
        held.enter_context(ray_session(args.address))
        view.waiting = check_fits(spec, embedded=not args.address)
        if view.waiting:
            print(f"ablate: {view.waiting}", file=sys.stderr)
        control = StopControl(folder)
        trial_settings = settings()
        if not resuming:  # a new sweep's folder exists once settings() has claimed it
            held.enter_context(driver_lock(folder))
        # past every refusal: the folder it writes, on a terminal and in a batch log alike
        heading = f"{spec.name}: {spec.size} trials x {spec.resources.workers} workers -> {folder}"
        if isinstance(view, RichView):
            view.console.print(Text(heading, style="bold"))
        elif not args.json_log:
            print(printable(f"ablate: {heading}"), file=sys.stderr, flush=True)
        results = build_tuner(spec, trial_settings, callbacks=[view], control=control).fit()
        return finish(results, folder, spec, out if args.json_log else None, stopped=control.request)


def cmd_stop(args) -> int:
    from ablate.sweeps.control import request_stop
    from ablate.sweeps.storage import load_sweep, storage_root

    folder = storage_root(args.dir)
    load_sweep(folder)  # a sweep folder, or one line saying why not
    request_stop(folder, args.now)
    what = ("its running trials stop now, each resumable from its last checkpoint" if args.now
            else "its running trials finish, no new one starts")
    print(f"ablate: stop requested: {what}; the sweep's driver acts within seconds (a sweep not "
          f"running now ignores it); continue later with `ablate resume {folder}`")
    return 0


def cmd_status(args) -> int:
    from rich.console import Console

    from ablate.sweeps.control import stop_request
    from ablate.sweeps.status import print_status, sweep_status
    from ablate.sweeps.storage import load_sweep, storage_root

    folder = storage_root(args.dir)
    spec, _ = load_sweep(folder)
    rows = sweep_status(folder, list(spec.axes))
    stop = stop_request(folder)
    if args.json:
        from ablate.core.files import jsonable

        print(json.dumps(jsonable({"sweep": spec.name, "trials": spec.size, "status": rows,
                                   "stop_requested": stop})))
        return 0
    print_status(rows, spec.size, Console())
    if stop is not None:
        print("stopping (`ablate stop`" + (" --now): running trials stop now" if stop["now"] else
                                           "): running trials finish, no new one starts"))
    return 0


def make_view(spec, json_out=None, summary_every: float = 30.0):
    """The driver's live view: JSON lines to `json_out`; else bars on a terminal's stderr;
    else (a file, a pipe, a batch job's log) plain timestamped lines on stderr."""
    from ablate.sweeps.progress import JsonLog, LineLog, RichView

    steps = sum(spec.train_config(t).num_iterations for t in spec.trials())
    axes = list(spec.axes)
    if json_out:
        return JsonLog(axes, spec.size, steps, spec.name, json_out)
    if sys.stderr.isatty():
        return RichView(axes, spec.size, steps, spec.name)
    return LineLog(axes, spec.size, steps, spec.name, sys.stderr, every=summary_every)


@contextlib.contextmanager
def json_only_stdout(enabled: bool):
    """With --json-log, stdout carries our JSON lines only: whatever else is printed there
    meanwhile (Ray's own warnings, say) goes to stderr."""
    real = sys.stdout
    if enabled:
        sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real


def finish(results, folder: str, spec, json_out=None, stopped: dict | None = None) -> int:
    """Say which trials failed (with the last line of their error), then print the report of
    the sweep's curves, grouped by its axes and judged against its target (as one JSON event
    to `json_out` with --json-log). Curves in a URI are read from a local copy. `stopped`:
    the `ablate stop` request the sweep ended on, if any."""
    import tempfile

    from ablate.results import build_report, warning_lines, write_report
    from ablate.sweeps.storage import copy_folder, is_uri, join, trial_states

    failed = [r for r in results if r.error is not None]
    for r in failed:
        text = str(r.error).strip()
        last = text.splitlines()[-1] if text else type(r.error).__name__
        name = r.path and r.path.rstrip("/").rsplit("/", 1)[-1]
        if json_out:
            events.emit(json_out, "trial_failed", trial=name, error=last)
        else:
            print(f"ablate: trial {name} failed: {last}", file=sys.stderr)
    code = 1 if failed else 0
    with tempfile.TemporaryDirectory(prefix="ablate-report-") as tmp:
        local = copy_folder(join(folder, "curves"), Path(tmp) / "curves") if is_uri(folder) else folder
        try:
            report = build_report([local], target=spec.target, axes=list(spec.axes),
                                  baseline=spec.baseline)
        except AblateError as e:
            print(f"ablate: no report: {e}", file=sys.stderr)
            report, code = None, 1
    # What ended is the driver's own record: Tune counts a trial it stopped at Ctrl-C as
    # terminated, though it did not finish
    ended = sum(1 for t in trial_states(folder).values() if t["state"] in states.FINISHED)
    if report is not None and ended < spec.size:
        report.warnings.append(f"interrupted: {spec.size - ended} of the sweep's {spec.size} "
                               "trials were not run or did not finish; this report leaves them out")
    if report is not None:
        for line in warning_lines(report):
            print(line, file=sys.stderr)
        if json_out:
            events.emit(json_out, "report", report=report.to_dict())
        else:
            write_report(report, sys.stdout, "table")
    if ended < spec.size and stopped is not None:
        how = "running trials stopped" if stopped["now"] else "running trials finished"
        if json_out:
            events.emit(json_out, "stopped", ended=ended, trials=spec.size, now=stopped["now"])
        print(f"ablate: stopped on request (`ablate stop`, {how}): {ended} of {spec.size} trials "
              f"ended; continue with `ablate resume {folder}`", file=sys.stderr)
        return 0
    if ended < spec.size:  # Ctrl-C: Tune ends the run early and returns what it has
        if json_out:
            events.emit(json_out, "interrupted", ended=ended, trials=spec.size)
        print(f"ablate: interrupted: {ended} of {spec.size} trials ended, {spec.size - ended} "
              f"not run or unfinished; finish with `ablate resume {folder}`", file=sys.stderr)
        return 130
    if not json_out:
        print(f"ablate: {spec.name}: {ended} of {spec.size} trials ended; the report again "
              f"(with --plot DIR for plots): `ablate report {folder}`", file=sys.stderr)
    return code


def add_commands(sub) -> None:
    """Add sweep, resume, stop, status and search-steps to `sub` (from add_subparsers)."""
    from ablate.sweeps.search.cli import add_commands as add_search_commands

    p = sub.add_parser("sweep", help="run a sweep spec on local Ray or a cluster")
    p.add_argument("spec", help="the sweep spec (TOML)")
    p.add_argument("--storage", help="storage root: a path or a URI such as s3://bucket/runs "
                   "(default: the spec's, else ./runs)")
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://host:port")
    p.add_argument("-s", "--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override the spec, e.g. -s fixed.num_iterations=200 -s sweep.seeds=3 "
                        "-s 'axes.extra_embeddings=[0,1]' (pinning a key in fixed drops its axis)")
    p.add_argument("--name", help="the sweep's name (its folder under the storage root)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list the trials, steps, tokens and resources; start nothing")
    p.add_argument("--max-trials", type=int, default=500,
                   help="refuse a grid of more trials unless --yes (default 500)")
    p.add_argument("--yes", action="store_true", help="launch however many trials the grid has")
    p.add_argument("--json-log", action="store_true",
                   help="no live view: one JSON object per event on stdout")
    p.add_argument("--summary-every", type=positive_seconds, default=30.0, metavar="SECONDS",
                   help="with stderr not a terminal: a summary line this often (default 30)")
    add_tracking_flags(p, "trial", "sweep")
    p.set_defaults(func=cmd_sweep)

    r = sub.add_parser("resume", help="finish an interrupted sweep, then report")
    r.add_argument("dir", metavar="DIR", help="the sweep's folder: <storage>/<sweep name>")
    r.add_argument("--address", help="join a Ray cluster: auto, or ray://host:port")
    r.add_argument("--json-log", action="store_true",
                   help="no live view: one JSON object per event on stdout")
    r.add_argument("--summary-every", type=positive_seconds, default=30.0, metavar="SECONDS",
                   help="with stderr not a terminal: a summary line this often (default 30)")
    r.add_argument("--mlflow", nargs="?", const="local", metavar="URI",
                   help="log the resumed trials to MLflow (a folder's own URI is never used)")
    r.add_argument("--wandb", choices=["online", "offline"], help="log the resumed trials to W&B")
    r.add_argument("--wandb-project", metavar="NAME", help="the W&B project (default ablate)")
    r.set_defaults(func=cmd_resume)

    k = sub.add_parser("stop", help="stop a running sweep from another shell (resume goes on)")
    k.add_argument("dir", metavar="DIR", help="the sweep's folder: <storage>/<sweep name>")
    k.add_argument("--now", action="store_true",
                   help="stop the running trials too (each resumes from its last checkpoint); "
                        "default: let them finish and start no new one")
    k.set_defaults(func=cmd_stop)

    s = sub.add_parser("status", help="the trials of a sweep: state, step, val loss")
    s.add_argument("dir", metavar="DIR", help="the sweep's folder: <storage>/<sweep name>")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_status)

    add_search_commands(sub)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value

