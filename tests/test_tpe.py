"""[search] method = "tpe": Optuna's TPE picks num_samples grid points, each run with every
seed, its study in <folder>/optuna.db; trials keep the ids `<prefix>_<index>`, so Ctrl-C, then
`ablate resume`, runs every point once, the study's points first under the same ids."""

from __future__ import annotations

import dataclasses
import json
import re
import signal

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher
from test_interrupt import ablate  # the CLI as a subprocess, output piped

from ablate.sweeps.spec import SpecError, parse_spec, spec_dict
from ablate.sweeps.tpe import STUDY_FILE, TpeSearcher, check_space, study_url

AXES = {"lr_head": [0.008, 0.006, 0.004, 0.002], "extra_embeddings": [0, 1, 2]}


def raw(axes=AXES, seeds=2, **search):
    return {"sweep": {"name": "t", "seeds": seeds}, "fixed": {"num_iterations": 8}, "axes": axes,
            "search": search}


def test_a_tpe_spec_is_validated_and_read_back():
    spec = parse_spec(raw(method="tpe", num_samples=5, seed=3))
    assert (spec.sampling.method, spec.sampling.num_samples, spec.size) == ("tpe", 5, 10)
    assert parse_spec(spec_dict(spec)).sampling == spec.sampling  # what resume reads back
    for search, said in [({"method": "tpe"}, "search.num_samples: missing (method = 'tpe'"),
                         ({"method": "tpe", "num_samples": 13}, "search.num_samples: must be in 1..12"),
                         ({"method": "tpee", "num_samples": 2}, "search.method: must be 'grid', "
                                                                "'random' or 'tpe', got 'tpee'")]:
        with pytest.raises(SpecError, match="^" + re.escape(f"<spec>: {said}")):
            parse_spec(raw(**search))
    # every point TPE may choose is built when the spec is read, not only num_samples of them
    for seed in range(4):
        with pytest.raises(SpecError, match=r"^<spec>: axes\.lr_head: .*lr_head=-1\.0"):
            parse_spec(raw(axes={"lr_head": [0.008, 0.004, 0.002, -1.0]}, method="tpe",
                           num_samples=1, seed=seed))
    wide = {f"x{i}": list(range(100)) for i in range(3)}
    with pytest.raises(SpecError, match=r"search\.method: 'tpe' searches a grid of at most 100,000"):
        parse_spec(raw(axes=wide, method="tpe", num_samples=1))


def test_tpe_refuses_what_a_study_cannot_hold(tmp_path):
    spec = parse_spec(raw(method="tpe", num_samples=1))
    listed = dataclasses.replace(spec, axes={"lr_head": [[0.1], [0.2]]})  # no field takes one yet
    with pytest.raises(SpecError, match=r"axes\.lr_head: 'tpe' chooses among plain values"):
        check_space(listed, str(tmp_path))
    with pytest.raises(SpecError, match=r"search\.method: 'tpe' keeps its Optuna study .* not s3://b/t"):
        check_space(spec, "s3://b/t")


def test_the_searcher_names_trials_stably_and_a_new_one_resumes_from_the_study(tmp_path):
    spec = parse_spec(raw(method="tpe", num_samples=4, seed=1))
    (tmp_path / "t").mkdir()
    first = TpeSearcher(spec, str(tmp_path), "abc", max_concurrent=3)
    handed = [first.next_trial() for _ in range(3)]
    assert first.next_trial() is None  # three at once at most
    assert [trial_id for trial_id, _ in handed] == ["abc_00000", "abc_00001", "abc_00002"]
    assert [config["seed"] for _, config in handed] == [0, 1, 0]  # seeds fastest, as a grid's
    assert {k: handed[0][1][k] for k in AXES} == {k: handed[1][1][k] for k in AXES}
    # no curves here: each trial's loss comes from its last result
    done = {"status": "completed", "step": 8, "num_iterations": 8}
    first.on_trial_complete("abc_00000", done | {"val_loss": 3.0})
    first.on_trial_complete("abc_00001", done | {"val_loss": 4.0})
    first.on_trial_complete("abc_00002", {"status": "running", "step": 4, "val_loss": 5.0})  # cut off
    study = optuna.load_study(study_name="sweep:t", storage=study_url(str(tmp_path / "t")))
    points = sorted((t.user_attrs["point"], t.state, t.value) for t in study.trials
                    if "point" in t.user_attrs)
    assert points == [(0, TrialState.COMPLETE, 3.5), (1, TrialState.RUNNING, None)]

    # a new driver (`ablate resume`): the study's points first, under the same ids
    second = TpeSearcher(spec, str(tmp_path), "abc", max_concurrent=8)
    again = [second.next_trial() for _ in range(8)]
    assert [trial_id for trial_id, _ in again] == [f"abc_{i:05d}" for i in range(8)]
    assert again[:3] == handed
    assert second.next_trial() == Searcher.FINISHED
    chosen = [tuple(config[k] for k in AXES) for _, config in again[::2]]
    assert len(set(chosen)) == 4  # four distinct points
    assert (tmp_path / "t" / STUDY_FILE).is_file()


