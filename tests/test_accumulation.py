"""Workers and micro-steps are the same math: 2 gloo workers, and 1 worker that runs the same
tokens as 2 accumulation micro-steps, end with the same curve and the same weights."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from conftest import tiny
    from ablate.trainer.train import _Run
    cfg = tiny({data!r}, out={out!r}, tokens_per_step=256, micro_tokens=128, extra_embeddings=1,
               val_tokens=1024)
    run = _Run(cfg, None)
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


def test_two_workers_equal_one_worker_with_two_micro_steps(tmp_path, data_dir):
    alone, = run(tmp_path, data_dir, 1)
    pair = run(tmp_path, data_dir, 2)
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
