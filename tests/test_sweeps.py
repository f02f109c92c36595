import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from results.curves import SCHEMA
from sweeps.cli import main

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
val_every = 6
batch_size = 4
val_tokens = 1024

[axes]
extra_embeddings = [0, 1]
"""


def write_spec(tmp_path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_two_trial_sweep_on_local_ray_then_report(tmp_path, data_dir, local_ray, capsys):
    spec = write_spec(tmp_path, SPEC.format(name="two", data=data_dir))
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 0
    curves = sorted((tmp_path / "runs" / "two" / "curves").glob("*.parquet"))
    assert len(curves) == 2
    tables = [pq.read_table(c) for c in curves]
    assert all(t.column_names == SCHEMA.names for t in tables)
    assert sorted(t["extra_embeddings"][0].as_py() for t in tables) == [0, 1]
    for t in tables:
        rows = t.to_pylist()
        assert [r["step"] for r in rows] == [0, 6, 12]
        assert rows[-1]["status"] == "completed" and rows[-1]["workers"] == 2
    out = capsys.readouterr().out
    assert "extra_embeddings" in out or "Pareto" in out
    # the same sweep again is refused: nothing stored is overwritten
    before = {c: c.stat().st_mtime_ns for c in curves}
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    assert {c: c.stat().st_mtime_ns for c in curves} == before


@pytest.mark.parametrize("body, message", [
    ('[sweep]\nname = "x"\nbogus = 1\n', "sweep.bogus: unknown key"),
    ('[sweep]\nname = "x"\n[axes]\nextra_embeddings = [0, 7]\n', "axes.extra_embeddings: must be an integer in 0..5"),
    ('[sweep]\nname = "x"\n[fixed]\nnum_iterations = "many"\n', "fixed.num_iterations: must be int"),
    ('[sweep]\nname = "x"\nseeds = "two"\n', "sweep.seeds: must be int or list"),
    ('[sweep]\nname = "x"\n[axes]\nlambda_init = ["zero", "half"]\n', "axes.lambda_init: must be one of"),
    ('[sweep]\nname = "x"\n[fixed]\nwarp_drive = true\n', "fixed.warp_drive: unknown field"),
    ('[sweep]\nname = "x"\n[resources]\nworkers = 3\n[fixed]\nbatch_size = 8\n', "fixed.batch_size: 8 sequences do not split evenly over 3"),
    ('[sweep]\nname = "../up"\n', "sweep.name"),
    ('[sweep]\nseeds = 1\n', "sweep.name: missing"),
    ('[sweeps]\nname = "x"\n', "sweeps: unknown section"),
    ('[sweep\nname = "x"\n', "not valid TOML"),
    ('[sweep]\nname = "x"\ndata = "/no/such/folder"\n', "sweep.data: /no/such/folder: data folder not found"),
])
def test_bad_specs_get_one_line_naming_the_field(tmp_path, capsys, body, message):
    spec = write_spec(tmp_path, body)
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.parquet"))


def test_bad_spec_exit_status_and_no_traceback_from_the_console_script(tmp_path):
    spec = write_spec(tmp_path, '[sweep]\nname = "x"\n[axes]\nextra_embeddings = [7]\n')
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(spec)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ablate: {spec}: axes.extra_embeddings: must be an integer in 0..5, got 7 "
        "(in trial extra_embeddings=7)"]


def test_missing_spec_file(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "no such spec file" in capsys.readouterr().err
