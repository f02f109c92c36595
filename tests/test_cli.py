"""The `ablate` command itself: light commands stay light, the dry run, spec overrides."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.sweeps.spec import SpecError, load_spec, override

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "sweeps" / "presets" / "demo.toml"

# Runs `ablate ARGS...` in a fresh interpreter, then says which heavy modules it imported.
PROBE = """
import sys
from ablate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("HEAVY=" + ",".join(m for m in ("torch", "ray") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def ablate_light(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.fixture
def sweep_folder(tmp_path):
    """A sweep folder as `ablate sweep` leaves it: sweep.json and two finished curves."""
    from ablate.results.curves import write_curve
    from ablate.sweeps.storage import save_sweep
    from ablate.sweeps.tuner import trial_settings

    spec = load_spec(DEMO, settings={"sweep.name": "s", "axes.extra_embeddings": [0, 1],
                                     "axes.lambda_init": ["zero"], "sweep.seeds": 2})
    save_sweep(spec, trial_settings(spec, tmp_path, tmp_path / "data"))
    for k in (0, 1):
        for seed in (0, 1):
            params = json.dumps({"extra_embeddings": k, "seed": seed, "num_iterations": 20})
            rows = [dict(sweep="s", trial_id=f"t{k}{seed}", seed=seed, step=step,
                         train_time_ms=100.0 * step, val_loss=5.0 - 0.05 * step - 0.1 * k + 0.01 * seed,
                         status="completed" if step == 20 else "running", params=params)
                    for step in (0, 10, 20)]
            write_curve(tmp_path / "s" / "curves" / f"t{k}{seed}.parquet", rows)
    return tmp_path / "s"


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--version"],
    ["stats", "--target", "3.0", "2.9", "2.95", "2.91"],
    ["sweep", DEMO, "--dry-run"],
])
def test_light_commands_import_neither_torch_nor_ray(args):
    done = ablate_light(*args)
    assert done.returncode == 0, done.stderr
    assert "HEAVY=\n" in done.stderr


def test_report_and_status_import_neither_torch_nor_ray(sweep_folder, tmp_path):
    for args in (["report", sweep_folder], ["status", sweep_folder], ["status", sweep_folder, "--json"],
                 ["export-log", sweep_folder / "curves" / "t00.parquet"]):
        done = ablate_light(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "HEAVY=\n" in done.stderr, args
    status = json.loads(ablate_light("status", sweep_folder, "--json").stdout)
    assert status["trials"] == 4 and len(status["status"]) == 4
    assert {r["state"] for r in status["status"]} == {"completed"}  # no trials.json: the curves say
    assert {r["curve_status"] for r in status["status"]} == {"completed"}


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("ablate 0.")


def test_dry_run_lists_every_trial_and_writes_nothing(tmp_path, capsys):
    assert main(["sweep", str(DEMO), "--dry-run", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    spec = load_spec(DEMO)
    assert f"{spec.size} trials" in out
    for number in range(spec.size):
        assert f"│ {number} " in out or f"│ {number:>2} " in out
    steps = sum(spec.train_config(t).num_iterations for t in spec.trials())
    assert f"{steps:,} steps" in out
    assert str(tmp_path / "runs" / spec.name) in out
    assert not (tmp_path / "runs").exists()


def test_overrides_and_name_reach_the_dry_run(tmp_path, capsys):
    assert main(["sweep", str(DEMO), "--dry-run", "--storage", str(tmp_path), "--name", "k1",
                 "-s", "fixed.extra_embeddings=1", "-s", "sweep.seeds=[3, 4]",
                 "-s", "fixed.num_iterations=30"]) == 0
    out = capsys.readouterr().out
    assert "k1: 4 trials" in out  # extra_embeddings left the grid; lambda_init x seeds 3, 4
    assert "extra_embeddings=1" in out and "120 steps" in out
    assert str(tmp_path / "k1") in out
    assert "curves and TensorBoard only" in out
    assert main(["sweep", str(DEMO), "--dry-run", "--storage", str(tmp_path), "--wandb", "offline"]) == 0
    assert "wandb (offline, project ablate)" in capsys.readouterr().out


def test_override_pins_a_key_and_drops_its_axis():
    raw = {"sweep": {"name": "a"}, "axes": {"extra_embeddings": [0, 1]}, "fixed": {"seeds": 1}}
    got = override(raw, {"fixed.extra_embeddings": 2, "axes.val_every": [5, 10]})
    assert got["axes"] == {"val_every": [5, 10]} and got["fixed"]["extra_embeddings"] == 2
    assert raw["axes"] == {"extra_embeddings": [0, 1]}  # the caller's tables are left alone


@pytest.mark.parametrize("args, message", [
    (["-s", "num_iterations=5"], "-s num_iterations: expected section.key=value"),
    (["-s", "fixed.num_iterations"], "-s 'fixed.num_iterations': expected key=value"),
    (["-s", "bogus.key=1"], "-s bogus.key: expected section.key=value"),
    (["-s", "fixed.extra_embeddings=9"], "fixed.extra_embeddings: must be an integer in 0..5"),
    (["-s", "sweep.colour=1"], "sweep.colour: unknown key"),
    (["--name", "../escape"], "sweep.name: '../escape' must be letters"),
])
def test_bad_overrides_are_refused_with_the_field_named(tmp_path, capsys, args, message):
    assert main(["sweep", str(DEMO), "--dry-run", "--storage", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_override_errors_name_the_flag():
    with pytest.raises(SpecError, match="-s fixed: expected section.key=value"):
        override({}, {"fixed": 1})


def test_a_moved_sweep_folder_writes_where_it_is_now(sweep_folder, tmp_path):
    from ablate.sweeps.storage import load_sweep

    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    sweep_folder.rename(moved)
    spec, settings = load_sweep(str(moved))
    assert spec.name == "s"
    assert settings["storage"] == str(moved.parent) and settings["sweep"] == "renamed"
    assert settings["data"] == str(moved.parent / ".data" / "builtin")  # the corpus: rebuilt here


def test_the_corpus_folder_cannot_lead_out_of_the_storage_root(tmp_path):
    from ablate.sweeps.storage import builtin_folder

    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / ".data").symlink_to(tmp_path / "outside")
    with pytest.raises(SpecError, match="leads outside the storage root"):
        builtin_folder(tmp_path / "root")
    assert builtin_folder(tmp_path / "other") == tmp_path / "other" / ".data" / "builtin"
