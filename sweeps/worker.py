"""The bridge from Ray to the trainer: a Tune trial runs one Ray Train job of W workers.

Ray 2.60 runs Train V2: `Tuner(TorchTrainer)` no longer works, so a Tune trial (the `Trial`
class; `run_trial` is the same as a function) builds a TorchTrainer and fits it in a thread,
and a Train callback (TuneBridge) hands the workers' reports back to it. The Train run is
named after the Tune trial, so a restarted trial resumes from its last checkpoint.

Curves: with local (shared) storage rank 0 writes the curve in place. With a URI (s3://, ...)
it writes the curve to a local file and copies it into storage through pyarrow.fs before each
report, so every validation point is in storage before Tune hears of it.
"""

from __future__ import annotations

import functools
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ray.train
from ray import tune
from ray.train import Checkpoint, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.callback import ControllerCallback  # Train's own hook; ray pinned

from ablate.results.curves import SWEEP_KEY, curve_path
from ablate.sweeps import states
from ablate.sweeps.rendezvous import BoundStoreConfig
from ablate.sweeps.storage import curve_location, is_uri, join, last_row, prune_checkpoints, upload

REPORTED = ("step", "num_iterations", "val_loss", "train_loss", "train_time_ms", "tokens_seen",
            "status")
# A run that sends no report for this long has stalled (a stopped or hung worker, a collective
# that never returns): see stall_limit.
STALL_STARTUP_S = 30 * 60  # before its first report: imports, data, compilation
STALL_FLOOR_S = 5 * 60
STALL_GAPS = 10  # times the longest gap between two of its reports so far


class RayReporter:
    """Sends each validation point (and rank 0's checkpoint) through ray.train.report, which
    every worker calls the same number of times. Adds the worker's node id (Tune's result
    only; the curve stays free of placement details) and first publishes the curve."""

    def __init__(self, publish: Callable[[], None] | None = None):
        self.publish = publish
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if self.publish is not None:
            self.publish()
        ray.train.report(metrics | {"node_id": self.node_id},
                         checkpoint=Checkpoint.from_directory(str(checkpoint))
                         if checkpoint is not None else None)


class TuneBridge(ray.train.UserCallback):
    """Runs in the Train controller: puts rank 0's metrics of every report, with the
    controller's own handle, on a queue that the trial's driver reads.

    Used instead of Ray's TuneReportCallback, which forwards reports from Tune's main thread
    and in Ray 2.60 deadlocks there (Queue.put on a full result queue, forever) when the last
    report is still in flight as the trial function returns: seen on a loaded 2-core machine
    with the health check at 0.1 s."""

    def __init__(self):
        self.queue = _report_queue()

    def after_report(self, run_context, metrics, checkpoint):
        self.queue.put((metrics[0], ray.get_runtime_context().current_actor))


class ControllerHello(ControllerCallback):
    """Hands the trial's driver the Train controller as soon as it starts, before any report:
    a run that stalls before its first validation point can still be aborted."""

    def __init__(self, reports):
        self.queue = reports

    def after_controller_start(self, train_run_context):
        self.queue.put((None, ray.get_runtime_context().current_actor))


def stall_limit(setting: float | None, longest_gap: float | None) -> float:
    """Seconds without a report after which a run counts as stalled: the sweep's
    `stall_timeout`, else STALL_GAPS times the longest gap between two of the run's reports
    (its own step time, measured), at least STALL_FLOOR_S; while it starts up (no gap measured
    yet, or no report since it was started again), at least STALL_STARTUP_S."""
    if longest_gap is None:
        return max(setting or 0, STALL_STARTUP_S)
    return setting if setting else max(STALL_FLOOR_S, STALL_GAPS * longest_gap)


class TrialStalled(RuntimeError):
    """A trial whose run stalled more often than max_failures allows restarts."""


