"""Faults injected into real sweeps on a local Ray: a diverging trial, a raising trial and a
SIGKILLed training worker. The sweep goes on, the killed trial resumes from its checkpoint
with a continuous curve, and the report keeps the failures apart. Nothing is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ablate.cli import main
from ablate.results.curves import trial_meta

from conftest import end_shared_ray

TESTS = Path(__file__).resolve().parent
FAULTS = "nan:1:6,raise:2:6,kill:3:10,stop:4:10"  # k=1 diverges, k=2 raises, k=3 loses rank 1
# once, k=4 has rank 1 stopped once

SPEC = """
[sweep]
name = "faults"
data = "{data}"
max_failures = 1

[resources]
workers = 2

[fixed]
num_iterations = 16
val_every = 4
checkpoint_every = 4
batch_size = 4
val_tokens = 1024

[axes]
extra_embeddings = [0, 1, 2, 3]
"""


@pytest.fixture(scope="module")
def faulty_ray(tmp_path_factory):
    """A local Ray whose worker processes carry the fault hook."""
    import ray

    from ablate.sweeps.tuner import TRIAL_SLOT

    end_shared_ray()  # this one's workers differ
    marks = tmp_path_factory.mktemp("marks")
    env = dict(ABLATE_TEST_FAULTS=FAULTS, ABLATE_TEST_FAULT_DIR=str(marks),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, resources={TRIAL_SLOT: 1000}, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": env,
                                               "worker_process_setup_hook": "faults_hook.install"})
    yield marks
    ray.shutdown()


def curve(folder: Path, k: int) -> tuple[list[dict], dict]:
    for path in (folder / "curves").glob("*.parquet"):
        table = pq.read_table(path)
        if json.loads(table["params"][0].as_py())["extra_embeddings"] == k:
            return table.to_pylist(), trial_meta(path)
    raise AssertionError(f"no curve for k={k}")


def test_sweep_survives_divergence_errors_and_a_killed_worker(tmp_path, data_dir, faulty_ray, capsys):
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC.format(data=data_dir))
    code = main(["sweep", str(spec), "--storage", str(tmp_path / "runs")])
    assert code == 1  # a trial failed: said in the exit status, and the sweep still finished
    folder = tmp_path / "runs" / "faults"
    assert len(list((folder / "curves").glob("*.parquet"))) == 4  # no trial lost

    clean, _ = curve(folder, 0)
    assert [r["step"] for r in clean] == [0, 4, 8, 12, 16] and clean[-1]["status"] == "completed"

    diverged, _ = curve(folder, 1)
    assert [r["step"] for r in diverged] == [0, 4, 6]
    assert [r["status"] for r in diverged] == ["running", "running", "diverged"]

    failed, meta = curve(folder, 2)  # raised, was retried from its checkpoint, raised again
    assert [r["step"] for r in failed] == [0, 4, 8]
    assert failed[-1]["status"] == "failed" and meta["restarts"] == [4]

    killed, meta = curve(folder, 3)  # rank 1 SIGKILLed at step 10: resumed from step 8
    assert (faulty_ray / "kill-k3").exists()
    assert [r["step"] for r in killed] == [0, 4, 8, 12, 16]  # continuous: no gap, no repeat
    # resumed from the last checkpoint: step 8's, kept by rank 0 before step 8 was reported
    assert killed[-1]["status"] == "completed" and meta["restarts"] == [8]

    capsys.readouterr()
    assert main(["report", str(folder), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = {c["key"]["extra_embeddings"]: c["counts"] for c in report["configs"]}
    assert counts[0]["completed"] == counts[3]["completed"] == 1
    assert counts[1]["diverged"] == 1 and counts[2]["failed"] == 1


TWO = """
[sweep]
name = "{name}"
data = "{data}"
[resources]
workers = 1
[fixed]
num_iterations = 8
val_every = 4
batch_size = 4
val_tokens = 1024
"""


def test_two_sweeps_on_one_storage_root_never_touch_each_others_files(
        tmp_path, data_dir, faulty_ray, capsys):
    root = tmp_path / "shared"
    specs = {}
    for name in ("alpha", "beta"):
        specs[name] = tmp_path / f"{name}.toml"
        specs[name].write_text(TWO.format(name=name, data=data_dir))
    assert main(["sweep", str(specs["alpha"]), "--storage", str(root)]) == 0
    alpha = {p: p.stat().st_mtime_ns for p in (root / "alpha").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["sweep", str(specs["beta"]), "--storage", str(root)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "alpha").rglob("*") if p.is_file()} == alpha
    assert len(list((root / "beta" / "curves").glob("*.parquet"))) == 1
    log = capsys.readouterr().err.splitlines()  # not a terminal: the folder first, the next command last
    assert log[0] == f"ablate: beta: 1 trials x 1 workers -> {root / 'beta'}"
    assert log[-1].endswith(f"`ablate report {root / 'beta'}`")
    assert main(["sweep", str(specs["alpha"]), "--storage", str(root)]) == 2  # same name again
    assert "already stored" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (root / "alpha").rglob("*") if p.is_file()} == alpha


def test_two_drivers_claiming_one_sweep_folder_at_once_one_wins(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from ablate.sweeps.spec import SpecError
    from ablate.sweeps.storage import claim

    def attempt(_):
        try:
            claim(str(tmp_path / "root" / "same"))
            return "won"
        except SpecError:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("won") == 1 and outcomes.count("refused") == 7


STALL = """
[sweep]
name = "stall"
data = "{data}"
max_failures = 1
stall_timeout = 6

[resources]
workers = 2

[fixed]
num_iterations = 16
val_every = 4
checkpoint_every = 4
batch_size = 4
val_tokens = 1024
extra_embeddings = 4
"""


def test_item07_a_stopped_worker_is_a_stall_restarted_from_its_checkpoint(
        tmp_path, data_dir, faulty_ray, capsys):
    """Rank 1 SIGSTOPs itself at step 10: Ray sees its process alive, the run sends no report.
    After stall_timeout the run is aborted (the stopped process killed) and fitted again from
    its last checkpoint; the log says so; the curve is continuous."""
    spec = tmp_path / "stall.toml"
    spec.write_text(STALL.format(data=data_dir))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 0
    assert (faulty_ray / "stop-k4").exists()
    rows, meta = curve(tmp_path / "runs" / "stall", 4)
    assert [r["step"] for r in rows] == [0, 4, 8, 12, 16] and rows[-1]["status"] == "completed"
    assert meta["restarts"] == [8]  # rank 0 keeps each checkpoint before the point is reported
    [run] = (tmp_path / "runs" / "stall" / "checkpoints").iterdir()  # item 12: the latest and the best kept
    kept = sorted(p.name for p in run.iterdir())
    assert kept == ["step_000000012"], kept  # the loss fell at every point: the latest is the best
    stalled = [line for line in capsys.readouterr().err.splitlines() if " stalled " in line]
    assert len(stalled) == 1 and "no report for" in stalled[0] and "restarted from the last checkpoint" in stalled[0]
