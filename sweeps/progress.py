"""What a sweep is doing, live, on the driver: views fed by Tune's callback hooks.
(`ablate status`, which reads a sweep from storage, is sweeps/status.py.)

Three live views share one tally of the trials (`View`): `RichView` (a terminal: rich.progress
bars, the sweep's and one per trial), `LineLog` (stderr is a file, a pipe, a SLURM log: one plain,
timestamped line per trial event and a summary line every so often) and `JsonLog` (one JSON
object per line per event on stdout, for machines).
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import IO, Any, TypeGuard

from ray.tune import Callback

from ablate.core import states
from ablate.core.fields import coordinates
from ablate.sweeps import events
from ablate.sweeps.spec import step_budget

METRICS = ("val_loss", "train_loss", "train_time_ms", "tokens_seen")  # of a trial's report
STATE_COLOURS = {states.COMPLETED: "green", states.STOPPED: "yellow", states.RUNNING: "cyan",
                 states.STARTING: "blue"}  # any other (failed): red


@dataclass
class TrialLine:
    """One trial as the views show it (and as JSON events carry it)."""
    trial_id: str
    label: str
    seed: int | None
    num_iterations: int
    state: str = states.PENDING  # one of states.STATES
    step: int = 0
    val_loss: float | None = None
    train_loss: float | None = None
    train_time_ms: float | None = None
    tokens_seen: int | None = None
    node_id: str | None = None


@dataclass
class Timing:
    """When a trial started, first reported and ended (monotonic seconds), for the ETA."""
    started: float
    first_report: float | None = None
    first_step: int = 0
    ended: float | None = None


def describe(config: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{k}={config.get(k)}" for k in coordinates(axes))


def _finished_state(trial) -> str:
    return states.ended_state((trial.last_result or {}).get("status"))


class View(Callback):
    """A live view of the sweep, fed by Tune's callback hooks on the driver.

    The Tuner pickles its callbacks into tuner.pkl (which nothing of ours reads back), and a
    live view holds a terminal and locks: it pickles as an empty view."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, clock=time.monotonic):
        self.axes, self.n_trials, self.total_steps = axes, trials, total_steps
        self.clock = clock
        self.lines: dict[str, TrialLine] = {}
        self.configs: dict[str, dict[str, Any]] = {}  # each trial's axes, for compact labels
        self.timings: dict[str, Timing] = {}
        # The latest val loss reported (and whose), and the lowest final one of a completed
        # trial: a curve's intermediate low is not a result (its lr has not yet cooled).
        self.latest: tuple[float, str] | None = None
        self.best: tuple[float, str] | None = None
        self.most_active = 0  # trials seen active at once: the sweep's concurrency
        self.waiting: str | None = None  # what a cluster too small for a gang lacks
        self.t0 = clock()

    def __reduce__(self):
        return (View, ([], 0, 0))

    # --- the tally --------------------------------------------------------------------------
    def line(self, trial) -> TrialLine:
        if trial.trial_id not in self.lines:
            cfg = trial.config
            self.configs[trial.trial_id] = {k: cfg.get(k) for k in self.axes}
            self.lines[trial.trial_id] = TrialLine(trial.trial_id, describe(cfg, self.axes),
                                                   cfg.get("seed"),
                                                   step_budget(cfg))
            if trial.status == "TERMINATED":  # restored finished trials fire no hooks
                self._finish(self.lines[trial.trial_id], _finished_state(trial), trial.last_result)
            elif trial.status == "ERROR":
                self.lines[trial.trial_id].state = states.FAILED
        return self.lines[trial.trial_id]

    def _finish(self, line: TrialLine, state: str, result: dict[str, Any] | None) -> None:
        line.state = state
        if result:
            line.step, line.val_loss = result.get("step", line.step), result.get("val_loss", line.val_loss)
        loss = line.val_loss
        if state == states.COMPLETED and _finite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, line.label)
        timing = self.timings.get(line.trial_id)
        if timing is not None and timing.ended is None:
            timing.ended = self.clock()

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in states.LIVE if s != states.PENDING}
        for line in self.lines.values():
            if line.state in c:
                c[line.state] += 1
        c[states.PENDING] = self.n_trials - sum(c.values())
        return c

    def done_steps(self) -> int:
        """Steps trained or no longer needed (a stopped trial's remaining steps are saved)."""
        return sum(line.num_iterations if line.state in states.FINISHED else line.step
                   for line in self.lines.values())

    def eta(self) -> float | None:
        """Seconds left, from what trials took here: start-up (start to first report) and
        seconds per step, both measured on trials that ended normally. None until one has.

        Work left: every pending trial's start-up and steps, a starting trial's remaining
        start-up and all its steps, a running trial's remaining steps; shared over as many
        trials as have run at once. None too when nothing is left."""
        # (started, first report, ended, steps trained after the first report) of each
        ended = [(t.started, t.first_report, t.ended, self.lines[tid].step - t.first_step)
                 for tid, t in self.timings.items()
                 if t.ended is not None and t.first_report is not None
                 and self.lines[tid].state in (states.COMPLETED, states.STOPPED)
                 and self.lines[tid].step > t.first_step]
        if not ended:
            return None
        startup = sum(first - start for start, first, _, _ in ended) / len(ended)
        per_step = sum(end - first for _, first, end, _ in ended) / sum(n for *_, n in ended)
        now, left = self.clock(), 0.0
        for tid, line in self.lines.items():
            timing = self.timings.get(tid)
            if line.state == states.STARTING and timing is not None:
                left += max(startup - (now - timing.started), 0) + per_step * line.num_iterations
            elif line.state == states.RUNNING:
                left += per_step * max(line.num_iterations - line.step, 0)
        seen = {tid for tid, line in self.lines.items() if line.state != states.PENDING}
        pending_steps = self.total_steps - sum(self.lines[tid].num_iterations for tid in seen)
        pending = self.n_trials - len(seen)
        if pending > 0:  # budgets of trials not yet seen: the remaining steps, shared evenly
            left += pending * startup + per_step * max(pending_steps, 0)
        return left / max(self.most_active, 1) if left > 0 else None

    # --- Tune's hooks -------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        for t in trials:
            self.line(t)
        line = self.line(trial)
        line.state = states.STARTING
        self.timings[trial.trial_id] = Timing(self.clock())
        self.most_active = max(self.most_active, sum(
            1 for x in self.lines.values() if x.state in states.ACTIVE))
        self.changed(line, "trial_start")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        line = self.line(trial)
        line.state = states.RUNNING
        line.step = result.get("step", line.step)
        for key in METRICS:
            setattr(line, key, result.get(key))
        line.node_id = result.get("node_id", line.node_id)
        timing = self.timings.setdefault(trial.trial_id, Timing(self.clock()))
        if timing.first_report is None:
            timing.first_report, timing.first_step = self.clock(), line.step
        if _finite(line.val_loss):
            self.latest = (line.val_loss, line.label)
        if result.get("stalled"):  # its workers were restarted before this report
            self.changed(line, "trial_stalled", message=result["stalled"])
        self.changed(line, "result")

    def on_trial_complete(self, iteration, trials, trial, **info):
        line = self.line(trial)
        self._finish(line, _finished_state(trial), trial.last_result)
        self.changed(line, "trial_end")

    def on_trial_error(self, iteration, trials, trial, **info):
        line = self.line(trial)
        self._finish(line, states.FAILED, None)
        self.changed(line, "trial_error", error=_error_line(trial))

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        """Show a change; the base view shows nothing."""

    def losses(self) -> list[str]:
        """'best final Y (whose)' and 'latest X (whose)', as far as known."""
        named = (("best final", self.best), ("latest", self.latest))
        return [f"{name} {loss:.4f} ({label})" for name, (loss, label) in
                ((n, v) for n, v in named if v is not None)]

    def waiting_for(self) -> str | None:
        """What the sweep waits for (see tuner.check_fits), until a trial first reports."""
        if self.waiting and not any(t.first_report for t in self.timings.values()):
            return self.waiting
        return None

    def summary(self) -> str:
        """Counts of the states, the latest val loss, the best final one and the ETA, in one
        line; and what the sweep waits for while no trial has reported."""
        parts = [" · ".join(f"{n} {k}" for k, n in self.counts().items() if n)]
        waiting = self.waiting_for()
        if waiting:
            parts.append(waiting)
        parts += self.losses()
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {hms(eta)}")
        return " · ".join(parts)


