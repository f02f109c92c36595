"""Items 1 and 2 of the reliability table: what a sweep folder holds never chooses where
data goes. A planted trial-id prefix that climbs out of the folder is refused; a tracking
URI (or W&B online project) saved in the folder is not used on resume unless given again."""

import argparse
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.sweeps.cli import resume_tracking
from ablate.sweeps.spec import Tracking, load_spec
from ablate.sweeps.storage import claim, load_sweep, save_sweep
from ablate.sweeps.tuner import trial_settings


def planted(tmp_path: Path, data_dir, **settings) -> Path:
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(f'[sweep]\nname = "s"\ndata = "{data_dir}"\n[fixed]\nnum_iterations = 8\n'
                         '[tracking]\nmlflow = "file:///tmp/elsewhere/mlruns"\n')
    spec = load_spec(spec_file)
    folder = tmp_path / "runs" / "s"
    claim(str(folder))
    save_sweep(spec, trial_settings(spec, tmp_path / "runs", data_dir) | settings)
    return folder


@pytest.mark.parametrize("prefix", ["../../../escaped/x", "/tmp/escaped-abs", "ab_cd", 12345])
def test_item01_trial_prefix_cannot_escape_the_folder(tmp_path, data_dir, capsys, prefix):
    folder = planted(tmp_path, data_dir, trial_prefix=prefix)
    before = sorted(p.name for p in folder.iterdir())
    assert main(["resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.json: trial_prefix:" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped-abs_00000").exists()


def args(**given):
    return argparse.Namespace(**({"mlflow": None, "wandb": None, "wandb_project": None} | given))


def test_item02_a_folders_tracking_uri_is_not_used_on_resume(tmp_path, data_dir, capsys):
    spec, _ = load_sweep(str(planted(tmp_path, data_dir, trial_prefix="abcde")))
    assert spec.tracking.mlflow == "file:///tmp/elsewhere/mlruns"  # what the folder says
    assert resume_tracking(spec, args()) == Tracking()
    assert "the folder's tracking (mlflow file:///tmp/elsewhere/mlruns) is not used" in capsys.readouterr().err
    chosen = resume_tracking(spec, args(mlflow="http://127.0.0.1:5000"))
    assert chosen.mlflow == "http://127.0.0.1:5000"  # the command line decides
    import dataclasses
    inside = dataclasses.replace(spec, tracking=Tracking(mlflow="local", wandb="online", wandb_entity="x"))
    assert resume_tracking(inside, args()) == Tracking(mlflow="local")  # inside the folder: kept
    assert "wandb online (x/ablate)" in capsys.readouterr().err


def test_item08_resume_runs_the_specs_resources_and_checks_them_as_a_new_sweep_does(
        tmp_path, data_dir, capsys):
    """settings.resources edited to a gang no node holds is not what resume runs: the trial
    settings come from the (validated) spec. A spec asking for more than the machine has is
    refused on resume as on a new sweep, before anything is written."""
    import json

    folder = planted(tmp_path, data_dir, resources={"workers": 64, "cpus_per_worker": 64,
                                                    "gpus_per_worker": 8, "placement": "pack"})
    spec, settings = load_sweep(str(folder))
    assert settings["resources"]["workers"] == spec.resources.workers == 2
    assert settings["resources"]["cpus_per_worker"] == 1 and settings["resources"]["gpus_per_worker"] == 0

    saved = json.loads((folder / "sweep.json").read_text())
    saved["spec"]["resources"]["cpus_per_worker"] = 8
    (folder / "sweep.json").write_text(json.dumps(saved))
    before = sorted(p.name for p in folder.iterdir())
    assert main(["resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ablate: ") and "a trial needs 16 CPUs (2 workers x 8)" in err[-1], err
    assert sorted(p.name for p in folder.iterdir() if p.name != "driver.lock") == before  # the lock: held first
