import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.cli import main
from ablate.results.curves import SCHEMA, trial_meta
from ablate.sweeps.spec import SpecError, parse_spec

# Three trials of one budget; lr_head = 0 plants a bad one (its logits stay near zero). It runs
# second, so the last trial can only start once the stopped one has given its CPUs back.
SPEC = """
[sweep]
name = "{name}"
seeds = 1
data = "{data}"
target = 3.5

[resources]
workers = 2

[fixed]
num_iterations = 12
val_every = 4
batch_size = 4
val_tokens = 1024

[axes]
lr_head = [0.008, 0.0, 0.006]

[early_stopping]
kind = "same_budget"
margin = 0.5
grace_steps = 4
"""


def write_spec(tmp_path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_sweep_on_uri_storage_stops_the_planted_bad_trial_then_status_and_report(
        tmp_path, data_dir, local_ray, capsys):
    spec = write_spec(tmp_path, SPEC.format(name="es", data=data_dir))
    storage = f"file://{tmp_path}/runs"  # a URI: curves go through pyarrow.fs
    assert main(["sweep", str(spec), "--storage", storage, "--json-log"]) == 0
    log = events(capsys.readouterr().out)  # every stdout line is one JSON object
    assert log[0]["event"] == "sweep_start" and log[0]["trials"] == 3
    assert [e["event"] for e in log[-2:]] == ["sweep_end", "report"]
    report = log[-1]["report"]  # one config per grid point: lr_head is an axis, not a seed
    assert report["axes"] == ["lr_head"] and report["target"] == 3.5
    assert sorted(c["key"]["lr_head"] for c in report["configs"]) == [0.0, 0.006, 0.008]
    ends = {e["trial_id"]: e for e in log if e["event"] == "trial_end"}
    assert len(ends) == 3
    results = [e for e in log if e["event"] == "result"]
    assert all(e["node_id"] and e["counts"]["running"] == 1 for e in results)

    folder = tmp_path / "runs" / "es"
    curves = sorted((folder / "curves").glob("*.parquet"))
    assert len(curves) == 3
    by_lr = {}
    for c in curves:
        table = pq.read_table(c)
        assert table.column_names == SCHEMA.names
        assert trial_meta(c)["sweep"] == {"axes": ["lr_head"], "target": 3.5}
        rows = table.to_pylist()
        by_lr[json.loads(rows[0]["params"])["lr_head"]] = (c.stem, rows)
    for lr in (0.008, 0.006):  # the good ones ran to the end
        trial_id, rows = by_lr[lr]
        assert [r["step"] for r in rows] == [0, 4, 8, 12]
        assert rows[-1]["status"] == "completed" and ends[trial_id]["state"] == "completed"
    trial_id, rows = by_lr[0.0]  # the bad one was stopped at its first judged step
    assert [r["step"] for r in rows][:2] == [0, 4]  # (its run may get further before the abort)
    assert ends[trial_id]["state"] == "stopped" and ends[trial_id]["step"] == 4

    assert main(["status", str(folder), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    states = {r["trial_id"]: r["state"] for r in status["status"]}
    assert states == {by_lr[0.008][0]: "completed", by_lr[0.006][0]: "completed",
                      trial_id: "stopped"}
    assert all(r["step"] is not None and r["val_loss"] is not None for r in status["status"])

    # the same sweep again is refused: nothing stored is overwritten
    before = {c: c.stat().st_mtime_ns for c in curves}
    assert main(["sweep", str(spec), "--storage", storage]) == 2
    assert "already stored" in capsys.readouterr().err
    assert {c: c.stat().st_mtime_ns for c in curves} == before


@pytest.mark.parametrize("body, message", [
    ('[sweep]\nname = "x"\nbogus = 1\n', "sweep.bogus: unknown key"),
    ('[sweep]\nname = "x"\n[axes]\nextra_embeddings = [0, 7]\n', "axes.extra_embeddings: must be an integer in 0..5"),
    ('[sweep]\nname = "x"\n[fixed]\nnum_iterations = "many"\n', "fixed.num_iterations: must be int"),
    ('[sweep]\nname = "x"\nseeds = "two"\n', "sweep.seeds: must be int or list"),
    ('[sweep]\nname = "x"\nseeds = [1, 1]\n', "sweep.seeds: repeats a seed"),
    ('[sweep]\nname = "x"\n[axes]\nlambda_init = ["zero", "half"]\n', "axes.lambda_init: must be one of"),
    ('[sweep]\nname = "x"\n[fixed]\nwarp_drive = true\n', "fixed.warp_drive: unknown field"),
    ('[sweep]\nname = "x"\n[resources]\nworkers = 3\n[fixed]\nbatch_size = 8\n', "fixed.batch_size: 8 sequences do not split evenly over 3"),
    ('[sweep]\nname = "../up"\n', "sweep.name"),
    ('[sweep]\nseeds = 1\n', "sweep.name: missing"),
    ('[sweeps]\nname = "x"\n', "sweeps: unknown section"),
    ('[sweep\nname = "x"\n', "not valid TOML"),
    ('[sweep]\nname = "x"\ndata = "/no/such/folder"\n', "sweep.data: /no/such/folder: data folder not found"),
    ('[sweep]\nname = "x"\nstorage = ""\n', "sweep.storage: must be a path or a URI"),
    ('[sweep]\nname = "x"\nmax_concurrent_trials = 0\n', "sweep.max_concurrent_trials: must be in 1..100,000"),
    ('[sweep]\nname = "x"\nmax_failures = -1\n', "sweep.max_failures: must be in 0..100"),
    ('[sweep]\nname = "x"\n[resources]\nworkers = 0\n', "resources.workers: must be >= 1"),
    ('[sweep]\nname = "x"\n[resources]\ngpus_per_worker = -1\n', "resources.gpus_per_worker: must be a number >= 0"),
    ('[sweep]\nname = "x"\n[resources]\ncpus_per_worker = 0\n', "resources: a worker needs a CPU or a GPU"),
    ('[sweep]\nname = "x"\n[resources]\nplacement = "scatter"\n', "resources.placement: must be 'pack' or 'spread'"),
    ('[sweep]\nname = "x"\n[resources]\nnodes = 2\n', "resources.nodes: unknown key"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = []\n', "axes.num_iterations: must be a non-empty list"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = 100\n', "axes.num_iterations: must be a list of values or a range"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = {start = 100}\n', "axes.num_iterations: a range needs start and stop"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = {start = 100, stop = 50}\n', "axes.num_iterations.stop: 50 is below start 100"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = {start = 1, stop = 9, step = 0}\n', "axes.num_iterations.step: must be > 0"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = {start = 1, stop = 9, by = 2}\n', "axes.num_iterations: unknown range key 'by'"),
    ('[sweep]\nname = "x"\n[axes]\nlr_muon = {start = "a", stop = 1}\n', "axes.lr_muon.start: must be a finite number"),
    ('[sweep]\nname = "x"\n[axes]\nnum_iterations = {start = 1, stop = 100000}\n', "at most 10,000"),
    ('[sweep]\nname = "x"\n[axes]\nseed = [1, 2]\n', "axes.seed: is set by the sweep itself"),
    ('[sweep]\nname = "x"\n[fixed]\nnum_iterations = 5\n[axes]\nnum_iterations = [5]\n', "axes.num_iterations: is also in [fixed]"),
    ('[sweep]\nname = "x"\n[early_stopping]\nmargin = 0.1\n', "early_stopping.kind: must be 'same_budget' or 'asha'"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "median"\n', "early_stopping.kind: must be 'same_budget' or 'asha', got 'median'"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "same_budget"\nmargin = -0.1\n', "early_stopping.margin: must be >= 0"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "same_budget"\nbrackets = 2\n', "early_stopping.brackets: does not apply to kind = 'same_budget'"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "asha"\nreduction_factor = 1\n', "early_stopping.reduction_factor: must be > 1"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "asha"\ngrace_steps = 500\n', "early_stopping.grace_steps: 500 is beyond the longest trial (100 steps)"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "asha"\npatience = 3\n', "early_stopping.patience: unknown key"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "asha"\ngrace_steps = -1\n', "early_stopping.grace_steps: must be >= 0"),
    ('[sweep]\nname = "x"\nearly_stopping = 1\n', "sweep.early_stopping: unknown key"),
    ('[sweep]\nname = "x"\n[axes]\nlr_muon = {start = 0.1, stop = inf}\n', "axes.lr_muon.stop: must be a finite number"),
    ('[sweep]\nname = "x"\n[early_stopping]\nkind = "same_budget"\nmargin = nan\n', "early_stopping.margin: must be >= 0"),
    ('[sweep]\nname = "x"\nseeds = 30\n[axes]\nextra_embeddings = {start = 0, stop = 5}\nnum_iterations = {start = 10, stop = 40, step = 10}\n',
     "the grid has 720 trials, more than --max-trials 500; pass --yes"),
])
def test_bad_specs_get_one_line_naming_the_field(tmp_path, capsys, body, message):
    spec = write_spec(tmp_path, body)
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("ablate: ")
    assert not (tmp_path / "runs").exists()


def test_max_trials_is_a_flag(tmp_path, capsys):
    spec = write_spec(tmp_path, '[sweep]\nname = "x"\nseeds = 3\n')
    assert main(["sweep", str(spec), "--max-trials", "2", "--storage", str(tmp_path / "r")]) == 2
    assert "the grid has 3 trials, more than --max-trials 2" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--max-trials", "0"]) == 2
    assert "--max-trials: must be in 1..100,000, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_spec_exit_status_and_no_traceback_from_the_console_script(tmp_path):
    spec = write_spec(tmp_path, '[sweep]\nname = "x"\n[axes]\nextra_embeddings = [7]\n')
    proc = subprocess.run([sys.executable, "-m", "ablate.cli", "sweep", str(spec)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ablate: {spec}: axes.extra_embeddings: must be an integer in 0..5, got 7 "
        "(in trial extra_embeddings=7)"]


def test_missing_spec_file(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["resume", "status"])
def test_resume_and_status_need_a_sweep_folder(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ablate: {tmp_path}: not a sweep folder (no sweep.json; give "
                   "<storage>/<sweep name> of a sweep started by `ablate sweep`)")
    (tmp_path / "sweep.json").write_text("{not json")
    assert main([command, str(tmp_path)]) == 2
    assert "sweep.json: corrupt" in capsys.readouterr().err


range_keys = st.sampled_from(["start", "stop", "step", "by", ""])
numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.text(max_size=3))
stopping_keys = st.sampled_from(["kind", "margin", "grace_steps", "reduction_factor", "brackets", "x"])
stopping_values = st.one_of(numbers, st.sampled_from(["same_budget", "asha"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(range_keys, numbers, max_size=4),
       st.one_of(st.none(), st.dictionaries(stopping_keys, stopping_values, max_size=4)))
def test_ranges_and_early_stopping_answer_a_spec_or_one_line(axis, stopping):
    raw = {"sweep": {"name": "fuzz"}, "axes": {"val_every": axis}}
    if stopping is not None:
        raw["early_stopping"] = stopping
    try:
        spec = parse_spec(raw, source="fuzz.toml", max_trials=50)
    except SpecError as e:
        assert str(e).startswith("fuzz.toml: ") and "\n" not in str(e)
    else:
        assert spec.trials() and all(v > 0 for v in spec.axes["val_every"])


@pytest.mark.parametrize("preset", ["demo.toml", "embeds-medium.toml"])
def test_the_shipped_sweep_presets_are_valid_specs(preset):
    from ablate.sweeps.spec import load_spec

    assert load_spec(Path(__file__).parents[1] / "sweeps" / "presets" / preset).size >= 1


def test_ranges_expand_with_the_stop_included():
    spec = parse_spec({"sweep": {"name": "r", "seeds": [3, 5]}, "axes": {
        "extra_embeddings": {"start": 0, "stop": 2},
        "lr_muon": {"start": 0.01, "stop": 0.03, "step": 0.01},
        "num_iterations": {"start": 100, "stop": 350, "step": 100}}})
    assert spec.axes == {"extra_embeddings": [0, 1, 2], "lr_muon": [0.01, 0.02, 0.03],
                         "num_iterations": [100, 200, 300]}
    assert spec.size == len(spec.trials()) == 3 * 3 * 3 * 2


def test_a_saved_spec_reads_back_the_same():
    from ablate.sweeps.spec import spec_dict

    spec = parse_spec({"sweep": {"name": "r", "seeds": 2, "target": 3},
                       "resources": {"workers": 1, "placement": "spread"},
                       "fixed": {"val_every": 5}, "axes": {"lambda_init": ["zero", "one"]},
                       "early_stopping": {"kind": "asha", "grace_steps": 10}})
    again = parse_spec(json.loads(json.dumps(spec_dict(spec))))
    assert again == spec


def result(step, loss, budget=100):
    return {"step": step, "num_iterations": budget, "val_loss": loss}


def test_same_budget_stopper_compares_only_equal_budgets_at_equal_steps():
    from ablate.sweeps.stoppers import SameBudgetStopper

    stop = SameBudgetStopper(margin=0.1, grace_steps=20)
    assert not stop("a", result(0, 5.0)) and not stop("b", result(0, 9.0))  # step 0: never
    assert not stop("a", result(10, 4.0)) and not stop("b", result(10, 8.0))  # grace
    assert not stop("a", result(20, 3.0))
    assert not stop("b", result(20, 3.1))  # within the margin
    assert stop("c", result(20, 3.2))  # beyond it
    assert not stop("d", result(20, 9.0, budget=50))  # another budget: first of its kind
    assert stop("e", result(20, 9.5, budget=50))
    assert not stop("f", result(30, 9.0))  # nobody reached step 30 of budget 100 before
    assert not stop("g", result(20, math.nan)) and not stop("h", {"step": 20})
    assert not stop("a", result(40, 2.0)) and not stop("b", result(40, 2.05))
    assert not stop.stop_all()


def test_asha_and_same_budget_as_tune_objects():
    from ray.tune.schedulers import ASHAScheduler

    from ablate.sweeps.spec import EarlyStopping
    from ablate.sweeps.stoppers import SameBudgetStopper, early_stopping

    assert early_stopping(None, 100) == (None, None)
    stopper, scheduler = early_stopping(EarlyStopping("same_budget", 20, 0.05), 100)
    assert isinstance(stopper, SameBudgetStopper) and scheduler is None
    stopper, scheduler = early_stopping(EarlyStopping("asha", 0, reduction_factor=3), 100)
    assert stopper is None and isinstance(scheduler, ASHAScheduler)
    assert scheduler._time_attr == "step" and scheduler._metric == "val_loss"


def trial(trial_id, status, last=None, **config):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=last or {},
                           config={"num_iterations": 10, **config})


def test_json_log_counts_trials_and_estimates_the_time_left():
    import io

    from ablate.sweeps.progress import JsonLog

    out = io.StringIO()
    view = JsonLog(["extra_embeddings"], trials=3, total_steps=30, sweep="s", stream=out)
    a, b = trial("a", "RUNNING", extra_embeddings=0), trial("b", "PENDING", extra_embeddings=1)
    view.setup()
    view.on_trial_start(0, [a, b], a)
    view.on_trial_result(0, [a, b], a, {"step": 0, "val_loss": 5.0, "node_id": "n1"})
    view.on_trial_result(0, [a, b], a, {"step": 5, "val_loss": 4.0, "node_id": "n1"})
    a.last_result = {"step": 5, "val_loss": 4.0, "status": "running"}  # stopped early
    view.on_trial_complete(0, [a, b], a)
    view.on_trial_error(0, [a, b], b)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["sweep_start", "trial_start", "result", "result",
                                           "trial_end", "trial_error"]
    assert lines[1]["label"] == "extra_embeddings=0 seed=None"
    assert lines[3]["step"] == 5 and lines[3]["node_id"] == "n1"
    assert lines[3]["eta_s"] is None  # no trial has finished: no measured rate yet
    assert lines[4]["state"] == "stopped"
    assert lines[5]["state"] == "failed"
    assert lines[5]["counts"] == {"starting": 0, "running": 0, "completed": 0, "stopped": 1,
                                  "diverged": 0, "failed": 1, "pending": 1}


def test_upload_to_a_uri_and_the_finished_trial_guard(tmp_path):
    from ablate.results.curves import write_curve
    from ablate.sweeps.storage import upload
    from ablate.sweeps.worker import final_row

    local = tmp_path / "local.parquet"
    row = {"sweep": "s", "trial_id": "t", "step": 0, "val_loss": 5.0, "status": "running"}
    write_curve(local, [row])
    upload(local, f"file://{tmp_path}/store/s/curves/t.parquet")
    assert pq.read_table(tmp_path / "store/s/curves/t.parquet").num_rows == 1
    assert list((tmp_path / "store/s/curves").iterdir()) == [tmp_path / "store/s/curves/t.parquet"]
    assert final_row(f"file://{tmp_path}/store", "s", "t") is None  # still running
    write_curve(local, [row, row | {"step": 10, "status": "completed"}])
    upload(local, f"file://{tmp_path}/store/s/curves/t.parquet")
    assert final_row(str(tmp_path / "store"), "s", "t")["step"] == 10
    assert final_row(str(tmp_path / "store"), "s", "missing") is None