def test_tpe_runs_every_point_once_when_asked_for_the_whole_grid(tmp_path):
    """Late in a small grid TPE keeps proposing points already run: each repeat is failed in
    the study, and after MAX_REPEATS an unrun point is drawn, so num_samples points all run."""
    small = {"lr_head": [0.008, 0.004], "extra_embeddings": [0, 1, 2]}
    spec = parse_spec(raw(axes=small, seeds=1, method="tpe", num_samples=6, seed=7))
    (tmp_path / "t").mkdir()
    searcher = TpeSearcher(spec, str(tmp_path), "abc", max_concurrent=1)
    ran = []
    while (suggested := searcher.next_trial()) != Searcher.FINISHED:
        trial_id, config = suggested
        ran.append(tuple(config[k] for k in small))
        loss = 3 + config["lr_head"] * 10 + config["extra_embeddings"] / 10
        searcher.on_trial_complete(trial_id, {"status": "completed", "step": 8, "num_iterations": 8,
                                              "val_loss": loss})
    assert sorted(ran) == sorted((a, b) for a in small["lr_head"] for b in small["extra_embeddings"])
    repeats = [t for t in searcher.study.trials if t.user_attrs.get("repeat")]
    assert repeats and all(t.state == TrialState.FAIL for t in repeats)


def test_a_lost_study_is_refused_where_the_folder_has_run_trials(tmp_path):
    from ablate.sweeps.storage import write_trial_states

    spec = parse_spec(raw(method="tpe", num_samples=2))
    folder = tmp_path / "t"
    folder.mkdir()
    trial_id, config = TpeSearcher(spec, str(tmp_path), "abc", 1).next_trial()
    write_trial_states(str(folder), {trial_id: {"state": "completed", "config": config}})
    TpeSearcher(spec, str(tmp_path), "abc", 1)  # the study holds it: goes on
    (folder / STUDY_FILE).unlink()
    with pytest.raises(SpecError, match=f"{STUDY_FILE}: does not hold trial abc_00000 .* cannot go on"):
        TpeSearcher(spec, str(tmp_path), "abc", 1)


def test_a_study_that_is_not_this_sweeps_is_refused(tmp_path):
    spec = parse_spec(raw(method="tpe", num_samples=2))
    (tmp_path / "t").mkdir()
    TpeSearcher(spec, str(tmp_path), "abc", 1).next_trial()
    other = parse_spec(raw(axes={"lr_head": [0.1, 0.2]}, method="tpe", num_samples=2))
    with pytest.raises(SpecError, match=f"^{tmp_path / 't' / STUDY_FILE}: trial 0 is not a point of this sweep's axes"):
        TpeSearcher(other, str(tmp_path), "abc", 1)


SPEC = """
[sweep]
name = "tpe"
data = "{data}"
max_concurrent_trials = 1
seeds = 2

[resources]
workers = 1

[fixed]
num_iterations = 16
val_every = 4
checkpoint_every = 4
batch_size = 2
val_tokens = 1024

[axes]
lr_head = [0.008, 0.006, 0.004, 0.002]
extra_embeddings = [0, 1]

[search]
method = "tpe"
num_samples = 2
seed = 5
"""


def test_a_tpe_sweep_interrupted_and_resumed_runs_each_trial_once(tmp_path, data_dir, local_ray):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.format(data=data_dir))
    first = ablate("sweep", str(spec_file), "--storage", str(tmp_path / "runs"), "--json-log",
                   "--address", local_ray)  # the shared Ray: no Ray start of its own
    for line in first.stdout:
        if json.loads(line)["event"] == "trial_end":
            first.send_signal(signal.SIGINT)
            break
    first.communicate(timeout=300)
    assert first.returncode == 130
    folder = tmp_path / "runs" / "tpe"
    second = ablate("resume", str(folder), "--json-log", "--address", local_ray)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    curves = sorted((folder / "curves").glob("*.parquet"))
    assert len(curves) == 4  # 2 points x 2 seeds
    ran = []
    for path in curves:
        rows = pq.read_table(path).to_pylist()
        assert [r["step"] for r in rows] == list(range(0, 17, 4)), path.name  # once each
        params = json.loads(rows[-1]["params"])
        ran.append((params["lr_head"], params["extra_embeddings"], rows[-1]["seed"]))
    assert len(set(ran)) == 4 and len({r[:2] for r in ran}) == 2
    assert sorted(int(p.stem.rsplit("_", 1)[1]) for p in curves) == [0, 1, 2, 3]
    study = optuna.load_study(study_name="sweep:tpe", storage=study_url(str(folder)))
    points = [t for t in study.trials if "point" in t.user_attrs]
    assert sorted(t.user_attrs["point"] for t in points) == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in points)
    report = [json.loads(line) for line in out.splitlines() if '"report"' in line]
    assert report and report[-1]["event"] == "report"
