"""[search] method = "tpe": Optuna's TPE sampler picks the sweep's grid points one at a time,
from the losses of the points before; each point runs with every seed, as a grid's do.

The Optuna study (`sweep:<name>` in SQLite, <folder>/optuna.db) is the search's whole state:
Tune's own searcher checkpoints are pickles, which nothing here writes or reads back. Each
study trial is one grid point (params: the axes' values; user attribute `point`: its order),
completed with the mean final val loss of its seeds' trials (minimised; a diverged run counts
as infinite). Tune trials keep the sweep's stable ids `<prefix>_<index>`, with index =
point x seeds + the seed's position, as a grid's trials are numbered. So `ablate resume`, which
builds a new Tuner from sweep.json, first runs every point the study holds again under the
same ids (a trial whose curve ended ends at once, an unfinished one continues from its last
checkpoint, a failed one runs again), then asks TPE only for the points still missing: no
trial runs twice and none is lost.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from ray.tune.experiment.config_parser import _create_trial_from_spec
from ray.tune.search import Searcher, SearchGenerator
from ray.tune.search.variant_generator import format_vars
from ray.tune.utils import flatten_dict, merge_dicts

from ablate.results.curves import curve_path, final_loss
from ablate.sweeps.search.searcher import StudySearcher
from ablate.sweeps.search.study import curve_loss
from ablate.sweeps.spec import Sampling, SpecError, SweepSpec
from ablate.sweeps.storage import is_uri, join, trial_states

STUDY_FILE = "optuna.db"
MAX_REPEATS = 20  # TPE proposals of a point already run before one is drawn at random instead
CHOICE_TYPES = (bool, int, float, str)  # what an Optuna categorical parameter can hold


def study_name(sweep: str) -> str:
    return f"sweep:{sweep}"


def study_url(folder: str) -> str:
    return f"sqlite:///{(Path(folder) / STUDY_FILE).resolve()}"


def candidates(spec: SweepSpec) -> SweepSpec:
    """The spec with every point TPE may choose as its points (and trials)."""
    return dataclasses.replace(spec, sampling=Sampling())


def check_space(spec: SweepSpec, folder: str) -> None:
    """Refuse what TPE cannot search: a sweep folder that is not local (the SQLite study lives
    there), or an axis whose values are not plain numbers, strings or booleans."""
    if is_uri(folder):
        raise SpecError(f"{spec.source}: search.method: 'tpe' keeps its Optuna study in the "
                        f"sweep's folder, which must be local (or mounted), not {folder}")
    for name, values in spec.axes.items():
        bad = [v for v in values if not isinstance(v, CHOICE_TYPES)]
        if bad:
            raise SpecError(f"{spec.source}: axes.{name}: 'tpe' chooses among plain values "
                            f"(numbers, strings, booleans), not {bad[0]!r}")


@dataclass
class Point:
    """One grid point of the search: its study trial, and the losses of its seeds so far."""

    number: int  # the study trial's number
    params: dict[str, Any]
    state: TrialState = TrialState.RUNNING
    losses: dict[int, float] = field(default_factory=dict)  # seed -> final val loss


class TpeSearcher(StudySearcher):
    """Tune's side of the TPE study: hands out (trial id, config) pairs, points already in the
    study first, and tells the study each point's mean loss once all its seeds have ended."""

    def __init__(self, spec: SweepSpec, storage: str, prefix: str, max_concurrent: int):
        super().__init__(metric="val_loss", mode="min")
        self.spec, self.storage, self.prefix = spec, storage, prefix
        self.max_concurrent = max_concurrent
        self.folder = join(storage, spec.name)
        self.axes = list(spec.axes)
        self.distributions: dict[str, BaseDistribution] = {
            n: CategoricalDistribution(v) for n, v in spec.axes.items()}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = open_study(self.folder, spec)
        self.points = load_points(self.study, spec, join(self.folder, STUDY_FILE))
        startup = max(1, min(10, spec.sampling.samples // 3))
        self.study.sampler = optuna.samplers.TPESampler(
            n_startup_trials=startup, constant_liar=True,
            seed=(spec.sampling.seed + len(self.study.trials)) % 2**32)  # a resume draws anew
        self.check_ledger()
        self.todo: deque[tuple[int, int]] = deque(  # (point, seed position), in id order
            (p, s) for p in range(len(self.points)) for s in range(len(spec.seeds)))
        self.live: dict[str, tuple[int, int]] = {}  # Tune trial id -> (point, seed position)

    def check_ledger(self) -> None:
        """Refuse to go on where a trial the folder has run (trials.json) is not the study's
        point of its id: the study was lost or replaced, and asking TPE anew would run other
        points under ids whose curves have ended."""
        seeds = list(self.spec.seeds)
        for trial_id, entry in trial_states(self.folder).items():
            prefix, _, index = trial_id.rpartition("_")
            point, position = divmod(int(index), len(seeds)) if index.isdigit() else (-1, 0)
            held = (point < len(self.points) and prefix == self.prefix and point >= 0
                    and entry.get("config") == {**self.points[point].params, "seed": seeds[position]})
            if not held:
                raise SpecError(f"{join(self.folder, STUDY_FILE)}: does not hold trial {trial_id} "
                                f"({entry.get('config')}) that this sweep has run: the TPE study "
                                "is the search's state (lost or replaced?); cannot go on")

    def trial_id(self, point: int, seed_position: int) -> str:
        return f"{self.prefix}_{point * len(self.spec.seeds) + seed_position:05d}"

    def next_trial(self) -> tuple[str, dict[str, Any]] | str | None:
        """The next trial to start, None while the concurrency cap is reached, or FINISHED."""
        if not self.todo and len(self.points) >= self.spec.sampling.samples:
            return Searcher.FINISHED
        if len(self.live) >= self.max_concurrent:
            return None
        if not self.todo:
            self.ask_point()
        point, position = self.todo.popleft()
        trial_id = self.trial_id(point, position)
        self.live[trial_id] = (point, position)
        return trial_id, {**self.points[point].params, "seed": self.spec.seeds[position]}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        raise NotImplementedError("StableIdSearch asks next_trial(): it names the trials")

    def ask_point(self) -> None:
        """A new point from TPE. A proposal of a point already run is failed in the study (it
        runs once) and TPE is asked again; after MAX_REPEATS, an unrun point is drawn."""
        seen = {self.key(p.params) for p in self.points}
        for _ in range(MAX_REPEATS):
            trial = self.study.ask(self.distributions)
            if self.key(trial.params) not in seen:
                break
            trial.set_user_attr("repeat", True)
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            rng = random.Random(self.spec.sampling.seed + len(self.points))
            unrun = [p for p in candidates(self.spec).points() if self.key(p) not in seen]
            self.study.enqueue_trial(rng.choice(unrun))
            trial = self.study.ask(self.distributions)
        trial.set_user_attr("point", len(self.points))
        self.points.append(Point(trial.number, {n: trial.params[n] for n in self.axes}))
        self.todo.extend((len(self.points) - 1, s) for s in range(len(self.spec.seeds)))

    def key(self, params: dict[str, Any]) -> tuple:
        return tuple((type(params[n]).__name__, params[n]) for n in self.axes)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        where = self.live.pop(trial_id, None)
        if where is None or error:  # a failed trial leaves its point open: resume reruns it
            return
        point, position = where
        loss = trial_loss(curve_path(self.storage, self.spec.name, trial_id), result)
        p = self.points[point]
        if loss is None or p.state != TrialState.RUNNING:
            return
        p.losses[self.spec.seeds[position]] = loss
        if len(p.losses) == len(self.spec.seeds):
            self.study.tell(p.number, sum(p.losses.values()) / len(p.losses))
            p.state = TrialState.COMPLETE


class StableIdSearch(SearchGenerator):
    """Tune's SearchGenerator, but the searcher names each trial (`<prefix>_<index>`), as
    `same_trial_ids` does for grids; and no searcher state is saved to the folder."""

    def __init__(self, searcher: TpeSearcher):
        super().__init__(searcher)
        self.tpe = searcher  # Tune's `searcher` attribute is typed as any Searcher

    def create_trial_if_possible(self, experiment_spec: dict) -> Any:
        suggested = self.tpe.next_trial()
        if suggested is None:
            return None
        if isinstance(suggested, str):  # Searcher.FINISHED
            self._finished = True
            return None
        trial_id, config = suggested
        spec = copy.deepcopy(experiment_spec)
        spec["config"] = merge_dicts(spec["config"], copy.deepcopy(config))
        self._counter += 1
        tag = f"{self._counter}_{format_vars({(k,): v for k, v in config.items()})}"
        return _create_trial_from_spec(
            spec, self._parser, evaluated_params=flatten_dict(config),
            experiment_tag=tag, trial_id=trial_id)

    def has_checkpoint(self, dirpath: str) -> bool:
        return False

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        pass  # the study is the state: Tune's would be a pickle in the folder


def tpe_search(spec: SweepSpec, storage: str, prefix: str, max_concurrent: int) -> StableIdSearch:
    check_space(spec, join(storage, spec.name))
    return StableIdSearch(TpeSearcher(spec, storage, prefix, max_concurrent))


def open_study(folder: str, spec: SweepSpec) -> optuna.Study:
    """The sweep's study, made or loaded. Trials an earlier driver asked but never named a
    point (it died in between) are failed: they hold no run."""
    url = study_url(folder)
    try:
        study = optuna.create_study(storage=optuna.storages.RDBStorage(url),
                                    study_name=study_name(spec.name), direction="minimize",
                                    load_if_exists=True)
    except Exception as e:  # a corrupt or foreign file
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"{Path(folder) / STUDY_FILE}: cannot open the sweep's Optuna study: {why}") from None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "point" not in t.user_attrs:
            study.tell(t.number, state=TrialState.FAIL)
    return study


def load_points(study: optuna.Study, spec: SweepSpec, where: str = STUDY_FILE) -> list[Point]:
    """The study's points in order, checked against the spec's axes (the file is data read
    from a folder: a point off the grid or a gap in the order is refused, naming it)."""
    points: dict[int, Point] = {}
    for t in study.get_trials(deepcopy=False):
        order = t.user_attrs.get("point")
        if order is None:
            continue
        params = {n: t.params.get(n) for n in spec.axes}
        if (not isinstance(order, int) or order in points or set(t.params) != set(spec.axes)
                or any(params[n] not in spec.axes[n] for n in spec.axes)):
            raise SpecError(f"{where}: trial {t.number} is not a point of this sweep's axes "
                            "(the file does not belong to this sweep)")
        points[order] = Point(t.number, params, t.state)
    if sorted(points) != list(range(len(points))) or len(points) > spec.sampling.samples:
        raise SpecError(f"{where}: the study's points are not 0..n-1 of at most "
                        f"search.num_samples = {spec.sampling.num_samples}")
    if len({tuple(p.params.values()) for p in points.values()}) < len(points):
        raise SpecError(f"{where}: the study holds a point twice")
    return [points[i] for i in range(len(points))]


def trial_loss(curve: Path, result: dict | None) -> float | None:
    """A trial's final val loss, from its curve (Tune's last result, the fallback, can miss
    the final report); infinite if it diverged; None if it did not train every step (early
    stopping ended it: its point stays open, and TPE does not learn from it)."""
    loss = curve_loss(curve)
    if loss is None and result:
        loss = final_loss(result)  # the last report: a curve row's keys
    return loss
