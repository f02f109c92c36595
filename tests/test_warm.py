"""Warm workers: a gang runs trial after trial in the same processes and process group, and no
trial sees what the one before it left. A trial run warm (after another config, and after a
trial stopped between two points) equals the same trial run cold on a new gang, bit for bit:
parameters, optimizer state, RNG and data position all start from the trial's own config."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from ablate.sweeps.checkpoints import latest_checkpoint

from conftest import tiny

EXACT = ("step", "val_loss", "train_loss", "lambdas", "tokens_seen")


def losses(points) -> list[dict]:
    """A run's reports without their wall-clock time."""
    return [{k: v for k, v in p.metrics.items() if k != "train_time_ms"} for p in points]


@pytest.fixture
def group(local_ray):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 0.01}, {"CPU": 0.5}, {"CPU": 0.5}])
    ray.get(pg.ready(), timeout=60)
    yield pg
    remove_placement_group(pg)


def run_to_end(gang, work, resume=None, stop_after: int | None = None) -> list:
    """Drive a trial point by point as the sweep's driver does; stop it after `stop_after`."""
    import ray

    gang.start(work, resume)
    points = []
    while True:
        point = ray.get(gang.next_refs())[0]
        if point is None:
            return points
        points.append(point)
        if stop_after is not None and len(points) == stop_after:
            gang.stop()
            return points


def work_for(tmp_path, data_dir, name: str, **overrides):
    from ablate.sweeps.gang import TrialWork

    cfg = tiny(data_dir, out=str(tmp_path / f"{name}.parquet"), checkpoint_every=4, **overrides)
    return TrialWork(config=cfg, checkpoints=str(tmp_path / "ckpt" / name))


def rows(tmp_path, name: str) -> list[dict]:
    return [{k: r[k] for k in EXACT} for r in pq.read_table(tmp_path / f"{name}.parquet").to_pylist()]


def test_a_trial_run_warm_equals_it_run_cold(group, tmp_path, data_dir):
    from ablate.sweeps.gang import Gang

    gang = Gang(2, 0.5, 0, group=group)
    try:
        run_to_end(gang, work_for(tmp_path, data_dir, "other", extra_embeddings=2, seed=7))
        run_to_end(gang, work_for(tmp_path, data_dir, "stopped", extra_embeddings=1, seed=3), stop_after=2)
        warm = run_to_end(gang, work_for(tmp_path, data_dir, "warm", extra_embeddings=1, token_lambdas=True))
        pids = gang.pids
    finally:
        gang.kill()
    cold_gang = Gang(2, 0.5, 0, group=group)
    try:
        cold = run_to_end(cold_gang, work_for(tmp_path, data_dir, "cold", extra_embeddings=1, token_lambdas=True))
        assert set(cold_gang.pids).isdisjoint(pids)  # new processes: a cold start
    finally:
        cold_gang.kill()
    assert losses(warm) == losses(cold)
    assert rows(tmp_path, "warm") == rows(tmp_path, "cold")
    assert [r["step"] for r in rows(tmp_path, "stopped")] == [0, 4]  # left between two points
    assert pq.read_table(tmp_path / "stopped.parquet")["status"][-1].as_py() == "running"


def test_a_gang_resumes_a_trial_from_its_kept_checkpoint_bit_for_bit(group, tmp_path, data_dir):
    from ablate.sweeps.gang import Gang

    gang = Gang(2, 0.5, 0, group=group)
    try:
        whole = run_to_end(gang, work_for(tmp_path, data_dir, "whole", extra_embeddings=1))
        cut = work_for(tmp_path, data_dir, "cut", extra_embeddings=1)
        run_to_end(gang, cut, stop_after=3)  # points 0, 4, 8: checkpoints at 4 and 8
        latest = latest_checkpoint(cut.checkpoints)
        assert latest is not None and latest.endswith("step_000000008")
        resumed = run_to_end(gang, cut, resume=latest)
    finally:
        gang.kill()
    assert losses(resumed) == losses(whole)[3:]
    assert rows(tmp_path, "cut") == rows(tmp_path, "whole")
