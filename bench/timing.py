"""Seconds per training step, measured the same way by every benchmark (torch only, so that
bench/gpu_check.py runs on a machine with nothing else installed)."""

from __future__ import annotations

import time

import torch


def timed_steps(run, steps: int) -> float:
    """Seconds per training step of a trainer run (ablate.trainer.train) over `steps`
    consecutive steps, the device synchronised at both ends."""
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        run.train_step(*run.batch())
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps
