"""Workers and micro-steps are the same math: 2 gloo workers, and 1 worker that runs the same
tokens as 2 accumulation micro-steps, end with the same curve and the same weights."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import shutil, sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from conftest import tiny
    from ablate.trainer.train import Run

    class KeepStep8:
        def report(self, metrics, checkpoint):
            if checkpoint is not None and metrics["step"] == 8:
                shutil.copytree(checkpoint, {out!r} + ".step8")

    cfg = tiny({data!r}, out={out!r}, tokens_per_step=256, micro_tokens=128, extra_embeddings=1,
               val_tokens=1024, checkpoint_every=4)
    run = Run(cfg, KeepStep8())
    run._own_group = False  # keep the group to save every rank's weights
    result = run.run(None)
    rank = dist.get_rank() if dist.is_initialized() else 0
    assert run.micro_steps == ({workers} == 1) + 1  # 2 micro-steps alone, 1 each with 2 workers
    torch.save(dict(weights=run.model.state_dict(), rows=result.rows), {out!r} + f".rank{{rank}}.pt")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
""")


def run(tmp_path: Path, data_dir: Path, workers: int) -> list[dict]:
    out = tmp_path / f"w{workers}.parquet"
    script = tmp_path / f"w{workers}.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), data=str(data_dir),
                                    out=str(out), workers=workers))
    launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={workers}"] \
        if workers > 1 else [sys.executable]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run(launch + [str(script)], check=True, capture_output=True, timeout=240, env=env)
    return [torch.load(f"{out}.rank{r}.pt", weights_only=False) for r in range(workers)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """The same 12 steps alone (2 micro-steps) and on 2 gloo workers (1 each)."""
    folder = tmp_path_factory.mktemp("accumulation")
    return folder, run(folder, data_dir, 1)[0], run(folder, data_dir, 2)


def test_two_workers_equal_one_worker_with_two_micro_steps(runs):
    _, alone, pair = runs
    # Weights: equal bit for bit. Each micro-step's loss is divided by 2 before its backward
    # and 2 workers' gradients are summed then halved; halving is exact in floating point,
    # so g0/2 + g1/2 == (g0 + g1)/2, and Muon and Adam then see the same gradients.
    for rank in pair:
        for name, w in alone["weights"].items():
            assert torch.equal(w, rank["weights"][name]), name
    # Curves: the same steps, tokens and lrs. Val losses sum the same streams' losses in
    # float64 in another order (1e-15 relative); train losses average the same fp32 losses
    # over steps in another order (a few fp32 ulps: 1e-6 relative).
    a, b = alone["rows"], pair[0]["rows"]
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 4, 8, 12]
    for ra, rb in zip(a, b, strict=True):
        assert ra["tokens_seen"] == rb["tokens_seen"] and ra["lr"] == rb["lr"]
        assert abs(ra["val_loss"] - rb["val_loss"]) <= 1e-12 * ra["val_loss"]
        if ra["train_loss"] is not None:
            assert abs(ra["train_loss"] - rb["train_loss"]) <= 1e-6 * ra["train_loss"]
        assert json.loads(rb["params"])["workers"] == 2
    assert a[-1]["val_loss"] < a[0]["val_loss"]  # it trained


def test_a_checkpoint_of_two_workers_resumes_on_one(runs, data_dir):
    """Muon's state lives on the rank that owns each matrix; the checkpoint merges the ranks'
    states, so a 2-worker run resumed on 1 worker ends as the 1-worker run does, bit for bit."""
    from ablate.trainer.train import Run

    from conftest import tiny

    folder, alone, _ = runs
    torch.set_num_threads(1)
    cfg = tiny(data_dir, tokens_per_step=256, micro_tokens=128, extra_embeddings=1,
               val_tokens=1024, checkpoint_every=4)
    resumed = Run(cfg, None)
    resumed.run(folder / "w2.parquet.step8")
    for name, w in alone["weights"].items():
        assert torch.equal(w, resumed.model.state_dict()[name]), name
