"""`ablate stop DIR` from another shell: the running trial finishes and no new one starts
(exit 0, the resume line); `--now` stops the running trial too, resumable from its
checkpoint; `ablate resume` then finishes every trial, each curve row once."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
from test_interrupt import ablate  # the CLI as a subprocess, output piped

from ablate.cli import main
from ablate.sweeps.control import request_stop, stop_request
from ablate.sweeps.status import sweep_status

SPEC = """
[sweep]
name = "stoppable"
data = "{data}"
max_concurrent_trials = 1

[resources]
workers = 1

[fixed]
num_iterations = 80
val_every = 10
checkpoint_every = 10
batch_size = 2
val_tokens = 1024

[axes]
lr_head = [0.008, 0.006]
"""



def stop_at_first_result(driver: subprocess.Popen, folder, capsys, *flags: str) -> str:
    """`ablate stop` (run in this process, so at once: the trial still trains when the driver
    reads it) once a trial reports that is still training (a resumed sweep replays its
    finished trials' last points first); the trial's id."""
    for line in driver.stdout:
        event = json.loads(line)
        if event["event"] == "result" and event["state"] == "running" and event["step"] < 80:
            assert main(["stop", str(folder), *flags]) == 0
            assert "stop requested" in capsys.readouterr().out
            return event["trial_id"]
    raise AssertionError("no trial reported")


def states(folder) -> dict[str, str]:
    return {r["trial_id"]: r["state"] for r in sweep_status(str(folder), [])}


def test_stop_lets_the_running_trial_finish_and_stop_now_interrupts_it(tmp_path, data_dir, local_ray,
                                                                        capsys):
    """On the shared Ray (`--address`): what is tested is the driver's, not Ray's start."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir))
    folder = tmp_path / "runs" / "stoppable"

    first = ablate("sweep", str(spec), "--storage", str(tmp_path / "runs"), "--json-log",
                   "--address", local_ray)
    running = stop_at_first_result(first, folder, capsys)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert "stopped on request (`ablate stop`, running trials finished): 1 of 2 trials ended" in err
    assert f"ablate resume {folder}" in err
    assert json.loads(out.splitlines()[-1])["event"] == "stopped"
    assert states(folder) == {running: "completed"}  # it finished; no other trial started
    assert stop_request(str(folder)) is None  # acted on, then removed

    second = ablate("resume", str(folder), "--json-log", "--address", local_ray)
    cut = stop_at_first_result(second, folder, capsys, "--now")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    assert "running trials stopped" in err
    assert states(folder)[cut] == "interrupted"
    assert pq.read_table(folder / "curves" / f"{cut}.parquet")["status"].to_pylist()[-1] == "running"

    third = ablate("resume", str(folder), "--json-log", "--address", local_ray)
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err[-2000:]
    assert set(states(folder).values()) == {"completed"} and len(states(folder)) == 2
    for path in sorted((folder / "curves").glob("*.parquet")):
        assert [r["step"] for r in pq.read_table(path).to_pylist()] == list(range(0, 81, 10)), path.name


def test_status_says_a_stop_is_asked_and_a_malformed_request_is_none(tmp_path, data_dir):

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(data=data_dir))
    folder = tmp_path / "runs" / "stoppable"
    from ablate.sweeps.spec import load_spec
    from ablate.sweeps.storage import claim, save_sweep
    from ablate.sweeps.tuner import trial_settings

    loaded = load_spec(spec)
    claim(str(folder))
    save_sweep(loaded, trial_settings(loaded, tmp_path / "runs", data_dir))
    request_stop(str(folder), now=True)
    assert stop_request(str(folder))["now"] is True
    proc = subprocess.run([sys.executable, "-m", "ablate.cli", "status", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert "stopping (`ablate stop` --now): running trials stop now" in proc.stdout
    (folder / "stop.json").write_text('{"now": "yes"}')
    assert stop_request(str(folder)) is None
    (folder / "stop.json").write_text("[" * 100_000)
    assert stop_request(str(folder)) is None
    assert main(["stop", str(tmp_path / "nowhere")]) == 2
