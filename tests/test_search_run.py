"""`ablate search-steps` end to end: the study and the curves on disk, and a real search of the
tiny model on local Ray, interrupted by its budget and resumed."""

import argparse
import math

import optuna
import pytest
from optuna.trial import TrialState

from ablate.results.curves import curve_path, read_curve, write_curve
from ablate.sweeps.search.cli import add_commands
from ablate.sweeps.search.method import StepSearch
from ablate.sweeps.search.spec import load_search_spec
from ablate.sweeps.search.study import default_url, open_study, settle, study_name
from ablate.sweeps.spec import SpecError
from ablate.trainer.train import train

# The tiny model at batch size 4 (2 workers): ~4.2 val loss after 8 steps, ~3.7 after 12,
# ~3.4 after 16, with a seed std of a few hundredths: 12 steps is the answer for 3.9.
SPEC = """
[sweep]
name = "{name}"
data = "{data}"
[resources]
workers = 2
[fixed]
val_every = 4
batch_size = 4
val_tokens = 1024
{extra}
[search]
min_steps = 8
max_steps = 16
granularity = 4
target = 3.9
seeds_per_probe = 2
max_seeds = 3
max_trials = {budget}
"""


def write_spec(tmp_path, data, name="tiny-steps", budget=8, extra="", file="search.toml"):
    path = tmp_path / file
    path.write_text(SPEC.format(name=name, data=data, budget=budget, extra=extra))
    return path


def search_steps(*argv) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["search-steps", *map(str, argv)])
    return args.func(args)


def test_settle_reuses_finished_curves_and_fails_lost_trials(tmp_path, data_dir):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = write_spec(tmp_path, data_dir)
    path.write_text(path.read_text().replace("workers = 2", "workers = 1"))  # trained in-process below
    spec = load_search_spec(path)
    root = tmp_path / "runs"
    folder = root / spec.name

    def run(trial_id, **fixed):  # one real training, as a Tune trial would leave it
        out = curve_path(root, spec.name, trial_id)
        train(spec.sweep.train_config({**spec.probe(12, 0), **fixed}, data=str(data_dir),
                                      sweep=spec.name, trial_id=trial_id, workers=1, out=str(out)))
        return read_curve(out).to_pylist()[-1]["val_loss"]

    loss = run("done")
    run("other", lr_muon=0.01)  # another config in the same folder: not this search's probe
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(default_url(folder), spec)
    lost = StepSearch(spec.search, study).ask(trial_id="lost")  # then the driver died
    assert (lost.steps, lost.seed) == (12, 0)

    assert settle(study, spec, folder / "curves") == 1
    assert settle(study, spec, folder / "curves") == 0  # idempotent
    trials = study.get_trials()
    assert trials[lost.number].state == TrialState.FAIL
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [(t.params, t.value, t.user_attrs["trial_id"]) for t in done] == \
        [({"steps": 12, "seed": 0}, loss, "done")]
    search = StepSearch(spec.search, study)
    probe = search.ask()
    assert (probe.steps, probe.seed) == (12, 1)  # seed 0 is not run again


def test_the_searcher_takes_a_probes_loss_from_its_curve(tmp_path, data_dir):
    """Tune's last result can miss the final report (Train forwards it through a queue): the
    curve decides. A trial with neither a final report nor a finished curve failed, and the
    searcher then stops proposing."""
    from ray.tune.search import Searcher

    from ablate.sweeps.search.searcher import StepSearcher

    spec = load_search_spec(write_spec(tmp_path, data_dir))
    searcher = StepSearcher(StepSearch(spec.search, optuna.create_study()), tmp_path, spec.name)
    assert searcher.suggest("a") == {"num_iterations": 12, "seed": 0}
    assert searcher.suggest("b") == {"num_iterations": 12, "seed": 1}
    assert searcher.suggest("c") is None  # waits for the first seeds
    row = dict(trial_id="a", num_iterations=12, seed=0, step=12, val_loss=3.7, status="completed")
    write_curve(curve_path(tmp_path, spec.name, "a"), [row])
    searcher.on_trial_complete("a", {"step": 8, "num_iterations": 12, "val_loss": 4.0,
                                     "status": "running"})
    searcher.on_trial_complete("b", {"step": 8, "num_iterations": 12, "status": "running"})
    assert searcher.search.losses[12] == {0: 3.7}
    assert searcher.failed == ["b"]
    assert searcher.suggest("d") == Searcher.FINISHED


