"""The GPU check: does our trainer run the record's per-GPU work at the record's speed?

One GPU runs `medium` (k = 1 by default) at the record's per-GPU work: one 65,536-token stream
a step, through the whole training step (compiled model, our Muon, fused Adam, the schedules),
at the attention windows of early, middle and late training. Each phase's ms per step is
printed next to the record's 8xH100 figures (RECORD.md: 237, 248 and 258.5 ms over steps
100-1000, 2000-3000 and 5000-5690) as a ratio, and the peak memory next to the record's
53,988 MiB and our estimate. Random GPT-2 token ids, with a document end every ~1000 tokens
as in FineWeb, stand in for the data (speed does not depend on which tokens flow, but the
document mask does depend on where documents end).

On one GPU the step differs from one of the record's 8 ranks in two ways, which the table
notes: this GPU orthogonalises all 64 matrices (the record's ranks share them, 8 each), and
no gradients are averaged across GPUs.

    python bench/gpu_check.py [--steps 20] [--ks 1] [--no-tuning]
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
from throughput import timed_steps  # noqa: E402  (bench/, the script's own folder)

from ablate.trainer.config import TrainConfig  # noqa: E402
from ablate.trainer.data import GPT2_EOT, write_shard  # noqa: E402
from ablate.trainer.memory import MIB, estimate_memory  # noqa: E402
from ablate.trainer.train import _Run  # noqa: E402

# (label, first step, last step, the record's ms per step there), k = 1, 5690 steps
PHASES = (("early", 100, 1000, 237.0), ("middle", 2000, 3000, 248.0), ("late", 5000, 5690, 258.5))
RECORD_PEAK_MIB = 53_988
STREAM = 65_536


def random_shards(folder: Path, tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", tokens), ("val", 2 * STREAM)):
        ids = rng.integers(0, GPT2_EOT, n)
        ids[rng.random(n) < 1 / 1000] = GPT2_EOT  # documents of ~1000 tokens
        write_shard(folder / f"random_{split}_000000.bin", ids)
    return folder


def check(k: int, data: Path, args) -> None:
    cfg = TrainConfig.recipe(
        "medium", extra_embeddings=k, data=str(data), tokens_per_step=STREAM, micro_tokens=STREAM,
        val_tokens=STREAM, val_seq_len=STREAM, device="cuda", compile=True,
        compile_tuning=not args.no_tuning, warmup_steps=args.warmup)
    torch.cuda.reset_peak_memory_stats()
    run = _Run(cfg, None)
    t0 = time.perf_counter()
    run.warm_up()  # compiles the training and evaluation graphs and Muon's, then restores
    print(f"k={k}: {run.model.num_params():,} parameters; compile warm-up {time.perf_counter() - t0:.0f} s",
          flush=True)
    print(f"{'phase':>7} {'steps':>10} {'window':>7} {'ms/step':>8} {'record':>7} {'ratio':>6}", flush=True)
    ratios = []
    for label, first, last, record_ms in PHASES:
        run.step = (first + last) // 2  # sets the window and the lr multiplier
        window = int(run.window()) * cfg.model.attn_block
        timed_steps(run, args.untimed)  # the new window size: nothing to compile, but let it settle
        ms = 1000 * timed_steps(run, args.steps)
        ratios.append(ms / record_ms)
        print(f"{label:>7} {first:>4}-{last:<5} {window:>7} {ms:>8.1f} {record_ms:>7.1f} "
              f"{ms / record_ms:>5.3f}x", flush=True)
    peak = torch.cuda.max_memory_allocated() / MIB
    est = estimate_memory(cfg, 1).total / MIB
    print(f"peak memory {peak:,.0f} MiB (record {RECORD_PEAK_MIB:,} MiB: {peak / RECORD_PEAK_MIB:.3f}x; "
          f"our estimate for one GPU {est:,.0f} MiB)", flush=True)
    print(f"mean ratio to the record's ms/step: {sum(ratios) / len(ratios):.3f}x "
          "(one GPU: all 64 matrices orthogonalised here, no gradient all-reduce)", flush=True)
    run.close()
    del run
    torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per phase")
    p.add_argument("--untimed", type=int, default=3, help="steps run before each phase's timing")
    p.add_argument("--warmup", type=int, default=10, help="compile warm-up steps (the record's 10)")
    p.add_argument("--ks", default="1", help="extra embeddings to check, e.g. 0,1")
    p.add_argument("--no-tuning", action="store_true",
                   help="skip inductor's coordinate-descent tuning (faster compile, slower steps)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    data = random_shards(Path(tempfile.mkdtemp(prefix="gpu-check-")), 8_000_000)
    for k in map(int, args.ks.split(",")):
        check(k, data, args)


if __name__ == "__main__":
    main()
