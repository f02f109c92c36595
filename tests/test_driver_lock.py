"""Item 6 of the reliability table: one driver a sweep. A second `ablate resume` of a folder
whose driver runs is refused with one line naming it; a lock a killed driver left is taken
over, and said so."""

import subprocess
import sys
import textwrap

import pytest

from ablate.cli import main
from ablate.sweeps.control import LOCK_FILE, driver_lock
from ablate.sweeps.spec import load_spec
from ablate.sweeps.storage import claim, save_sweep
from ablate.sweeps.tuner import trial_settings

HOLD = textwrap.dedent("""
    import sys, time
    from ablate.sweeps.control import driver_lock
    with driver_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def folder(tmp_path, data_dir):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(f'[sweep]\nname = "s"\ndata = "{data_dir}"\n[fixed]\nnum_iterations = 8\n')
    spec = load_spec(spec_file)
    folder = tmp_path / "runs" / "s"
    claim(str(folder))
    save_sweep(spec, trial_settings(spec, tmp_path / "runs", data_dir))
    return folder


def test_item06_a_second_driver_of_one_sweep_is_refused(folder, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["resume", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another driver runs this sweep (pid {holder.pid} on " in err[0], err
        assert not (folder / "curves").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # killed: the OS released its lock; the file still names it, and the next driver says so
    with driver_lock(str(folder)):
        assert "taking over the lock a driver left (pid" in capsys.readouterr().err
    assert (folder / LOCK_FILE).read_text() == ""  # a clean end names nobody
    with driver_lock(str(folder)):
        assert capsys.readouterr().err == ""


def test_item06_a_planted_lock_link_is_not_followed(folder, tmp_path):
    (tmp_path / "outside").write_text("keep")
    (folder / LOCK_FILE).symlink_to(tmp_path / "outside")
    with pytest.raises(OSError):
        with driver_lock(str(folder)):
            pass
    assert (tmp_path / "outside").read_text() == "keep"
