"""The GPU check: the medium (record) model with k = 0 and k = 1 extra embeddings on one GPU,
bf16 autocast + torch.compile, 50 timed steps each after warm-up, printing tokens/s, model
FLOP utilisation and peak memory. Token shards of random GPT-2 ids stand in for FineWeb
(throughput does not depend on which tokens flow).

    python bench/gpu_check.py [--steps 50] [--batch-size 8] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ablate.model import flops_per_token  # noqa: E402
from ablate.trainer.config import TrainConfig  # noqa: E402
from ablate.trainer.data import write_shard  # noqa: E402
from ablate.trainer.train import _Run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8, help="sequences of 8192 tokens per step")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200)")
    p.add_argument("--ks", default="0,1")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    data = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    write_shard(data / "random_train_000000.bin", rng.integers(0, 50257, 20_000_000))
    write_shard(data / "random_val_000000.bin", rng.integers(0, 50257, 1_000_000))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    print(f"{'k':>2} {'params':>8} {'compile s':>9} {'step ms':>8} {'tokens/s':>10} {'MFU':>6} "
          f"{'peak GiB':>8}", flush=True)
    base = None
    for k in map(int, args.ks.split(",")):
        torch.cuda.reset_peak_memory_stats()
        cfg = TrainConfig.from_flat(dict(preset="medium", extra_embeddings=k, data=str(data),
                                         batch_size=args.batch_size, num_iterations=5690,
                                         val_tokens=8192 * 8, device="cuda", compile=True))
        run = _Run(cfg, None)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            run.train_step()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            run.train_step()
        torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / args.steps
        tps = cfg.tokens_per_step / step
        mfu = tps * flops_per_token(cfg.model) / (args.peak_tflops * 1e12)
        peak = torch.cuda.max_memory_allocated() / 2**30
        base = base or step
        print(f"{k:>2} {run.model.num_params() / 1e6:>7.0f}M {compile_s:>9.1f} {step * 1000:>8.1f} "
              f"{tps:>10,.0f} {mfu:>6.1%} {peak:>8.1f}   step ratio to k=0: {step / base:.3f}",
              flush=True)
        del run
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
