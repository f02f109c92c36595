"""Item 12 of the reliability table (its second half): a step search refuses a bad Optuna
URL before it writes the built-in corpus."""

import pytest

from ablate.sweeps.spec import SpecError


def test_item12_a_bad_optuna_url_is_refused_before_the_corpus_is_written(tmp_path):
    from test_search_run import search_steps, write_spec

    spec = write_spec(tmp_path, "builtin")
    with pytest.raises(SpecError, match="^--optuna-storage: cannot open not a url"):
        search_steps(spec, "--storage", tmp_path / "runs", "--optuna-storage", "not a url")
    assert not (tmp_path / "runs").exists()


def kept(folder, step: int, val_loss) -> str:
    """Keep a checkpoint as rank 0 does: from a local folder holding the state file."""
    import tempfile
    from pathlib import Path

    from ablate.sweeps.checkpoints import keep_checkpoint

    local = Path(tempfile.mkdtemp())
    (local / "state.pt").write_bytes(b"state %d" % step)
    return keep_checkpoint(local, str(folder), {"step": step, "val_loss": val_loss})


def test_item12_a_running_trial_keeps_only_its_latest_and_best_checkpoints(tmp_path):
    from ablate.sweeps.checkpoints import latest_checkpoint, points

    folder = tmp_path / "checkpoints" / "t_00000"
    for step, loss in [(4, 5.0), (8, 3.0), (12, float("nan")), (16, 4.0)]:
        kept(folder, step, loss)
    # the best (step 8, 3.0) and the latest (16); a diverged point is never "best"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000000008", "step_000000016"]
    assert latest_checkpoint(str(folder)) == str(folder / "step_000000016")
    kept(folder, 20, 2.0)  # a new best is also the latest: one left
    assert list(points(str(folder))) == ["step_000000020"]


def test_a_half_written_or_planted_checkpoint_is_never_resumed_from(tmp_path):
    from ablate.sweeps.checkpoints import latest_checkpoint, prune

    folder = tmp_path / "t_00000"
    kept(folder, 4, 5.0)
    (folder / "step_000000008").mkdir()  # no state file: cut off mid-write
    (folder / ".step_000000012.0a1b.tmp").mkdir()  # a temp name
    (folder / "step_x").mkdir()  # not one of ours
    (folder / "step_000000016").mkdir()
    (folder / "step_000000016" / "state.pt").write_bytes(b"s")
    (folder / "step_000000016" / "point.json").write_text('{"val_loss": [')  # corrupt: loss unknown
    assert latest_checkpoint(str(folder)) == str(folder / "step_000000016")
    assert prune(str(folder)) == []  # 16 the latest, 4 the best; incomplete ones are not ours to judge
    assert (folder / "step_000000008").is_dir() and (folder / "step_x").is_dir()
    assert latest_checkpoint(str(tmp_path / "none")) is None