class LineLog(View):
    """Plain lines for a log file (stderr not a terminal): one per trial event, timestamped,
    and a summary line every `every` seconds, flushed as they happen."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, sweep: str = "",
                 stream: IO[str] | None = None, every: float = 30.0, clock=time.monotonic):
        super().__init__(axes, trials, total_steps, clock)
        self.sweep, self.stream, self.every = sweep, stream, every
        self.last_summary = self.t0

    def write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        stream.flush()

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.write(f"sweep {self.sweep}: {self.n_trials} trials, {self.total_steps} steps")

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        head = f"trial {line.trial_id}"
        if event == "trial_start":
            self.write(f"{head} starting  {line.label}")
        elif event == "result":
            numbers = [f"step {line.step}/{line.num_iterations}", f"val {_number(line.val_loss)}",
                       f"train {_number(line.train_loss)}"]
            if line.train_time_ms is not None:
                numbers.append(f"{line.train_time_ms / 1000:.1f}s")
            self.write(f"{head} " + "  ".join(numbers))
        elif event == "trial_end":
            self.write(f"{head} {line.state}  step {line.step}/{line.num_iterations}  "
                       f"val {_number(line.val_loss)}  {line.label}")
        elif event == "trial_error":
            self.write(f"{head} failed  {extra.get('error', '')}")
        elif event == "trial_stalled":
            self.write(f"{head} stalled  {extra['message']}")

    def on_step_end(self, iteration, trials, **info):
        if self.clock() - self.last_summary >= self.every:
            self.write_summary()

    def write_summary(self) -> None:
        self.last_summary = self.clock()
        self.write(f"sweep {self.sweep}: {self.summary()}")

    def on_experiment_end(self, trials, **info):
        for t in trials:  # a resumed sweep's finished trials fired no hooks
            self.line(t)
        self.write_summary()


class RichView(View):
    """A terminal view drawn by rich.progress: the trial counts, the sweep's bar (steps,
    elapsed, ETA, losses), then one bar per started trial (step, val loss, state, seed, then
    the rest of its config, the one column cut to the width). When trials outnumber the rows,
    the oldest finished ones fold into a count under the rows."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, sweep: str = "",
                 console=None, clock=time.monotonic):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        super().__init__(axes, trials, total_steps, clock)
        self.sweep = sweep
        self.console = console or Console(stderr=True)
        self.live = None
        self.last_refresh = 0.0

        def rest(field: str, ratio: int = 1):  # a column given what the others leave, cut to it
            return TextColumn(f"{{task.fields[{field}]}}", markup=False,
                              table_column=Column(ratio=ratio, no_wrap=True, overflow="ellipsis"))

        # Never started: this view's Live draws their tables, with the rows the fold keeps.
        self.sweep_bar = Progress(BarColumn(bar_width=12), MofNCompleteColumn(), TextColumn("steps ·"),
                                  TimeElapsedColumn(), rest("rest"), get_time=clock, expand=True)
        self.sweep_task = self.sweep_bar.add_task("", total=max(total_steps, 1), rest="")
        self.trial_bars = Progress(
            TextColumn("{task.fields[short_id]}", justify="right", markup=False),
            BarColumn(bar_width=None, table_column=Column(ratio=1, no_wrap=True)), MofNCompleteColumn(),
            TextColumn("{task.fields[val_loss]}", justify="right"),
            TextColumn("[{task.fields[colour]}]{task.fields[state]}"),
            TextColumn("seed={task.fields[seed]}", style="bold", markup=False), rest("config", 2),
            get_time=clock, expand=True)
        self.trial_tasks: dict[str, Any] = {}  # trial id -> its task id in trial_bars

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        from rich.live import Live

        self.live = Live(self, console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        if event == "trial_stalled":  # a line above the live view, kept in the scrollback
            from rich.text import Text

            self.console.print(Text(f"trial {line.trial_id} stalled: {extra['message']}", style="yellow"))
        self.refresh()

    def on_step_end(self, iteration, trials, **info):
        if self.clock() - self.last_refresh >= 1.0:  # the elapsed time and the ETA move
            self.refresh()

    def refresh(self) -> None:
        self.last_refresh = self.clock()
        if self.live is not None:
            self.live.refresh()

    def on_experiment_end(self, trials, **info):
        for t in trials:
            self.line(t)
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    def __rich_console__(self, console, options):
        """The screen, in at most the console's height less one line (the cursor's)."""
        from rich.text import Text

        def one_line(text: str, style: str) -> Text:
            return Text(text, style=style, no_wrap=True, overflow="ellipsis")

        finished = sum(1 for line in self.lines.values() if line.state in states.FINISHED)
        head = one_line(f"{self.sweep} " if self.sweep else "", style="bold")
        head.append(" · ".join([f"{finished}/{self.n_trials} trials done"] +
                               [f"{n} {k}" for k, n in self.counts().items() if n]))
        eta = self.eta()
        rest = ([f"ETA {hms(eta)}"] if eta is not None else []) + self.losses()
        self.sweep_bar.update(self.sweep_task, completed=self.done_steps(),
                              rest=" ".join(f"· {part}" for part in rest))
        out = [head, self.sweep_bar.make_tasks_table(self.sweep_bar.tasks)]
        waiting = self.waiting_for()
        if waiting:
            out.append(one_line(waiting, style="yellow"))
        shown, note = self._fold(max(options.max_height - len(out) - 2, 1))  # the note, the cursor
        ids = [self._task(line) for line in shown]
        tasks = {task.id: task for task in self.trial_bars.tasks}
        out.append(self.trial_bars.make_tasks_table(tasks[i] for i in ids))
        yield from out + ([one_line(note, style="dim")] if note else [])

    def _task(self, line: TrialLine):
        """The trial's task, brought up to date at each drawing (a restored trial enters the
        tally without a hook)."""
        fields: dict[str, Any] = dict(
            completed=line.step, total=max(line.num_iterations, 1), state=line.state,
            short_id=line.trial_id.rsplit("_", 1)[-1], val_loss=_number(line.val_loss), seed=line.seed,
            colour=STATE_COLOURS.get(line.state, "red"),
            config=" ".join(f"{k}={v}" for k, v in self.configs.get(line.trial_id, {}).items()))
        if line.trial_id not in self.trial_tasks:
            self.trial_tasks[line.trial_id] = self.trial_bars.add_task("", **fields)
        self.trial_bars.update(self.trial_tasks[line.trial_id], **fields)
        return self.trial_tasks[line.trial_id]

    def _fold(self, rows: int) -> tuple[list[TrialLine], str | None]:
        """The started trials that fit in `rows` (the active ones first, then the newest
        finished), and a note counting the rest."""
        started = [line for line in self.lines.values() if line.state != states.PENDING]
        if len(started) <= rows:
            return started, None
        active = [line for line in started if line.state in states.ACTIVE]
        finished = sorted((line for line in started if line.state in states.FINISHED),  # oldest first
                          key=lambda line: getattr(self.timings.get(line.trial_id), "ended", None) or self.t0)
        keep = max(rows - len(active), 0)
        folded = Counter(line.state for line in finished[:len(finished) - keep])
        note = f"  {folded.total()} finished trials folded: " + " · ".join(
            f"{n} {state}" for state, n in folded.items())
        if len(active) > rows:
            note += f"; {len(active) - rows} more active not shown"
        return active[:rows] + finished[len(finished) - keep:], note


class JsonLog(View):
    """One JSON object per line per event: sweep_start, trial_start, result, trial_end,
    trial_error, sweep_end (then `ablate` adds trial_failed and report events)."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, sweep: str = "",
                 stream: IO[str] | None = None, clock=time.monotonic):
        super().__init__(axes, trials, total_steps, clock)
        self.sweep, self.stream = sweep, stream

    def emit(self, event: str, **fields) -> None:
        events.emit(self.stream or sys.stdout, event, sweep=self.sweep, **fields)

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.emit("sweep_start", trials=self.n_trials, total_steps=self.total_steps,
                  waiting=self.waiting)

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        fields = asdict(line)
        if event == "result":
            fields.pop("label")
        self.emit(event, **fields, **extra, counts=self.counts(), eta_s=self.eta())

    def on_experiment_end(self, trials, **info):
        for t in trials:
            self.line(t)
        latest, best = ({"val_loss": v[0], "label": v[1]} if v else None for v in (self.latest, self.best))
        self.emit("sweep_end", counts=self.counts(), latest=latest, best_final=best)


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _error_line(trial) -> str:
    try:
        text = trial.get_error() or ""
    except Exception:  # the error file may not have reached storage yet
        text = ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "error"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
