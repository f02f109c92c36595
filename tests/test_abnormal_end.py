"""Items 10 and 11 of the reliability table: every abnormal end of a sweep's driver names the
folder and the `ablate resume` command, and leaves no trial looking as if it ran.

Its raylet killed, the driver is ended by Ray's core worker without running Python again: the
watcher forked before Ray started says it. A full disk is a Python error: one line naming the
file it could not write, and the resume command."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_interrupt import ablate
from test_storage_faults import fill, small_disk  # noqa: F401 (a fixture)

from ablate.sweeps.control import LOCK_FILE, ended
from ablate.sweeps.status import sweep_status

SPEC = """
[sweep]
name = "{name}"
data = "{data}"

[resources]
workers = 1

[fixed]
num_iterations = 400
val_every = 4
checkpoint_every = 4
batch_size = 2
val_tokens = 1024
"""


def start(tmp_path, data_dir, storage, name: str, *args: str, **env) -> subprocess.Popen:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(name=name, data=data_dir))
    driver = ablate("sweep", str(spec), "--storage", str(storage), "--json-log", *args,
                    env=env)
    for line in driver.stdout:  # once the trial trains
        if json.loads(line)["event"] == "result":
            return driver
    raise AssertionError(driver.communicate(timeout=60)[1][-2000:])


def ablate_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ablate:")]


def test_item10_a_driver_whose_raylet_dies_still_names_the_folder_and_resume(tmp_path, data_dir):
    ray_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # this driver's raylet, and no other (short: a socket path)
    driver = start(tmp_path, data_dir, tmp_path / "runs", "raylet", RAY_TMPDIR=str(ray_dir))
    # the raylet binary itself (Ray's agents name the raylet's socket in their arguments too)
    subprocess.run(["pkill", "-9", "-f", f"^\\S*/raylet/raylet .*{ray_dir}"], check=True)
    out, err = driver.communicate(timeout=180)
    folder = tmp_path / "runs" / "raylet"
    assert driver.returncode != 0
    lines = ablate_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert "ended abruptly" in lines[0] and f"ablate resume {folder}`" in lines[0]
    assert json.loads(out.splitlines()[-1])["event"] == "aborted"
    states = json.loads((folder / "trials.json").read_text())  # failed, if Tune saw it die first
    assert {t["state"] for t in states.values()} <= {"interrupted", "failed"}
    assert [r["state"] for r in sweep_status(str(folder), [])] in (["interrupted"], ["failed"])


def test_item10_a_folder_cut_off_while_starting_is_removed_so_the_command_runs_again(tmp_path):
    folder = tmp_path / "runs" / "s"
    folder.mkdir(parents=True)  # claimed, its lock taken, killed before sweep.json was saved
    (folder / LOCK_FILE).write_text("pid 1 on host")
    assert "run the same command again" in ended(str(folder))
    assert not folder.exists()
    assert ended(str(folder)) is None  # nothing to speak of


def test_item11_a_full_disk_names_the_file_and_resume_and_no_trial_stays_running(
        tmp_path, data_dir, small_disk, local_ray):  # noqa: F811
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    driver = start(tmp_path, data_dir, small_disk, "full", "--address", local_ray)  # the shared Ray
    fill(small_disk)
    out, err = driver.communicate(timeout=180)
    folder = small_disk / "full"
    assert driver.returncode == 2, err[-3000:]
    [line] = ablate_lines(err)
    assert "No space left on device" in line and f"{folder}/" in line  # the file it could not write
    assert line.endswith(f"finish it with `ablate resume {folder}`")
    assert json.loads(out.splitlines()[-1])["event"] == "aborted"
    assert [r["state"] for r in sweep_status(str(folder), [])] == ["interrupted"]


@pytest.mark.parametrize("held", [True, False])
def test_status_asks_the_lock_whether_a_driver_runs(tmp_path, held):
    """trials.json says running; only a driver holding the lock makes it so."""
    from ablate.sweeps.control import driver_running

    folder = tmp_path / "s"
    folder.mkdir()
    holder = None
    if held:
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time\nfrom ablate.sweeps.control import driver_lock\n"
            "with driver_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"),
            str(folder)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
    try:
        assert driver_running(str(folder)) is held
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    (folder / LOCK_FILE).write_text("pid 7 on some-other-host")
    assert driver_running(str(folder)) is None  # another machine's lock: not ours to judge
