"""A cluster made the plain way, `ray start --head --num-cpus=2` (no custom resources, token
authentication on as Ray 2.60 starts it): a sweep joins it with --address and runs, and the
same sweep runs as a `ray job submit` job (docs/sweeps.md, "On a cluster")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import end_shared_ray, free_port

BIN = Path(sys.executable).parent
SPEC = """
[sweep]
name = "{name}"
data = "{data}"

[resources]
workers = 2
cpus_per_worker = 1

[fixed]
num_iterations = 8
val_every = 4
batch_size = 4
val_tokens = 1024
"""


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head node of 2 CPUs with its dashboard (for job submission), stopped after."""
    end_shared_ray()  # no other Ray in this process meanwhile
    short = tempfile.mkdtemp(prefix="r")  # Ray's socket paths must stay under 108 bytes
    env = os.environ | {"RAY_TMPDIR": short, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_AUTH_MODE", None)
    port, dashboard = free_port(), free_port()
    # every port Ray would otherwise take at a fixed default: another Ray may run beside it
    # (the other pytest process)
    others = [f"--{name}={free_port()}" for name in (
        "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port")]
    started = subprocess.run([str(BIN / "ray"), "start", "--head", "--num-cpus=2", f"--port={port}",
                              "--node-ip-address=127.0.0.1", "--include-dashboard=true",
                              "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", *others,
                              "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield env, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
    finally:
        # this head's processes only (`ray stop` ends every Ray of the user's: the other
        # pytest process's too); each names the private folder in its arguments
        subprocess.run(["pkill", "-9", "-f", short], capture_output=True, timeout=60)
        shutil.rmtree(short, ignore_errors=True)


def completed(folder: Path) -> list[str]:
    return [pq.read_table(f)["status"].to_pylist()[-1] for f in sorted(folder.glob("curves/*.parquet"))]


def test_a_sweep_runs_on_a_cluster_made_by_a_plain_ray_start(head, tmp_path, data_dir):
    env, address, _ = head
    spec = tmp_path / "plain.toml"
    spec.write_text(SPEC.format(name="plain", data=data_dir))
    done = subprocess.run([str(BIN / "ablate"), "sweep", str(spec), "--storage", str(tmp_path / "runs"),
                           "--address", address, "--json-log"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert completed(tmp_path / "runs" / "plain") == ["completed"]


def test_item09_the_embedded_ray_starts_its_own_beside_a_running_cluster(head, tmp_path, data_dir):
    """A cluster already up on the machine (here the head above, found through RAY_TMPDIR and
    its address file) is not joined by a sweep without --address: it starts its own Ray."""
    env, _, _ = head
    spec = tmp_path / "own.toml"
    spec.write_text(SPEC.format(name="own", data=data_dir))
    done = subprocess.run([str(BIN / "ablate"), "sweep", str(spec), "--storage", str(tmp_path / "runs"),
                           "--json-log"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert completed(tmp_path / "runs" / "own") == ["completed"]


def test_a_sweep_runs_as_a_ray_job(head, tmp_path, data_dir):
    env, _, dashboard = head
    spec = tmp_path / "job.toml"
    spec.write_text(SPEC.format(name="job", data=data_dir))
    submit = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--",
              str(BIN / "ablate"), "sweep", str(spec), "--storage", str(tmp_path / "runs"), "--address", "auto"]
    done = subprocess.run(submit, env=env | {"RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "succeeded" in done.stdout
    assert completed(tmp_path / "runs" / "job") == ["completed"]
