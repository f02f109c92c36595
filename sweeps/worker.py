"""The bridge from Tune to the trainer: a Tune trial is a run of the trial's config on a warm
worker group (sweeps/gang.py), one validation point per Tune step.

The trainable is a Tune class (`Trial`) that Tune reuses for trial after trial of a sweep
(`reuse_actors`): its gang of W workers, their processes, imports and process group stay,
and each trial starts from its own config alone (a warm trial equals a cold one, bit for
bit on CPU). What crosses into it is typed: `TrialSettings` (the sweep's) and the trial's
TrainConfig, built once here.

Faults: a worker that dies, fails or stalls (no report for the stall limit) takes its gang
with it; a new gang continues the trial from its last checkpoint (sweeps/checkpoints.py), at
most `max_failures` times, and its next report says so (`stalled`). Out of restarts, the
trial fails (and `ablate resume` tries it again).

Curves: with local (shared) storage rank 0 writes the curve in place. With a URI (s3://, ...)
it writes the curve to a local file and copies it into storage before each report, so every
validation point is in storage before Tune hears of it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions
from ray import tune

from ablate.core import states
from ablate.results.curves import SWEEP_KEY, curve_path, ended
from ablate.sweeps.checkpoints import latest_checkpoint, trial_checkpoints
from ablate.sweeps.gang import Gang, Point, TrialWork
from ablate.sweeps.storage import curve_location, is_uri, last_row

REPORTED = ("step", "num_iterations", "val_loss", "train_loss", "train_time_ms", "tokens_seen",
            "status")
# A run that sends no report for this long has stalled (a stopped or hung worker, a collective
# that never returns): see stall_limit.
STALL_STARTUP_S = 30 * 60  # before its first report: imports, data, compilation
STALL_FLOOR_S = 5 * 60
STALL_GAPS = 10  # times the longest gap between two of its reports so far
STOP_TIMEOUT_S = 60  # for workers to leave a trial stopped early; else the gang is replaced
FAILURE_GRACE_S = 10  # for rank 0 to mark its curve failed once another rank has failed


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep (or step search) shares, typed: where it writes, what it
    reads, the gang's shape, its fault limits, and what its curves record of the sweep."""

    storage: str
    sweep: str
    data: str
    workers: int
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    placement: str = "pack"
    max_failures: int = 1
    stall_timeout: float | None = None
    builtin: bool = False  # prepare the built-in corpus on each node that lacks it
    sweep_meta: dict[str, Any] = field(default_factory=dict)  # axes, target, baseline
    stopped: frozenset[str] = frozenset()  # trials early stopping ended in an earlier session

    @classmethod
    def of(cls, settings: dict[str, Any]) -> TrialSettings:
        """From the settings dict that the sweep's spec gives (sweeps/tuner.py trial_settings)."""
        res = settings["resources"]
        meta = {"axes": settings.get("axes", []), "target": settings.get("target")}
        meta |= {"baseline": settings["baseline"]} if settings.get("baseline") else {}
        return cls(storage=str(settings["storage"]), sweep=settings["sweep"], data=str(settings["data"]),
                   workers=res["workers"], cpus_per_worker=res["cpus_per_worker"],
                   gpus_per_worker=res["gpus_per_worker"], placement=res.get("placement", "pack"),
                   max_failures=settings["max_failures"], stall_timeout=settings.get("stall_timeout"),
                   builtin=settings.get("builtin", False), sweep_meta=meta,
                   stopped=frozenset(settings.get("stopped", ())))

    def placement_group(self):
        """Tune's resource request for one trial: its driver (bundle 0: a trial slot where the
        cluster declares them, else a little of Ray's memory resource; never a CPU its workers
        need) and one bundle per worker, as one gang."""
        from ray.tune import PlacementGroupFactory

        from ablate.sweeps.tuner import trial_resources

        gpus = {"GPU": self.gpus_per_worker} if self.gpus_per_worker else {}
        worker = {"CPU": self.cpus_per_worker} | gpus
        return PlacementGroupFactory([trial_resources(), *[dict(worker)] * self.workers],
                                     strategy=self.placement.upper())


def stall_limit(setting: float | None, longest_gap: float | None) -> float:
    """Seconds without a report after which a run counts as stalled: the sweep's
    `stall_timeout`, else STALL_GAPS times the longest gap between two of the run's reports
    (its own step time, measured), at least STALL_FLOOR_S; while it starts up (no gap measured
    yet, or no report since it was started again), at least STALL_STARTUP_S."""
    if longest_gap is None:
        return max(setting or 0, STALL_STARTUP_S)
    return setting if setting else max(STALL_FLOOR_S, STALL_GAPS * longest_gap)


class TrialStalled(RuntimeError):
    """A gang that sent no report for the stall limit (a stopped or hung worker)."""


class Slot:
    """The trainable's gang, made when first needed and kept across the trials Tune runs in
    this process; replaced whole when one of its workers fails."""

    def __init__(self, settings: TrialSettings):
        self.settings, self.current = settings, None

    def gang(self) -> Gang:
        if self.current is None:
            s = self.settings
            self.current = Gang(s.workers, s.cpus_per_worker, s.gpus_per_worker)
        return self.current

    def discard(self) -> None:
        if self.current is not None:
            self.current.kill()
            self.current = None


