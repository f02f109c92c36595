"""A live rich view of a sweep: one bar per trial (steps done, last val loss), driven by Tune's
callback hooks on the driver."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def describe(config: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{k}={config.get(k)}" for k in [*axes, "seed"])


class SweepProgress(Callback):
    def __init__(self, axes: list[str], console: Console | None = None):
        self.axes = axes
        self.progress = Progress(
            TextColumn("{task.fields[trial]}", style="bold"),
            TextColumn("{task.description}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(), console=console or Console(), transient=False)
        self.tasks: dict[str, int] = {}

    def __getstate__(self):  # the Tuner pickles its callbacks; a live display stays behind
        return {"axes": self.axes}

    def __setstate__(self, state):
        self.__init__(state["axes"])

    def _task(self, trial) -> int:
        if trial.trial_id not in self.tasks:
            total = trial.config.get("num_iterations")
            self.tasks[trial.trial_id] = self.progress.add_task(
                describe(trial.config, self.axes), total=total, trial=trial.trial_id,
                loss="pending")
        return self.tasks[trial.trial_id]

    def setup(self, **info):
        self.progress.start()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.update(self._task(trial), loss="starting")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        total = result.get("num_iterations")
        self.progress.update(self._task(trial), completed=result.get("step", 0), total=total,
                             loss=f"val {result.get('val_loss', float('nan')):.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        task = self._task(trial)
        status = (trial.last_result or {}).get("status", "done")
        loss = self.progress.tasks[task].fields["loss"] if task < len(self.progress.tasks) else ""
        self.progress.update(task, loss=f"{loss} [green]{status}[/]")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.update(self._task(trial), loss="[red]error[/]")

    def on_experiment_end(self, trials, **info):
        self.progress.stop()
