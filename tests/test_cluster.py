"""A sweep on a two-node Ray cluster (ray.cluster_utils.Cluster, CPU only): trials land on
both nodes, and `ablate resume` finishes a sweep whose driver was SIGKILLed mid-way without
training a finished trial again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ablate.cli import main

from conftest import end_shared_ray, free_port

ROOT = Path(__file__).resolve().parents[1]

# Two trials fit at once (2 workers x 1 CPU on each 2-CPU node); the budgets differ so that
# the short one finishes while the next is still training.
SPEC = """
[sweep]
name = "nodes"
data = "{data}"

[resources]
workers = 2

[fixed]
val_every = 4
batch_size = 4
val_tokens = 1024

[axes]
num_iterations = [8, 24, 12]
"""


def own_ports() -> dict[str, int]:
    """Every port a node would otherwise take at a fixed default (the dashboard agent's 52365
    among them): another Ray may start beside it (the other pytest process's)."""
    return {name: free_port() for name in ("dashboard_agent_listen_port", "runtime_env_agent_port",
                                           "metrics_agent_port", "metrics_export_port")}


@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs, the trial slots) + one worker node (2 CPUs). No other Ray may run in
    this process meanwhile: the shared local Ray, if up, is ended."""
    import ray
    from ray.cluster_utils import Cluster

    from ablate.sweeps.tuner import TRIAL_SLOT, join_environment

    end_shared_ray()
    # token authentication, as `ray start` has it and as a driver joining with --address
    # expects (RAY_AUTH_MODE=token, unless the environment says otherwise)
    join_environment()
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, resources={TRIAL_SLOT: 100}, include_dashboard=True, dashboard_port=free_port(),
        **own_ports()))
    try:
        c.add_node(num_cpus=2, **own_ports())
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def read_events(proc: subprocess.Popen, log: list[dict], until) -> None:
    """Collect the driver's --json-log events until `until(log)` holds or it exits."""
    for line in proc.stdout:
        log.append(json.loads(line))
        if until(log):
            return


def killable(log: list[dict]) -> bool:
    """One trial has finished and another has reported but not finished."""
    done = {e["trial_id"] for e in log if e["event"] == "trial_end" and e["state"] == "completed"}
    running = {e["trial_id"] for e in log if e["event"] == "result"} - done
    return bool(done) and bool(running)


@pytest.mark.timeout(900)
def test_trials_use_both_nodes_and_resume_after_the_driver_is_killed(
        cluster, tmp_path, data_dir, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir))
    storage, folder = tmp_path / "runs", tmp_path / "runs" / "nodes"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "sweep", str(spec), "--storage", str(storage),
         "--address", cluster.address, "--json-log"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])))
    first: list[dict] = []
    reader = threading.Thread(target=read_events, args=(proc, first, killable), daemon=True)
    reader.start()
    reader.join(timeout=600)
    assert killable(first), f"driver ended early: {first[-3:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {e["trial_id"] for e in first if e["event"] == "trial_end" and e["state"] == "completed"}
    mtimes = {t: (folder / "curves" / f"{t}.parquet").stat().st_mtime_ns for t in finished}

    # status reads what the killed driver left: Tune's state and the curves
    assert main(["status", str(folder), "--json"]) == 0
    rows = {r["trial_id"]: r for r in json.loads(capsys.readouterr().out)["status"]}
    assert all(rows[t]["curve_status"] == "completed" for t in finished)

    assert main(["resume", str(folder), "--address", cluster.address, "--json-log"]) == 0
    second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert second[-1]["event"] == "report"

    curves = sorted((folder / "curves").glob("*.parquet"))
    assert len(curves) == 3  # every trial's curve, once
    for c in curves:
        rows = pq.read_table(c).to_pylist()
        budget = rows[0]["num_iterations"]
        assert [r["step"] for r in rows] == list(range(0, budget + 1, 4))  # no duplicate rows
        assert rows[-1]["status"] == "completed"
    assert {c.stem: c.stat().st_mtime_ns for c in curves if c.stem in finished} == mtimes
    nodes = {e["node_id"] for e in first + second if e["event"] == "result" and e.get("node_id")}
    assert len(nodes) == 2  # trials ran on both nodes


@pytest.mark.timeout(300)
def test_a_gang_larger_than_the_cluster_waits_saying_what_it_lacks(cluster, tmp_path, data_dir):
    """2 workers x 3 CPUs on a 4-CPU cluster: nodes may yet join, so the sweep starts, but says
    what it waits for (stderr, sweep_start) instead of a silent 0/40; Ctrl-C ends it."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir).replace("workers = 2", "workers = 2\ncpus_per_worker = 3"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "sweep", str(spec), "--storage", str(tmp_path / "runs"),
         "--address", cluster.address, "--json-log"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])))
    first = proc.stdout.readline()
    assert first, proc.communicate()[1][-2000:]
    start = json.loads(first)
    assert start["event"] == "sweep_start"
    assert "waiting for resources: a trial needs 6 CPUs" in start["waiting"]
    assert "the cluster has 4" in start["waiting"]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "ablate: waiting for resources: a trial needs 6 CPUs" in err


NODE_SPEC = """
[sweep]
name = "lost-node"
data = "{data}"
max_failures = 3

[resources]
workers = 2

[fixed]
num_iterations = 64
val_every = 8
checkpoint_every = 8
batch_size = 4
val_tokens = 1024

[axes]
extra_embeddings = [0, 1]
"""


@pytest.mark.timeout(900)
def test_a_worker_node_removed_mid_sweep_loses_no_trial(cluster, tmp_path, data_dir):
    """Runs last in this module: it takes the worker node away (and adds a fresh one)."""
    from ray._private.worker import global_worker  # noqa: F401  (the cluster's driver is up)

    spec = tmp_path / "spec.toml"
    spec.write_text(NODE_SPEC.format(data=data_dir))
    folder = tmp_path / "runs" / "lost-node"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "sweep", str(spec), "--storage", str(tmp_path / "runs"),
         "--address", cluster.address, "--json-log"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])))
    events: list[dict] = []
    worker = cluster.list_all_nodes()[1]

    def on_worker_node(log):
        return any(e["event"] == "result" and e.get("node_id") == worker.node_id
                   and e["step"] >= 16 for e in log)

    reader = threading.Thread(target=read_events, args=(proc, events, on_worker_node), daemon=True)
    reader.start()
    reader.join(timeout=600)
    assert on_worker_node(events), f"no trial reached step 16 on the worker node: {events[-3:]}"
    victim = next(e["trial_id"] for e in events if e["event"] == "result"
                  and e.get("node_id") == worker.node_id)
    cluster.remove_node(worker)
    cluster.add_node(num_cpus=2)  # capacity to retry on; the head's trial may still be running
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=600) == 0, rest[-3:]

    curves = sorted((folder / "curves").glob("*.parquet"))
    assert len(curves) == 2  # every trial completed, none lost
    for c in curves:
        rows = pq.read_table(c).to_pylist()
        assert [r["step"] for r in rows] == list(range(0, 65, 8))  # continuous, no repeats
        assert rows[-1]["status"] == "completed"
    from ablate.results.curves import trial_meta
    assert trial_meta(folder / "curves" / f"{victim}.parquet")["restarts"]  # resumed, not rerun