class TrialRun:
    """A trial's run on the slot's gang, and the reports it sends back (one per validation
    point). A trial whose curve already ends completed or diverged only gives back its last
    row: Tune's experiment state can lag the curves by seconds, and a resumed sweep must never
    train a finished trial again."""

    def __init__(self, slot: Slot, config: dict[str, Any], settings: TrialSettings, trial_id: str):
        self.slot, self.settings = slot, settings
        self.final = final_row(settings.storage, settings.sweep, trial_id, settings.stopped)
        self.restarts_left, self.stalled = settings.max_failures, None
        self.heard, self.reported, self.longest_gap = time.monotonic(), False, None
        self.running = False
        if self.final is not None:
            return
        self.work = trial_work(config, settings, trial_id)
        self._start()

    def _start(self) -> None:
        """Start the trial on the gang, from its latest checkpoint if it has one."""
        self.slot.gang().start(self.work, latest_checkpoint(self.work.checkpoints))
        self.heard, self.reported, self.running = time.monotonic(), False, True

    def next(self) -> dict[str, Any]:
        """The next validation point's metrics, with `done` set on the last one."""
        if self.final is not None:
            report = {k: self.final.get(k) for k in REPORTED}
            report["num_iterations"] = self.final["config"].get("num_iterations",
                                                                report["num_iterations"])
        else:
            point = self._next_point()
            report = point.metrics | {"node_id": point.node_id}
            if self.stalled:
                report, self.stalled = report | {"stalled": self.stalled}, None
        done = report["status"] != states.RUNNING
        self.running = self.running and not done
        return report | {"done": done}

    def _next_point(self) -> Point:
        """Rank 0's next point; a failed or stalled gang is replaced and the trial continues
        from its last checkpoint, while restarts are left."""
        while True:
            try:
                point = self._wait()
            except (ray.exceptions.RayError, TrialStalled) as e:
                self.slot.discard()
                self.running = False
                if self.restarts_left <= 0:
                    raise
                self.restarts_left -= 1
                self.stalled = f"{why_restarted(e)}: its workers were restarted from the last checkpoint"
                self._start()
                continue
            now = time.monotonic()
            if self.reported:  # a gap between two reports of this start: no start-up in it
                self.longest_gap = max(self.longest_gap or 0.0, now - self.heard)
            self.heard, self.reported = now, True
            return point

    def _wait(self) -> Point:
        """Every rank's next point (rank 0's is returned); the first failure among them is
        raised at once, and a gang silent for the stall limit is stalled."""
        refs = self.slot.gang().next_refs()
        pending, points = list(refs), {}
        while pending:
            silent = time.monotonic() - self.heard
            gap = self.longest_gap if self.reported else None  # None: starting up
            left = stall_limit(self.settings.stall_timeout, gap) - silent
            if left <= 0:
                raise TrialStalled(f"no report for {silent:.0f} s (stall limit)")
            ready, pending = ray.wait(pending, num_returns=1, timeout=min(left, 5.0))
            for ref in ready:
                try:
                    points[ref] = ray.get(ref)
                except ray.exceptions.RayError:
                    if refs[0] in pending:  # rank 0 writes the failure into the curve: let it
                        ray.wait([refs[0]], timeout=FAILURE_GRACE_S)
                    raise
        point = points[refs[0]]
        if point is None:
            raise RuntimeError("the run ended without reporting its last validation point")
        return point

    def close(self) -> None:
        """Leave a trial stopped early (Tune's decision): its workers drop it between two
        points and wait for the next; a gang that does not answer is replaced."""
        if not self.running:
            return
        self.running = False
        try:
            self.slot.gang().stop(timeout=STOP_TIMEOUT_S)
        except ray.exceptions.RayError:
            self.slot.discard()


class Trial(tune.Trainable):
    """The sweep's trainable: a Tune class trial whose steps are validation points.

    Tune reuses it for the next trial (`reset_config`), gang and all; it calls `cleanup` (or
    `reset_config`) before it retires a trial, so an early-stopped trial leaves its workers
    free at once."""

    def setup(self, config: dict[str, Any], settings: TrialSettings | None = None):
        assert settings is not None, "Trial needs tune.with_parameters(Trial, settings=...)"
        self.settings = settings
        self.slot = Slot(settings)
        self.run = TrialRun(self.slot, config, settings, self.trial_id)

    def step(self) -> dict[str, Any]:
        return self.run.next()

    def cleanup(self):
        self.run.close()
        self.slot.discard()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.run.close()
        self.run = TrialRun(self.slot, new_config, self.settings, self.trial_id)
        return True


def trial_work(config: dict[str, Any], settings: TrialSettings, trial_id: str) -> TrialWork:
    """The trial's TrainConfig (its config plus where it runs and writes) and what its
    workers need besides."""
    from ablate.trainer.config import TrainConfig

    storage, sweep = settings.storage, settings.sweep
    uri = curve_location(storage, sweep, trial_id) if is_uri(storage) else None
    local_root = Path(tempfile.gettempdir()) / "ablate" if uri else storage
    cfg = TrainConfig.from_flat({**config, "data": settings.data, "sweep": sweep, "trial_id": trial_id,
                                 "workers": settings.workers,
                                 "out": str(curve_path(local_root, sweep, trial_id))})
    return TrialWork(config=cfg, checkpoints=trial_checkpoints(storage, sweep, trial_id),
                     curve_meta={SWEEP_KEY: settings.sweep_meta}, curve_uri=uri,
                     builtin=settings.builtin)


def why_restarted(error: BaseException) -> str:
    """A failure of a gang's worker in a few words, for the restart's log line."""
    if isinstance(error, TrialStalled):
        return str(error)
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause
        return f"a worker failed ({type(cause).__name__}: {cause})" if cause else "a worker failed"
    return f"a worker died ({type(error).__name__})"


def final_row(storage: str, sweep: str, trial_id: str,
              stopped: Iterable[str] = ()) -> dict[str, Any] | None:
    """The last row of a trial's curve if the trial has finished: completed, diverged, or
    (`stopped`) ended by early stopping in an earlier session."""
    row = last_row(curve_location(storage, sweep, trial_id))
    if row is None:
        return None
    return row if ended(row) or trial_id in stopped else None