def test_a_study_of_another_config_is_refused(tmp_path, data_dir):
    a = load_search_spec(write_spec(tmp_path, data_dir, file="a.toml"))
    b = load_search_spec(write_spec(tmp_path, data_dir, extra="lr_muon = 0.01", file="b.toml"))
    url = default_url(tmp_path)
    open_study(url, a)
    open_study(url, a)  # the same config resumes
    with pytest.raises(SpecError, match="searched another config \\(lr_muon differ\\)"):
        open_study(url, b)


@pytest.mark.parametrize("url", ["bogus://nowhere", "sqlite:////no/such/folder/optuna.db",
                                 "not a url at all", "postgresql://u:secret@127.0.0.1:1/x"])
def test_bad_optuna_storage_is_one_line_and_writes_nothing(tmp_path, data_dir, url):
    spec = write_spec(tmp_path, data_dir)
    with pytest.raises(SpecError) as e:
        search_steps(spec, "--storage", tmp_path / "runs", "--optuna-storage", url)
    message = str(e.value)
    assert message.startswith("--optuna-storage: cannot open ")
    assert len(message.splitlines()) == 1 and "secret" not in message
    assert not (tmp_path / "runs").exists()


def test_search_on_local_ray_then_resume_with_a_larger_budget(tmp_path, data_dir, local_ray,
                                                              capsys):
    root = tmp_path / "runs"
    folder = root / "tiny-steps"
    tracked = '\n[tracking]\nmlflow = "local"'  # every probe is also an MLflow run
    # a budget of 2 trials: the first probe (12 steps, 2 seeds), then the search stops
    assert search_steps(write_spec(tmp_path, data_dir, budget=2, extra=tracked), "--storage", root) == 0
    assert "undecided after 2 trials" in capsys.readouterr().out
    first = {p: p.stat().st_mtime_ns for p in (folder / "curves").glob("*.parquet")}
    assert len(first) == 2

    # the same command with a larger budget continues: 8 steps fails, so 12 is the answer
    assert search_steps(write_spec(tmp_path, data_dir, budget=8, extra=tracked), "--storage", root) == 0
    out = capsys.readouterr().out
    assert "answer: 12 steps" in out
    curves = {p: p.stat().st_mtime_ns for p in (folder / "curves").glob("*.parquet")}
    assert {p: curves[p] for p in first} == first  # finished probes were not run again
    study = optuna.load_study(study_name=study_name(load_search_spec(tmp_path / "search.toml")),
                              storage=default_url(folder))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    probes = [(t.params["steps"], t.params["seed"]) for t in done]
    assert len(probes) == len(set(probes)) == len(curves)
    assert {t.user_attrs["trial_id"] for t in done} == {p.stem for p in curves}
    assert {steps for steps, _ in probes} == {8, 12}
    assert study.user_attrs["answer"] == 12
    for t in done:  # every probe's value is its curve's final val loss
        last = read_curve(curve_path(root, "tiny-steps", t.user_attrs["trial_id"])).to_pylist()[-1]
        assert last["status"] == "completed" and last["num_iterations"] == t.params["steps"]
        assert math.isclose(last["val_loss"], t.value)

    # answered: a third run reports from the study and starts no trial
    assert search_steps(write_spec(tmp_path, data_dir, budget=8, extra=tracked), "--storage", root) == 0
    assert "answer: 12 steps" in capsys.readouterr().out
    assert len(list((folder / "curves").glob("*.parquet"))) == len(curves)

    from mlflow import MlflowClient
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny-steps").experiment_id])
    assert len(runs) == len(curves)  # one run per probe, none twice across the three sessions
    assert all(r.data.metrics["val_loss"] > 0 for r in runs)
