"""Step time and tokens/s for k = 0..5 extra input embeddings, on this machine's device.

Prints each k's measured step-time ratio to k = 0 next to two predictions: the FLOP ratio
(if the step were compute-bound) and the parameter-bytes ratio (if it were bound by the
optimizer's pass over every parameter, which each extra V x D table adds to). Figures only;
nothing is asserted.

    python bench/throughput.py [--preset small] [--steps 5] [--rounds 4] [--progress 0.5]

`--progress` places every timed step at that point of training, which sets the attention
window (it grows over training, and so does the step time on GPUs).

    python bench/throughput.py --record-stream [--k 1]

On a GPU: one compiled forward+backward of the medium model on one 65,536-token stream (the
record's work per GPU and micro-step), bf16 as the record stores it, at the windows of early,
middle and late training: ms and peak memory (model, gradients and activations; no
optimizer state).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from timing import timed_steps  # noqa: E402  (bench/, the script's own folder)

from ablate.model import GPT, GPTConfig, flops_per_token, param_count  # noqa: E402
from ablate.trainer.config import TrainConfig  # noqa: E402
from ablate.trainer.data import builtin_documents, prepare  # noqa: E402
from ablate.trainer.train import Run  # noqa: E402


def extra_flops_per_token(cfg) -> float:
    """What k extra tables add per token, forward + backward (x3): an RMS norm of each
    table's row and one multiply-add per layer per table."""
    return 3 * cfg.extra_embeddings * (4 * cfg.d_model + 2 * cfg.n_layer * cfg.d_model)


def measure(runs: dict[int, Run], steps: int, rounds: int) -> dict[int, float]:
    """Interleave the k values round by round and keep each one's best round, so a load
    spike on a shared machine hits every k alike instead of skewing one ratio."""
    best = {k: float("inf") for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            best[k] = min(best[k], timed_steps(run, steps))
    return best


def record_stream(k: int, steps: int = 10) -> None:
    """Forward+backward of `medium` on one record-sized stream, compiled, per window size."""
    if not torch.cuda.is_available():
        sys.exit("throughput: --record-stream needs a CUDA device")
    cfg = GPTConfig.preset("medium", extra_embeddings=k)
    torch.manual_seed(0)
    model = GPT(cfg).cuda().use_bf16()
    compiled = torch.compile(model, dynamic=False)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size - 1, (cfg.seq_len + 1,), generator=g)
    tokens[torch.rand(cfg.seq_len + 1, generator=g) < 1 / 1000] = cfg.eot_token  # ~1k-token documents
    tokens = tokens.cuda()
    x, y = tokens[:-1], tokens[1:]
    print(f"medium k={k}: {model.num_params():,} parameters, one stream of {cfg.seq_len:,} tokens, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'progress':>8} {'window':>7} {'first call s':>12} {'fwd+bwd ms':>10} {'peak MiB':>9}")
    for progress in (0.05, 0.5, 1.0):
        window = torch.tensor(cfg.window_blocks(progress)[0], dtype=torch.int32, device="cuda")
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        compiled(x, y, window=window).backward()
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        for _ in range(2):
            compiled(x, y, window=window).backward()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            compiled(x, y, window=window).backward()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / steps * 1000
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"{progress:>8} {int(window) * cfg.attn_block:>7} {first:>12.1f} {ms:>10.1f} {peak:>9,.0f}")
        model.zero_grad(set_to_none=True)


def configs_window(args) -> str:
    long, short = TrainConfig.from_flat(dict(preset=args.preset)).model.window_blocks(args.progress)
    return f"{long}/{short}"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8, help="streams of seq_len tokens a step")
    p.add_argument("--progress", type=float, default=0.5, help="training progress of the timed steps")
    p.add_argument("--record-stream", action="store_true",
                   help="GPU: compiled forward+backward of medium on one 65,536-token stream")
    p.add_argument("--k", type=int, default=1, help="extra embeddings for --record-stream")
    p.add_argument("--data", help="shard folder (default: the built-in corpus in a temp dir)")
    args = p.parse_args()
    if args.record_stream:
        return record_stream(args.k)
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "builtin"
    if not args.data:
        prepare(builtin_documents(), data)
    console = Console()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    table = Table(title=f"{args.preset} preset on {device}: step time vs extra embeddings "
                        f"(window {configs_window(args)} blocks)")
    for col in ("k", "params (M)", "step (ms)", "tokens/s", "measured ratio", "FLOP ratio",
                "param-bytes ratio"):
        table.add_column(col, justify="right")
    configs = {k: TrainConfig.from_flat(dict(
        preset=args.preset, extra_embeddings=k, batch_size=args.batch_size, num_iterations=10**6,
        data=str(data))) for k in range(6)}
    runs = {k: Run(cfg, None) for k, cfg in configs.items()}
    for run in runs.values():
        run.step = round(args.progress * run.cfg.num_iterations)
    for run in runs.values():
        timed_steps(run, args.warmup)
    step_s = measure(runs, args.steps, args.rounds)
    base = None
    for k, cfg in configs.items():
        step = step_s[k]
        flops = flops_per_token(cfg.model, args.progress) + extra_flops_per_token(cfg.model)
        params = param_count(cfg.model)
        base = base or (step, flops, params)
        table.add_row(str(k), f"{params / 1e6:.2f}", f"{step * 1000:.1f}",
                      f"{cfg.tokens_per_step / step:,.0f}", f"{step / base[0]:.3f}",
                      f"{flops / base[1]:.3f}", f"{params / base[2]:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
