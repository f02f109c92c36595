"""The GPU check: does the CUDA path run, and does our trainer run the record's per-GPU work
at the record's speed? One script, from a bare checkout, with no install and no network.

1. The `gpu` tests (tests/test_gpu.py: compiled FlexAttention at every preset's sizes, the
   compiled model training, a bf16 resume, NCCL), through pytest where pytest is installed.
2. The speed check: `medium` at k = 0 and k = 1 at the record's per-GPU work, one
   65,536-token stream a step through the whole training step (compiled model, our Muon,
   fused Adam, the schedules), at the attention windows of early, middle and late training.
   Each phase's ms per step is printed next to the record's 8xH100 figures (RECORD.md: 237,
   248 and 258.5 ms over steps 100-1000, 2000-3000 and 5000-5690), and the peak memory
   after the warm-up next to the record's 53,988 MiB and our estimate. Random GPT-2 token
   ids, with a document end every ~1000 tokens as in FineWeb, stand in for the data.
3. One JSON line of every figure, last.

On one GPU the step differs from one of the record's 8 ranks: this GPU orthogonalises all
64 matrices (the record's ranks share them, 8 each), and no gradients are averaged.

Only torch and numpy are needed: the checkout is made importable as `ablate` through a
folder of links, and whatever else is missing (pytest) is skipped and said. `--cpu-smoke`
runs the same steps on the CPU at `tiny` size, with no record to compare against.

    bash bench/gpu_check.sh [--cpu-smoke] [--steps 20] [--ks 0,1] [--tuning]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def layers() -> list[str]:
    """The folders `ablate.*` maps, as pyproject.toml's package-dir declares them."""
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return [folder for name, folder in mapping.items() if name.count(".") == 1]


def importable_checkout() -> str | None:
    """Make `import ablate.trainer` work from the checkout when the project is not installed:
    a temporary folder whose `ablate/` links to the top-level folders. Returns that folder
    (to put on a subprocess's PYTHONPATH) or None when `ablate` already imports."""
    if importlib.util.find_spec("ablate") is not None:
        return None
    shim = Path(tempfile.mkdtemp(prefix="ablate-checkout-"))
    (shim / "ablate").mkdir()
    for name in layers():
        (shim / "ablate" / name).symlink_to(ROOT / name, target_is_directory=True)
    sys.path.insert(0, str(shim))
    return str(shim)


SHIM = importable_checkout()
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import timed_steps  # noqa: E402

from ablate.trainer.config import TrainConfig  # noqa: E402
from ablate.trainer.data import GPT2_EOT, write_shard  # noqa: E402
from ablate.trainer.memory import MIB, estimate_memory  # noqa: E402
from ablate.trainer.train import Run  # noqa: E402

# (label, first step, last step, the record's ms per step there), k = 1, 5690 steps
PHASES = (("early", 100, 1000, 237.0), ("middle", 2000, 3000, 248.0), ("late", 5000, 5690, 258.5))
RECORD_PEAK_MIB = 53_988
STREAM = 65_536


def say(text: str) -> None:
    print(text, flush=True)


def run_gpu_tests(timeout: float) -> dict:
    """tests/test_gpu.py through pytest, in a subprocess that imports the checkout too."""
    if importlib.util.find_spec("pytest") is None:
        say("gpu tests: skipped (pytest is not installed)")
        return dict(skipped_because="no pytest")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (SHIM, os.environ.get("PYTHONPATH")))))
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-o", "addopts=",
           str(ROOT / "tests" / "test_gpu.py")]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"gpu tests: stopped after {timeout:.0f} s")
        return dict(timed_out=True)
    out = done.stdout + done.stderr
    say(out.rstrip()[-4000:])
    last = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return dict(counts, exit=done.returncode)


