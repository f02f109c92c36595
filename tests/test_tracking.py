"""Tracking and plain progress lines, on one tiny sweep shared by the tests that need Ray: two
trials (tiny preset, 20 steps, one worker each) run by the `ablate` command with stderr to a
file, tracked in MLflow's local store and in W&B offline. Each test reads back what it checks
with the tracker's own client or record format."""

import json
import os
import re
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from ablate.cli import main
from ablate.sweeps import tracking
from ablate.sweeps.spec import SpecError, Tracking, parse_spec, spec_dict

from conftest import shared_ray

SPEC = """
[sweep]
name = "tracked"
seeds = 1
data = "{data}"

[resources]
workers = 1

[fixed]
num_iterations = 20
val_every = 5
batch_size = 4
val_tokens = 1024

[axes]
lr_head = [0.008, 0.006]

[tracking]
mlflow = "local"
wandb = "offline"
wandb_project = "ablate-test"
"""
STEPS = [0, 5, 10, 15, 20]
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_dir):
    """The sweep, run as a user would with `2> log`; the log file is read every half second
    while it runs, so the tests can tell what was there before the end."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("tracked")
    spec = root / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir))
    log = root / "stderr.log"
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)  # offline because the spec says so
    seen = []
    with open(log, "w") as err, open(root / "stdout.txt", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ablate.cli", "sweep", str(spec),
                                 "--storage", str(root / "runs"), "--summary-every", "5",
                                 "--address", shared_ray()],
                                stdout=out, stderr=err, cwd=root, env=env)
        try:
            while proc.poll() is None and len(seen) < 600:
                seen.append(log.read_text())
                time.sleep(0.5)
            proc.wait(timeout=30)
        finally:
            proc.kill()
    folder = root / "runs" / "tracked"
    curves = {c.stem: pq.read_table(c).to_pylist() for c in (folder / "curves").glob("*.parquet")}
    return SimpleNamespace(rc=proc.returncode, folder=folder, seen=seen, log=log.read_text(),
                           curves=curves, out=(root / "stdout.txt").read_text())


def stamped(text: str) -> list[tuple[float, str]]:
    out = []
    for line in text.splitlines():
        match = STAMP.match(line)
        if match:
            out.append((datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp(), match[2]))
    return out


def test_progress_lines_reach_a_log_file_as_the_trials_run(swept):
    assert swept.rc == 0, swept.log[-2000:]
    assert len(swept.curves) == 2
    lines = stamped(swept.log)
    assert lines[0][1] == "sweep tracked: 2 trials, 40 steps"
    # read while the sweep ran: validation points in the log before its end
    during = [stamped(text) for text in swept.seen]
    assert any(any(re.search(r"step \d+/20  val \d", t) for _, t in snap) for snap in during)
    for trial_id, rows in swept.curves.items():
        ended = (swept.folder / "curves" / f"{trial_id}.parquet").stat().st_mtime
        mine = [(ts, t) for ts, t in lines if t.startswith(f"trial {trial_id} ")]
        starting = [i for i, (_, t) in enumerate(mine) if "starting" in t]
        assert starting == [0]  # the trial's first line, before any of its validation points
        steps = [int(m[1]) for _, t in mine if (m := re.match(r"trial \S+ step (\d+)/20 ", t))]
        assert steps == STEPS
        assert all(ts <= ended + 10 for ts, _ in mine)  # as it happened (reports lag a little)
        end = [t for _, t in mine if "completed" in t]
        assert len(end) == 1 and f"val {rows[-1]['val_loss']:.4f}" in end[0]
    summaries = [t for _, t in lines if t.startswith("sweep tracked: ") and "trials," not in t]
    # every 5 s, from the start (trials starting: warm workers make that a few seconds)
    assert any(re.search(r"\b[12] starting", t) for t in summaries) and len(summaries) >= 2
    assert summaries[-1].startswith("sweep tracked: 2 completed · best ")
    assert "Pareto" in swept.out or "val loss" in swept.out  # the report, on stdout


def test_mlflow_has_one_run_per_trial_with_config_params_and_val_loss_at_each_step(swept):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{swept.folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    by_lr = {run.data.params["lr_head"]: run for run in runs}
    for rows in swept.curves.values():
        config = rows[-1]
        run = by_lr[str(json.loads(config["params"])["lr_head"])]
        assert run.info.status == "FINISHED" and run.data.tags["sweep"] == "tracked"
        assert run.data.params["seed"] == "0" and run.data.params["num_iterations"] == "20"
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == STEPS
        assert [m.value for m in history] == pytest.approx([r["val_loss"] for r in rows])
        times = client.get_metric_history(run.info.run_id, "train_time_ms")
        assert [m.step for m in times] == STEPS
        assert [m.value for m in times] == pytest.approx([r["train_time_ms"] for r in rows])


def wandb_records(path: Path):
    """W&B's offline run file: LevelDB-log framed records (32 KiB blocks; a 7-byte header of
    crc, length and type per chunk) after a 7-byte file header, each a `Record` protobuf."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def test_wandb_offline_has_one_run_per_trial_grouped_by_sweep_at_the_training_step(swept):
    runs = sorted((swept.folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # in the sweep's folder, ready for `wandb sync`
    for run_dir in runs:
        records = list(wandb_records(next(run_dir.glob("*.wandb"))))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.run_group == "tracked" and run.project == "ablate-test"
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        rows = swept.curves[run.run_id]
        assert config["lr_head"] == json.loads(rows[-1]["params"])["lr_head"]
        assert config["seed"] == 0 and config["num_iterations"] == 20
        history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
        assert [h.step.num for h in history] == STEPS
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in h.item}
                   for h in history]
        assert [h["val_loss"] for h in history] == pytest.approx([r["val_loss"] for r in rows])
        assert [h["train_time_ms"] for h in history] == pytest.approx(
            [r["train_time_ms"] for r in rows])


