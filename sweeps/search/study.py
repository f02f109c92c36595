"""Where a step search lives between runs: an Optuna study in an RDB storage, kept true to the
curves on disk.

SQLite under the sweep's folder by default (any RDB URL otherwise), one study per search named
after the sweep, so optuna-dashboard can watch it live and re-running the same command resumes
it. The study remembers which config it searched (its "question"); a different config under
the same name is refused rather than mixed in. Before a run, `settle` fails the trials an
interrupted run left RUNNING and adds every completed probe curve the study does not know, so
no finished probe is run twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from ablate.core.fields import OUTSIDE_CONFIG
from ablate.results.curves import final_loss
from ablate.sweeps.search.method import distributions
from ablate.sweeps.search.spec import SearchSpec
from ablate.sweeps.spec import SpecError
from ablate.sweeps.storage import last_row
from ablate.trainer.config import TrainConfig

PROBED = "num_iterations"  # what the search varies: each probe's step count


def study_name(spec: SearchSpec) -> str:
    return f"search-steps:{spec.name}"


def verdicts_name(spec: SearchSpec) -> str:
    """The study of decided step counts: its best trial is the answer (see StepSearch)."""
    return f"{study_name(spec)}:verdicts"


def default_url(folder: Path) -> str:
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it as given
        return url


def question(config: dict[str, Any]) -> dict[str, Any]:
    """What a probe's losses depend on: its config's identity fields (core.fields) but the
    step count the search varies."""
    plain = json.loads(json.dumps(config, default=str))
    return {k: v for k, v in sorted(plain.items()) if k not in OUTSIDE_CONFIG and k != PROBED}


def question_differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The fields on which a study's saved question and this search's differ. A field the
    saved question lacks was not asked about when the study began (an older ablate's roles,
    or a field added since): the study is not refused for it."""
    have = question(have)
    return sorted(k for k in have if want.get(k) != have[k])


def spec_question(spec: SearchSpec) -> dict[str, Any]:
    """The question of the search's probes (their curves' params hold the worker count)."""
    probe = spec.probe(spec.search.min_steps, 0) | {"workers": spec.sweep.resources.workers}
    return question(TrainConfig.from_flat(probe).to_flat())


def refuse_foreign_database(url: str) -> None:
    """Optuna adds its tables to whatever database it is given: refuse one that already holds
    tables of something else, before anything is written to it."""
    try:
        from sqlalchemy import create_engine, inspect

        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception:  # a bad URL, a missing driver: open_study names the URL's fault
        return
    if tables and "studies" not in tables:
        listed = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise SpecError(f"--optuna-storage: {shown(url)} holds other tables ({listed}), not an "
                        "Optuna study; give a new or an Optuna database")


def check_url(url: str) -> None:
    """Refuse, before anything is written, a URL that names no database SQLAlchemy can open:
    malformed, or a dialect or driver that is not installed (no connection is made)."""
    try:
        from sqlalchemy import create_engine

        create_engine(url).dispose()
    except Exception as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"--optuna-storage: cannot open {shown(url)}: {why}") from None


def open_study(url: str, spec: SearchSpec) -> optuna.Study:
    """The search's study, made or loaded; a bad URL or another config's study -> SpecError."""
    name = study_name(spec)
    refuse_foreign_database(url)
    try:
        study = optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name=name,
                                    direction="minimize", load_if_exists=True)
    except Exception as e:  # any failure to open the storage is the URL's fault here
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"--optuna-storage: cannot open {shown(url)}: {why}") from None
    want, have = spec_question(spec), study.user_attrs.get("question")
    if have is None:
        study.set_user_attr("question", want)
    elif keys := question_differences(have, want):
        raise SpecError(f"{shown(url)}: study {name!r} searched another config "
                        f"({', '.join(keys)} differ); choose another sweep.name or storage")
    study.set_user_attr("search", asdict(spec.search))
    return study


def open_verdicts(url: str, spec: SearchSpec) -> optuna.Study:
    """The verdicts study beside the probes' (open_study has checked the URL and the config)."""
    return optuna.create_study(storage=optuna.storages.RDBStorage(url), study_name=verdicts_name(spec),
                               direction="minimize", load_if_exists=True)


def curve_loss(path: Path) -> float | None:
    """The final loss a trial's curve shows, once it has finished."""
    row = last_row(str(path))
    return None if row is None else final_loss(row)


def completed_probes(curves: Path, spec: SearchSpec) -> dict[str, tuple[int, int, float]]:
    """trial_id -> (steps, seed, final loss) of every finished curve of this search's config."""
    want, out = spec_question(spec), {}
    for path in sorted(curves.glob("*.parquet")):
        row = last_row(str(path))
        if row is None or question(row["config"]) != want:
            continue
        loss = final_loss(row)
        if loss is not None:
            out[row["trial_id"]] = (row["config"]["num_iterations"], row["config"]["seed"], loss)
    return out


def settle(study: optuna.Study, spec: SearchSpec, curves: Path) -> int:
    """Fail trials left RUNNING, then add finished probe curves the study lacks; returns how
    many were added."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
    known = {t.user_attrs.get("trial_id")
             for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    added = 0
    for trial_id, (steps, seed, loss) in completed_probes(curves, spec).items():
        if trial_id in known or steps not in spec.search.grid:
            continue
        study.add_trial(create_trial(params={"steps": steps, "seed": seed},
                                     distributions=distributions(spec.search, seed), value=loss,
                                     user_attrs={"trial_id": trial_id, "from": "curve"}))
        added += 1
    return added
