"""What a sweep is doing, live, on the driver: views fed by Tune's callback hooks.
(`ablate status`, which reads a sweep from storage, is sweeps/status.py.)

Two live views share one tally of the trials: `RichView` (a bar per trial, counts, ETA) and
`JsonLog` (one JSON object per line per event on stdout, for machines).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

from ray.tune import Callback

from ablate.sweeps import events, states
from ablate.trainer.config import TrainConfig

DEFAULT_BUDGET = TrainConfig.num_iterations  # a trial whose config leaves num_iterations out


@dataclass
class TrialLine:
    """One trial as the views show it."""
    trial_id: str
    label: str
    num_iterations: int
    state: str = states.PENDING  # one of states.STATES
    step: int = 0
    val_loss: float | None = None
    node_id: str | None = None


def describe(config: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{k}={config.get(k)}" for k in [*axes, "seed"])


def _finished_state(trial) -> str:
    return states.ended_state((trial.last_result or {}).get("status"))


class View(Callback):
    """A live view of the sweep, fed by Tune's callback hooks on the driver.

    The Tuner pickles its callbacks into tuner.pkl, but a view belongs to the process that
    shows it: a view pickles as "the view of this driver", so `ablate resume` shows its own
    (set with `show`) rather than the one the interrupted driver had."""

    def __init__(self, axes: list[str], trials: int, total_steps: int):
        self.axes, self.n_trials, self.total_steps = axes, trials, total_steps
        self.lines: dict[str, TrialLine] = {}
        self.t0: float | None = None  # first result of this session, for the ETA
        self.steps0 = 0

    def __reduce__(self):
        return (shown, ())

    # --- the tally --------------------------------------------------------------------------
    def line(self, trial) -> TrialLine:
        if trial.trial_id not in self.lines:
            cfg = trial.config
            self.lines[trial.trial_id] = TrialLine(trial.trial_id, describe(cfg, self.axes),
                                                   cfg.get("num_iterations", DEFAULT_BUDGET))
            if trial.status == "TERMINATED":  # restored finished trials fire no hooks
                self._finish(self.lines[trial.trial_id], _finished_state(trial), trial.last_result)
            elif trial.status == "ERROR":
                self.lines[trial.trial_id].state = states.FAILED
        return self.lines[trial.trial_id]

    def _finish(self, line: TrialLine, state: str, result: dict[str, Any] | None) -> None:
        line.state = state
        if result:
            line.step, line.val_loss = result.get("step", line.step), result.get("val_loss", line.val_loss)

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in states.STATES if s != states.PENDING}
        for line in self.lines.values():
            if line.state in c:
                c[line.state] += 1
        c["pending"] = self.n_trials - sum(c.values())
        return c

    def done_steps(self) -> int:
        """Steps trained or no longer needed (a stopped trial's remaining steps are saved)."""
        return sum(line.num_iterations if line.state in states.FINISHED else line.step
                   for line in self.lines.values())

    def eta(self) -> float | None:
        """Seconds left at this session's rate of steps (all trials together)."""
        if self.t0 is None:
            return None
        rate = (self.done_steps() - self.steps0) / max(time.monotonic() - self.t0, 1e-9)
        return (self.total_steps - self.done_steps()) / rate if rate > 0 else None

    # --- Tune's hooks -------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        for t in trials:
            self.line(t)
        line = self.line(trial)
        line.state = states.RUNNING
        self.changed(line, "trial_start")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.t0 is None:
            self.t0, self.steps0 = time.monotonic(), self.done_steps()
        line = self.line(trial)
        line.state = states.RUNNING
        line.step, line.val_loss = result.get("step", line.step), result.get("val_loss")
        line.node_id = result.get("node_id", line.node_id)
        self.changed(line, "result")

    def on_trial_complete(self, iteration, trials, trial, **info):
        line = self.line(trial)
        self._finish(line, _finished_state(trial), trial.last_result)
        self.changed(line, "trial_end")

    def on_trial_error(self, iteration, trials, trial, **info):
        line = self.line(trial)
        line.state = states.FAILED
        self.changed(line, "trial_error", error=_error_line(trial))

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        """Show a change; the base view shows nothing."""


_SHOWN: View | None = None


def show(view: View) -> View:
    """Make `view` the view of this driver (what a pickled view turns into here)."""
    global _SHOWN
    _SHOWN = view
    return view


def shown() -> View:
    return _SHOWN if _SHOWN is not None else View([], 0, 0)


class RichView(View):
    """A sweep line (counts, ETA) over one bar per trial (step, last val loss, state)."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(axes, trials, total_steps)
        self.progress = Progress(
            TextColumn("{task.fields[trial]}", style="bold"), TextColumn("{task.description}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), console=console or Console(stderr=True), transient=False)
        self.summary = self.progress.add_task("", total=total_steps, trial="sweep", note="")
        self.tasks: dict[str, int] = {}

    def setup(self, **info):
        self.progress.start()

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        if line.trial_id not in self.tasks:
            self.tasks[line.trial_id] = self.progress.add_task(
                line.label, total=line.num_iterations, trial=line.trial_id, note="")
        loss = f"val {line.val_loss:.4f}" if line.val_loss is not None else ""
        colour = {states.COMPLETED: "green", states.STOPPED: "yellow"}.get(line.state, "red")
        state = f"[{colour}]{line.state}[/]" if line.state in states.FINISHED else ""
        self.progress.update(self.tasks[line.trial_id], completed=line.step, note=f"{loss} {state}")
        self.summarize()

    def summarize(self) -> None:
        c, eta = self.counts(), self.eta()
        text = " · ".join(f"{n} {k}" for k, n in c.items() if n)
        self.progress.update(self.summary, completed=self.done_steps(), description=text,
                             note=f"ETA {_clock(eta)}" if eta is not None else "")

    def on_experiment_end(self, trials, **info):
        for t in trials:  # a resumed sweep's finished trials fired no hooks
            self.line(t)
        self.summarize()
        self.progress.stop()


class JsonLog(View):
    """One JSON object per line per event: sweep_start, trial_start, result, trial_end,
    trial_error, sweep_end (then `ablate` adds a report event)."""

    def __init__(self, axes: list[str], trials: int, total_steps: int, sweep: str = "",
                 stream: IO[str] | None = None):
        super().__init__(axes, trials, total_steps)
        self.sweep, self.stream = sweep, stream

    def emit(self, event: str, **fields) -> None:
        events.emit(self.stream or sys.stdout, event, sweep=self.sweep, **fields)

    def setup(self, **info):
        self.emit("sweep_start", trials=self.n_trials, total_steps=self.total_steps)

    def changed(self, line: TrialLine, event: str, **extra) -> None:
        fields = asdict(line)
        if event == "result":
            fields.pop("label")
        self.emit(event, **fields, **extra, counts=self.counts(), eta_s=self.eta())

    def on_experiment_end(self, trials, **info):
        for t in trials:
            self.line(t)
        self.emit("sweep_end", counts=self.counts())


def _error_line(trial) -> str:
    try:
        text = trial.get_error() or ""
    except Exception:  # the error file may not have reached storage yet
        text = ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "error"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
