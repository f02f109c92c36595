"""What a sweep is doing: live views on the driver (Tune callbacks), and `ablate status` from
storage (Tune's experiment state plus the curve files).

Two live views share one tally of the trials: `RichView` (a bar per trial, counts, ETA) and
`JsonLog` (one JSON object per line per event on stdout, for machines).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

from ray.tune import Callback

from ablate.trainer.config import TrainConfig

FINISHED = ("done", "stopped", "diverged", "error")
DEFAULT_BUDGET = TrainConfig.num_iterations  # a trial whose config leaves num_iterations out


@dataclass
class TrialLine:
    """One trial as the views show it."""
    trial_id: str
    label: str
    num_iterations: int
    state: str = "pending"  # pending | running | done | stopped | diverged | error
    step: int = 0
    val_loss: float | None = None
    node_id: str | None = None


def describe(config: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{k}={config.get(k)}" for k in [*axes, "seed"])


def _finished_state(trial) -> str:
    """A trial Tune calls finished: done, diverged, or stopped early (the last result Tune
    had from it was not its last validation point: status "running")."""
    status = (trial.last_result or {}).get("status")
    return {"completed": "done", "diverged": "diverged"}.get(status, "stopped")


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
                self.lines[trial.trial_id].state = "error"
        return self.lines[trial.trial_id]

    def _finish(self, line: TrialLine, state: str, result: dict[str, Any] | None) -> None:
        line.state = state
        if result:
            line.step, line.val_loss = result.get("step", line.step), result.get("val_loss", line.val_loss)

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in ("running", "done", "stopped", "diverged", "error")}
        for line in self.lines.values():
            if line.state in c:
                c[line.state] += 1
        c["pending"] = self.n_trials - sum(c.values())
        return c

    def done_steps(self) -> int:
        """Steps trained or no longer needed (a stopped trial's remaining steps are saved)."""
        return sum(l.num_iterations if l.state in FINISHED else l.step for l in self.lines.values())

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
        line.state = "running"
        self.changed(line, "trial_start")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.t0 is None:
            self.t0, self.steps0 = time.monotonic(), self.done_steps()
        line = self.line(trial)
        line.state = "running"
        line.step, line.val_loss = result.get("step", line.step), result.get("val_loss")
        line.node_id = result.get("node_id", line.node_id)
        self.changed(line, "result")

    def on_trial_complete(self, iteration, trials, trial, **info):
        line = self.line(trial)
        self._finish(line, _finished_state(trial), trial.last_result)
        self.changed(line, "trial_end")

    def on_trial_error(self, iteration, trials, trial, **info):
        line = self.line(trial)
        line.state = "error"
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
        state = {"done": "[green]done[/]", "stopped": "[yellow]stopped[/]",
                 "diverged": "[red]diverged[/]", "error": "[red]error[/]"}.get(line.state, "")
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
        record = {"event": event, "time": round(time.time(), 3), "sweep": self.sweep, **fields}
        out = self.stream or sys.stdout
        out.write(json_text(record) + "\n")
        out.flush()

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
    lines = [l for l in str(text).strip().splitlines() if l.strip()]
    return lines[-1] if lines else "error"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def json_text(value: Any) -> str:
    """Strict JSON on one line: NaN and infinities (a diverged loss) become null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), default=str, allow_nan=False)


# --- `ablate status`: from storage ------------------------------------------------------------

TUNE_STATES = {"PENDING": "pending", "RUNNING": "running", "PAUSED": "pending",
               "TERMINATED": "terminated", "ERROR": "error"}


def sweep_status(folder: str, axes: list[str]) -> list[dict[str, Any]]:
    """Every trial Tune knows of (and every curve it does not): state, config, last step and
    val loss. Steps and losses come from the curves (written at every validation point), else
    from Tune's last result. A trial Tune terminated after a report that was not its last was
    stopped early (its Train run may have got a little further before it was aborted)."""
    import pyarrow.parquet as pq
    from ray.tune import ExperimentAnalysis

    from ablate.sweeps.spec import filesystem, join

    try:
        trials = ExperimentAnalysis(folder).trials
    except Exception:  # no experiment state yet (the driver died in its first seconds)
        trials = []
    fs, curves = filesystem(join(folder, "curves"))
    files = {info.base_name.removesuffix(".parquet"): info.path
             for info in fs.get_file_info(_selector(curves)) if info.base_name.endswith(".parquet")}
    rows = []
    for trial in trials:
        reported = trial.last_result or {}
        last = {k: reported.get(k) for k in ("step", "val_loss", "status", "node_id")}
        if trial.trial_id in files:
            last |= _last_row(pq, fs, files.pop(trial.trial_id))
        state = TUNE_STATES.get(trial.status, trial.status.lower())
        if state == "terminated" and reported.get("status") == "running":
            state = "stopped"
        rows.append(_status_row(trial.trial_id, trial.config, axes, state, last))
    for trial_id, path in files.items():
        last = _last_row(pq, fs, path)
        rows.append(_status_row(trial_id, last.get("config", {}), axes, "untracked", last))
    return sorted(rows, key=lambda r: r["trial_id"])


def _selector(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSelector(path, allow_not_found=True)


def _last_row(pq, fs, path: str) -> dict[str, Any]:
    try:
        table = pq.read_table(path, filesystem=fs)
    except Exception:
        return {}
    row = table.slice(table.num_rows - 1).to_pylist()[0] if table.num_rows else {}
    return {"step": row.get("step"), "val_loss": row.get("val_loss"), "status": row.get("status"),
            "num_iterations": row.get("num_iterations"),
            "config": json.loads(row["params"]) if row.get("params") else {}}


def _status_row(trial_id: str, config: dict[str, Any], axes: list[str], state: str,
                last: dict[str, Any]) -> dict[str, Any]:
    last.pop("config", None)
    return dict(trial_id=trial_id, state=state, config={k: config.get(k) for k in [*axes, "seed"]},
                num_iterations=last.get("num_iterations") or config.get("num_iterations", DEFAULT_BUDGET),
                step=last.get("step"),
                val_loss=last.get("val_loss"), curve_status=last.get("status"),
                node_id=last.get("node_id"))


def print_status(rows: list[dict[str, Any]], expected: int, console) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} of {expected} trials started")
    for name in ("trial", "config", "state", "step", "val loss", "curve"):
        table.add_column(name, justify="right" if name in ("step", "val loss") else "left")
    colour = {"terminated": "green", "stopped": "yellow", "error": "red", "running": "cyan"}
    for r in rows:
        step = f"{r['step']}/{r['num_iterations']}" if r["step"] is not None else ""
        loss = f"{r['val_loss']:.4f}" if r["val_loss"] is not None else ""
        state = f"[{colour.get(r['state'], 'white')}]{r['state']}[/]"
        table.add_row(r["trial_id"], " ".join(f"{k}={v}" for k, v in r["config"].items()), state,
                      step, loss, r["curve_status"] or "")
    console.print(table)
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if expected > len(rows):
        counts["not started"] = expected - len(rows)
    console.print(" · ".join(f"{n} {k}" for k, n in counts.items()))