def random_shards(folder: Path, tokens: int, vocab: int, eot: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", tokens), ("val", 2 * STREAM)):
        ids = rng.integers(0, eot, n)
        ids[rng.random(n) < 1 / 1000] = eot  # documents of ~1000 tokens
        write_shard(folder / f"random_{split}_000000.bin", ids)
    return folder


def speed(k: int, args, data: Path) -> dict:
    """ms per step in each phase, and the peak memory after the warm-up, of one k."""
    if args.cpu_smoke:
        cfg = TrainConfig.recipe("tiny", extra_embeddings=k, data=str(data), device="cpu")
    else:
        cfg = TrainConfig.recipe(
            "medium", extra_embeddings=k, data=str(data), tokens_per_step=STREAM, micro_tokens=STREAM,
            val_tokens=STREAM, val_seq_len=STREAM, device="cuda", compile=True,
            compile_tuning=args.tuning, warmup_steps=args.warmup)
    run = Run(cfg, None)
    t0 = time.perf_counter()
    run.warm_up()  # compiles the training and evaluation graphs and Muon's, then restores
    out: dict[str, Any] = dict(k=k, params=run.model.num_params(),
                               warmup_s=round(time.perf_counter() - t0, 1), phases={})
    say(f"k={k}: {out['params']:,} parameters; warm-up {out['warmup_s']:.0f} s")
    say(f"{'phase':>7} {'steps':>10} {'window':>7} {'ms/step':>8} {'record':>7} {'ratio':>6}")
    for label, first, last, record_ms in PHASES:
        run.step = (first + last) * cfg.num_iterations // (2 * 5690)  # the window and lr there
        window = int(run.window()) * cfg.model.attn_block
        timed_steps(run, args.untimed)  # a new window size: nothing to compile, but let it settle
        ms = 1000 * timed_steps(run, args.steps)
        ratio = None if args.cpu_smoke else round(ms / record_ms, 3)
        out["phases"][label] = dict(window=window, ms=round(ms, 2), record_ms=record_ms, ratio=ratio)
        say(f"{label:>7} {first:>4}-{last:<5} {window:>7} {ms:>8.1f} {record_ms:>7.1f} "
            f"{'' if ratio is None else f'{ratio:>5.3f}x'}")
    if run.cuda:
        peak = torch.cuda.max_memory_allocated() / MIB
        est = estimate_memory(cfg, 1).total / MIB
        out.update(peak_mib=round(peak), estimate_mib=round(est),
                   peak_vs_record=round(peak / RECORD_PEAK_MIB, 3), peak_vs_estimate=round(peak / est, 3))
        say(f"peak memory after warm-up {peak:,.0f} MiB (record {RECORD_PEAK_MIB:,} MiB: "
            f"{peak / RECORD_PEAK_MIB:.3f}x; our estimate for one GPU {est:,.0f} MiB: {peak / est:.3f}x)")
    run.close()
    del run
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--cpu-smoke", action="store_true", help="the same steps on the CPU at tiny size")
    p.add_argument("--steps", type=int, default=None, help="timed steps per phase (20; 3 with --cpu-smoke)")
    p.add_argument("--untimed", type=int, default=3, help="steps run before each phase's timing")
    p.add_argument("--warmup", type=int, default=10, help="compile warm-up steps (the record's 10)")
    p.add_argument("--ks", default="1,0", help="extra embeddings to check, in order")
    p.add_argument("--tuning", action="store_true",
                   help="inductor's coordinate-descent tuning, as the record (minutes more compiling)")
    p.add_argument("--tests-timeout", type=float, default=240, help="seconds for the gpu tests")
    p.add_argument("--no-tests", action="store_true", help="the speed check only")
    args = p.parse_args()
    args.steps = args.steps or (3 if args.cpu_smoke else 20)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (--cpu-smoke runs the CPU part)", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu_smoke else torch.cuda.get_device_name()
    say(f"device: {device}; torch {torch.__version__}; python {sys.version.split()[0]}; "
        f"ablate from {'the checkout (not installed)' if SHIM else 'the installed package'}")
    figures: dict[str, Any] = dict(mode="cpu-smoke" if args.cpu_smoke else "gpu", device=device,
                                   torch=torch.__version__, installed=SHIM is None, tuning=args.tuning)
    figures["tests"] = (dict(skipped_because="--no-tests") if args.no_tests
                        else run_gpu_tests(args.tests_timeout))
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    vocab, eot = (257, 256) if args.cpu_smoke else (50257, GPT2_EOT)
    data = random_shards(folder, 200_000 if args.cpu_smoke else 8_000_000, vocab, eot)
    figures["speed"] = [speed(int(k), args, data) for k in args.ks.split(",")]
    tests_ok = figures["tests"].get("exit", 0) == 0 and not figures["tests"].get("timed_out")
    figures["ok"] = tests_ok
    print(json.dumps(figures, separators=(",", ":")), flush=True)
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