def test_tensorboard_files_use_the_training_step_as_x_axis(swept):
    from tensorboardX.proto import event_pb2

    files = sorted(swept.folder.glob("Trial_*/events.out.tfevents.*"))
    assert len(files) == 2
    for path in files:
        data, pos, steps = path.read_bytes(), 0, []
        while pos < len(data):  # TFRecord: length, its crc, the Event, its crc
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            steps += [event.step for v in event.summary.value if v.tag == "ray/tune/val_loss"]
        assert steps == STEPS


# --- without Ray ----------------------------------------------------------------------------

def spec_with(tracking_table: str) -> str:
    return f'[sweep]\nname = "t"\n[tracking]\n{tracking_table}\n'


@pytest.mark.parametrize("table, message", [
    ('mlflow = "mlruns"', "tracking.mlflow: must be 'local'"),
    ('mlflow = 1', "tracking.mlflow: must be str"),
    ('wandb = "cloud"', "tracking.wandb: must be 'online' or 'offline', got 'cloud'"),
    ('wandb_project = "p"', "tracking.wandb_project: applies only with tracking.wandb"),
    ('wandb = "offline"\nwandb_entity = " "', "tracking.wandb_entity: must not be empty"),
    ('neptune = true', "tracking.neptune: unknown key"),
])
def test_bad_tracking_gets_one_line_naming_the_field(tmp_path, capsys, table, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_with(table))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_tracking_flags_set_the_spec_and_read_back():
    spec = parse_spec({"sweep": {"name": "t"}, "tracking": {
        "mlflow": "http://mlflow:5000", "wandb": "online", "wandb_project": "p"}})
    assert spec.tracking == Tracking("http://mlflow:5000", "online", "p")
    assert parse_spec(spec_dict(spec)) == spec
    assert "tracking" not in spec_dict(parse_spec({"sweep": {"name": "t"}}))


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_tracker_not_installed_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch,
                                                              package):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was asked for")

    monkeypatch.setattr("ablate.sweeps.tuner.ray_session", no_ray)
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    spec = tmp_path / "spec.toml"
    spec.write_text('[sweep]\nname = "t"\n')
    flag = ["--mlflow"] if package == "mlflow" else ["--wandb", "online"]
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs"), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ablate: tracking.{package}: the {package} package is not installed; "
                   f"pip install 'ablate-sweeps[{package}]'")
    assert not (tmp_path / "runs").exists()


def test_wandb_online_without_a_key_and_a_local_mlflow_store_on_a_uri_are_refused(
        tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SpecError, match="tracking.wandb: online needs a W&B API key"):
        tracking.check(Tracking(wandb="online"), str(tmp_path))
    tracking.check(Tracking(wandb="offline"), str(tmp_path))
    pytest.importorskip("mlflow")
    with pytest.raises(SpecError, match="tracking.mlflow: 'local' keeps runs in mlflow.db"):
        tracking.check(Tracking(mlflow="local"), "s3://bucket/runs/t")
    assert tracking.mlflow_uri(Tracking(mlflow="local"), str(tmp_path)) == (
        f"sqlite:///{tmp_path.resolve()}/mlflow.db")


def test_the_tensorboard_logger_loads_without_torch_and_torch_imports_after(tmp_path):
    """tensorboardX would import torch to name a type: a sweep's driver never needs torch."""
    probe = ("import sys; from ablate.sweeps import tracking; from ablate.sweeps.spec import Tracking; "
             f"[logger] = tracking.callbacks(Tracking(), 's', {str(tmp_path)!r}); "
             "print(type(logger).__name__, 'torch' in sys.modules); import torch; print(torch.ones(2).sum().item())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0"})
    assert done.stdout.split() == ["StepTBXLogger", "False", "2.0"], done.stderr[-2000:]


def test_trackers_get_the_trials_metrics_at_the_training_step():
    result = {"step": 40, "val_loss": 3.5, "train_loss": 3.6, "train_time_ms": 812.5,
              "tokens_seen": 20480, "status": "running", "node_id": "n", "training_iteration": 3,
              "time_this_iter_s": 0.2, "done": False}
    assert tracking.at_step(result) == {"val_loss": 3.5, "train_loss": 3.6,
                                        "train_time_ms": 812.5, "tokens_seen": 20480,
                                        "training_iteration": 40}
    logger = tracking.step_logger("StepTBXLogger")
    assert logger is tracking.StepTBXLogger  # where pickle finds it (Tune pickles its callbacks)
    assert logger.__module__ == "ablate.sweeps.tracking"


def test_resume_builds_the_trackers_again_and_logs_no_run_twice(swept, local_ray):
    """`ablate resume` makes the spec's trackers again, in a fresh process; with every trial
    finished it logs no new run."""
    from mlflow import MlflowClient

    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)  # offline because the saved spec says so
    proc = subprocess.run([sys.executable, "-m", "ablate.cli", "resume", str(swept.folder),
                           "--address", local_ray],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep tracked: 2 completed" in proc.stderr
    client = MlflowClient(f"sqlite:///{swept.folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    assert len(client.search_runs([experiment.experiment_id])) == 2
