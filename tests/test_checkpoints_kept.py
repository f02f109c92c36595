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


def snapshot(folder, names, latest, losses):
    import json

    results = [{"version": 0, "checkpoint_dir_name": n, "metrics": {"step": i, "val_loss": loss}}
               for i, (n, loss) in enumerate(zip(names, losses))]
    (folder / "checkpoint_manager_snapshot.json").write_text(json.dumps({
        "checkpoint_results": results,
        "latest_checkpoint_result": next(r for r in results if r["checkpoint_dir_name"] == latest)}))


def test_item12_a_run_keeps_its_latest_and_best_checkpoints_and_nothing_newer_is_touched(tmp_path):
    from ablate.sweeps.storage import prune_checkpoints

    names = [f"checkpoint_2026-12-06_10-00-0{i}.000000" for i in range(6)]
    for name in [*names, "checkpoint_in_flight", "notes"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.pt").write_bytes(b"x")
    # the snapshot knows 0..4; 5 is being written (newer than the latest it names)
    snapshot(tmp_path, names[:5], latest=names[4], losses=[5.0, 3.0, float("nan"), 4.0, 4.5])
    assert sorted(prune_checkpoints(str(tmp_path))) == [names[0], names[2], names[3]]
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert left == sorted([names[1], names[4], names[5], "checkpoint_in_flight", "notes"])
    assert prune_checkpoints(str(tmp_path)) == []  # listed but gone: nothing to do

    (tmp_path / "checkpoint_manager_snapshot.json").write_text('{"checkpoint_results": [')  # mid-write
    assert prune_checkpoints(str(tmp_path)) == []
    snapshot(tmp_path, ["../../escape", names[4]], latest=names[4], losses=[1.0, 2.0])
    (tmp_path.parent / "escape").mkdir(exist_ok=True)
    prune_checkpoints(str(tmp_path))
    assert (tmp_path.parent / "escape").is_dir()  # a planted name never climbs out