@functools.cache
def _report_queue():
    """One queue actor per trial-driver process: a reused driver (reuse_actors) reuses it;
    each Train run leaves it empty when it closes."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


class TrainRun:
    """A trial's Ray Train run, fitting in a background thread, and the reports it sends
    back (one per validation point). A trial whose curve already ends completed or diverged
    only gives back its last row: Tune's experiment state can lag the curves by seconds, and
    a resumed sweep must never train a finished trial again.

    A run that stalls (no report for stall_limit seconds: a stopped or hung worker, whose
    process Ray still sees alive) is aborted and started again, resuming from its last
    checkpoint, at most max_failures times; its next report says so (`stalled`)."""

    def __init__(self, config: dict[str, Any], settings: dict[str, Any], trial_id: str):
        storage, sweep, res = settings["storage"], settings["sweep"], settings["resources"]
        self.final = final_row(storage, sweep, trial_id, settings.get("stopped", ()))
        self.controller, self.last, self.error = None, None, None
        self.thread = None
        self.stall_setting, self.restarts_left = settings.get("stall_timeout"), settings["max_failures"]
        self.heard, self.reported, self.longest_gap, self.stalled = time.monotonic(), False, None, None
        if self.final is not None:
            return
        uri = curve_location(storage, sweep, trial_id) if is_uri(storage) else None
        local_root = Path(tempfile.gettempdir()) / "ablate" if uri else storage
        labels = dict(data=settings["data"], sweep=sweep, trial_id=trial_id, workers=res["workers"],
                      out=str(curve_path(local_root, sweep, trial_id)),
                      _curve_uri=uri, _builtin=settings.get("builtin", False),
                      _sweep_meta=sweep_meta(settings))
        self.bridge = TuneBridge()
        self.run_folder = join(storage, sweep, "train", trial_id)
        gpus = res["gpus_per_worker"]
        per_worker = {"CPU": res["cpus_per_worker"]} | ({"GPU": gpus} if gpus else {})
        self.trainer = functools.partial(
            TorchTrainer,
            train_worker,
            train_loop_config={**config, **labels},
            torch_config=BoundStoreConfig(backend="nccl" if gpus else "gloo"),
            scaling_config=ScalingConfig(num_workers=res["workers"], use_gpu=bool(gpus),
                                         resources_per_worker=per_worker,
                                         placement_strategy=res.get("placement", "pack").upper()),
            run_config=ray.train.RunConfig(
                name=trial_id, storage_path=join(storage, sweep, "train"),
                callbacks=[self.bridge, ControllerHello(self.bridge.queue)],
                failure_config=FailureConfig(max_failures=settings["max_failures"])),
        )
        self._start()

    def _start(self) -> None:
        """Fit a new TorchTrainer of the run (the same name: it resumes from the run's last
        checkpoint, if it has one)."""
        self.controller, self.error, self.heard, self.reported = None, None, time.monotonic(), False
        self.thread = threading.Thread(target=self._fit, args=(self.trainer(),), name="train-fit",
                                       daemon=True)
        self.thread.start()

    def _fit(self, trainer: TorchTrainer) -> None:
        try:
            trainer.fit()
        except BaseException as e:  # raised again by next()
            self.error = e

    def next(self) -> dict[str, Any]:
        """The next validation point's metrics, with `done` set on the last one."""
        if self.final is not None:
            report = {k: self.final.get(k) for k in REPORTED}
            report["num_iterations"] = self.final["config"].get("num_iterations",
                                                                report["num_iterations"])
        else:
            while True:
                try:
                    report, self.controller = self.bridge.queue.get(timeout=0.5)
                except queue.Empty:
                    if not self.thread.is_alive() and self.bridge.queue.empty():
                        raise self.error or RuntimeError(
                            "the Train run ended without reporting its last validation point"
                        ) from None
                    silent = time.monotonic() - self.heard
                    gap = self.longest_gap if self.reported else None  # None: starting up
                    if silent > stall_limit(self.stall_setting, gap):
                        self._restart(silent)
                    continue
                if report is None:  # the controller's hello
                    continue
                now = time.monotonic()
                if self.reported:  # a gap between two reports of this fit: no start-up in it
                    self.longest_gap = max(self.longest_gap or 0.0, now - self.heard)
                self.heard, self.reported = now, True
                break
            if self.stalled:
                report, self.stalled = report | {"stalled": self.stalled}, None
            if report["status"] in states.FINAL_CURVE:  # never restored again: the latest and best stay
                prune_checkpoints(self.run_folder)
        self.last = report
        return report | {"done": report["status"] != states.RUNNING}

    def _restart(self, silent: float) -> None:
        """Abort a stalled run (its workers killed, stopped ones too) and fit it again from
        its last checkpoint; a trial out of restarts fails (and `ablate resume` retries it)."""
        why = f"no report for {silent:.0f} s (stall limit)"
        self._abort()
        if self.restarts_left <= 0:
            raise TrialStalled(f"stalled: {why}, and no restart left (sweep.max_failures)")
        self.restarts_left -= 1
        self.stalled = f"{why}: its workers were restarted from the last checkpoint"
        self._start()

    def _abort(self) -> None:
        """End the Train run now: what Ray's own Ctrl-C handler calls (workers and placement
        group go); then leave the reused queue empty."""
        if self.controller is not None:
            try:
                ray.get(self.controller.abort.remote(), timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass  # abort ends by exiting the controller
        self._wind_down()

    def close(self) -> None:
        """Wait for a finished run to wind down; abort one stopped early (Tune's decision) so
        that its workers and their placement group go now. Train's own cleaner would need
        the State API, which the embedded Ray (no dashboard) does not serve."""
        if self.thread is None:
            return
        finished = self.last is not None and self.last["status"] != states.RUNNING
        if self.thread.is_alive() and not finished:
            self._abort()
            return
        self._wind_down()

    def _wind_down(self) -> None:
        """Wait for the fit thread, then leave the process's reused queue empty."""
        self.thread.join(timeout=120)
        while not self.bridge.queue.empty():
            self.bridge.queue.get_nowait()


class Trial(tune.Trainable):
    """The sweep's trainable: a Tune class trial whose steps are validation points.

    A class rather than a function so that Tune calls `cleanup` (or `reset_config`, when it
    reuses the process) before it retires a trial: an early-stopped trial aborts its Train run
    there instead of leaving its workers holding their CPUs and GPUs."""

    def setup(self, config: dict[str, Any], settings: dict[str, Any]):
        self.settings = settings
        self.run = TrainRun(config, settings, self.trial_id)

    def step(self) -> dict[str, Any]:
        return self.run.next()

    def cleanup(self):
        self.run.close()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.run.close()
        self.run = TrainRun(new_config, self.settings, self.trial_id)
        return True


def sweep_meta(settings: dict[str, Any]) -> dict[str, Any]:
    """What a trial's curve records of its sweep, for `ablate report`'s defaults."""
    meta = {"axes": settings.get("axes", []), "target": settings.get("target")}
    return meta | ({"baseline": settings["baseline"]} if settings.get("baseline") else {})


def train_worker(config: dict[str, Any]) -> None:
    """Per-worker function of the TorchTrainer: the process group is already set up."""
    from ablate.trainer.config import TrainConfig
    from ablate.trainer.data import ensure_builtin
    from ablate.trainer.train import train

    uri = config.pop("_curve_uri", None)
    curve_meta = {SWEEP_KEY: config.pop("_sweep_meta")}
    if config.pop("_builtin", False):
        ensure_builtin(Path(config["data"]))
    cfg = TrainConfig.from_flat(config)
    rank0 = ray.train.get_context().get_world_rank() == 0
    publish = (lambda: publish_trial(cfg.out, uri)) if uri and rank0 else None
    checkpoint = ray.train.get_checkpoint()
    try:
        if checkpoint is None:
            train(cfg, RayReporter(publish), curve_meta=curve_meta)
        else:
            with checkpoint.as_directory() as folder:
                train(cfg, RayReporter(publish), resume=folder, curve_meta=curve_meta)
    finally:
        if publish is not None and Path(cfg.out).exists():
            publish()  # the last rows, including a failure's


def publish_trial(local: str, uri: str) -> None:
    """Copy a trial's local curve (and, once it has them, its final weights) to URI storage:
    the weights first, so a curve that says completed has its weights beside it."""
    from ablate.trainer.weights import weights_location, weights_path

    weights = weights_path(local)
    if weights.exists():
        upload(weights, weights_location(uri))
    upload(local, uri)


def run_trial(config: dict[str, Any], *, settings: dict[str, Any]) -> None:
    """Tune function trainable: one trial = one distributed training of the trial's config.

    Settings: storage, sweep, data, resources (workers, cpus_per_worker, gpus_per_worker,
    placement), max_failures, builtin (prepare the built-in corpus on the node if missing).
    Sweeps use the `Trial` class (early stopping frees resources there); this function form
    serves searches that run each trial to its end."""
    run = TrainRun(config, settings, tune.get_context().get_trial_id())
    try:
        while True:
            report = run.next()
            done = report.pop("done")
            tune.report(report)
            if done:
                return
    finally:
        run.close()


def final_row(storage: str, sweep: str, trial_id: str,
              stopped: Iterable[str] = ()) -> dict[str, Any] | None:
    """The last row of a trial's curve if the trial has finished: completed, diverged, or
    (`stopped`) ended by early stopping in an earlier session."""
    row = last_row(curve_location(storage, sweep, trial_id))
    if row is None:
        return None
    return row if row["status"] in states.FINAL_CURVE or trial_id in stopped else None
