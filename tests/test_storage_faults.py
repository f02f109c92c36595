"""Storage that fills up or turns read-only while a curve is written: a clear error, and
every file written before stays intact (curves are replaced atomically, never truncated)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from ablate.cli import main
from ablate.results.curves import CurveError, read_curve, write_curve

ROW = dict(sweep="s", trial_id="t", step=0, val_loss=3.0, train_time_ms=0.0, status="running",
           params="x" * 2000)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root, as on the CI machine)."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (not root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder):
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_curve(small_disk):
    path = small_disk / "s" / "curves" / "t.parquet"
    write_curve(path, [ROW])
    before = path.read_bytes()
    fill(small_disk)
    with pytest.raises(CurveError, match=r"t\.parquet: cannot write the curve \(No space left"):
        write_curve(path, [ROW | {"step": i} for i in range(200)])
    assert path.read_bytes() == before
    assert read_curve(path).num_rows == 1
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]  # no temp file left


def test_read_only_storage_gives_a_clear_error_and_keeps_files(small_disk):
    path = small_disk / "s" / "curves" / "t.parquet"
    write_curve(path, [ROW])
    before = path.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(CurveError, match="cannot write the curve"):
        write_curve(path, [ROW, ROW | {"step": 1}])
    assert path.read_bytes() == before


def test_training_onto_a_full_disk_exits_2_with_one_line(small_disk, data_dir, capsys):
    fill(small_disk)
    out = small_disk / "c.parquet"
    code = main(["train", "--data", str(data_dir), "--out", str(out), "-s", "num_iterations=4",
                 "-s", "val_every=2", "-s", "val_tokens=1024", "-s", "batch_size=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [err] and "cannot write the curve" in err
    assert not out.exists()
