"""Ctrl-C in the middle of a sweep, then the folder moved elsewhere: the interrupted driver
exits 130 saying how to resume, and `ablate resume` on the moved folder finishes every trial
in place, each curve once, unfinished trials continuing from their checkpoints; a random
search's resume runs exactly the points it drew, none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq

from ablate.sweeps.status import sweep_status

SPEC = """
[sweep]
name = "ctrl-c"
data = "{data}"
max_concurrent_trials = 1

[resources]
workers = 1

[fixed]
num_iterations = 32
val_every = 4
checkpoint_every = 4
batch_size = 2
val_tokens = 1024

[axes]
lr_head = [0.008, 0.006, 0.004]
"""
# 3 points drawn from a grid of 8 (search.method = "random"), fixed by the seed
RANDOM = """lr_head = [0.008, 0.006, 0.004, 0.002]
extra_embeddings = [0, 1]

[search]
method = "random"
num_samples = 3
seed = 11
"""


def ablate(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """The CLI as a subprocess, its output piped; `env` is added to this process's."""
    env = os.environ | {"OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "ablate.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_exits_130_and_a_moved_folder_resumes_in_place(tmp_path, data_dir, local_ray):
    """Ctrl-C to a driver of the embedded Ray; the resume joins the shared one."""
    from ablate.sweeps.spec import load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir).replace("lr_head = [0.008, 0.006, 0.004]\n", RANDOM))
    drawn = sorted((p["lr_head"], p["extra_embeddings"]) for p in load_spec(spec).points())
    assert len(drawn) == 3
    first = ablate("sweep", str(spec), "--storage", str(tmp_path / "runs"), "--json-log")
    reported = set()
    for line in first.stdout:  # interrupt once a trial has ended and the others have not
        event = json.loads(line)
        if event["event"] == "result":
            reported.add(event["trial_id"])
        if event["event"] == "trial_end":
            done = event["trial_id"]
            first.send_signal(signal.SIGINT)
            break
    # `status` while the driver winds down: a trial that has reported is never shown as pending
    live = {r["trial_id"]: r["state"] for r in sweep_status(str(tmp_path / "runs" / "ctrl-c"), [])}
    assert reported <= set(live) and all(live[t] != "pending" for t in reported), live
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-2000:]
    assert "ablate: interrupted:" in err and "ablate resume" in err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "interrupted"
    report = next(e["report"] for e in events if e["event"] == "report")
    assert any("were not run or did not finish" in w for w in report["warnings"])  # counted

    after = {r["trial_id"]: r["state"] for r in sweep_status(str(tmp_path / "runs" / "ctrl-c"), [])}
    assert after[done] == "completed"
    assert not {"starting", "running"} & set(after.values()), after  # interrupted, not running

    moved = tmp_path / "elsewhere" / "ctrl-c"
    moved.parent.mkdir()
    (tmp_path / "runs" / "ctrl-c").rename(moved)
    finished = (moved / "curves" / f"{done}.parquet").stat().st_mtime_ns
    second = ablate("resume", str(moved), "--json-log", "--address", local_ray)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    assert not (tmp_path / "runs" / "ctrl-c").exists()  # nothing went back to the old place
    assert (moved / "curves" / f"{done}.parquet").stat().st_mtime_ns == finished  # not retrained
    curves = sorted((moved / "curves").glob("*.parquet"))
    assert len(curves) == 3
    ran = []
    for path in curves:
        rows = pq.read_table(path).to_pylist()
        assert [r["step"] for r in rows] == list(range(0, 33, 4)), path.name  # once each
        assert rows[-1]["status"] == "completed"
        params = json.loads(rows[-1]["params"])
        ran.append((params["lr_head"], params["extra_embeddings"]))
    assert sorted(ran) == drawn  # the points drawn before the Ctrl-C, each once


def test_sigterm_ends_a_sweep_as_ctrl_c_does(tmp_path, data_dir):
    """A batch system's time limit sends SIGTERM: the same exit 130 and resume line, and the
    trial it cut off is `interrupted`, not counted as ended."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir).replace("[0.008, 0.006, 0.004]", "[0.008]")
                    .replace("num_iterations = 32", "num_iterations = 4000"))
    proc = ablate("sweep", str(spec), "--storage", str(tmp_path / "runs"), "--json-log")
    for line in proc.stdout:
        if json.loads(line)["event"] == "result":  # training: a curve and a checkpoint exist
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "ablate: interrupted: 0 of 1 trials ended" in err and "ablate resume" in err
    assert "SIGTERM received" not in err  # Ray's own handler did not get it
    rows = sweep_status(str(tmp_path / "runs" / "ctrl-c"), [])
    assert [r["state"] for r in rows] == ["interrupted"]


SEARCH = """
[sweep]
name = "search-stop"
data = "{data}"
[resources]
workers = 1
[fixed]
val_every = 100
val_tokens = 1024
[search]
min_steps = 1000
max_steps = 2000
granularity = 500
target = 3.0
"""


def test_ctrl_c_stops_a_step_search_saying_so(tmp_path, data_dir, local_ray):
    """Ctrl-C in a step search: exit 130 and `interrupted`, not exit 0 and a caption asking
    for a larger budget that was never spent."""
    spec = tmp_path / "search.toml"
    spec.write_text(SEARCH.format(data=data_dir))
    proc = ablate("search-steps", str(spec), "--storage", str(tmp_path / "runs"), "--address", local_ray)
    for line in proc.stderr:
        if " start " in f" {line.strip()} ":  # the first probe was asked (a timestamped line)
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "ablate: interrupted:" in err and "run the same command again" in err
    assert "undecided so far" in " ".join(out.split()) and "raise search.max_trials" not in out
