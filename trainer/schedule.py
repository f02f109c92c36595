"""The record's per-step schedules as pure functions of the step (RECORD.md).

Learning-rate multiplier and Muon momentum warm-up. No torch here, so configs and estimates can
import them cheaply. (The attention window's schedule belongs to the model:
GPTConfig.window_blocks.)
"""

from __future__ import annotations

__all__ = ["lr_multiplier", "muon_momentum"]


def _progress(step: int, num_iterations: int) -> float:
    if num_iterations <= 0:
        raise ValueError(f"num_iterations: must be positive, got {num_iterations}")
    if not 0 <= step <= num_iterations:
        raise ValueError(f"step: must be in [0, {num_iterations}], got {step}")
    return step / num_iterations


def lr_multiplier(step: int, num_iterations: int, cooldown_frac: float = 0.7) -> float:
    """1 until the last `cooldown_frac` of training, then linear to 0 at step == num_iterations.

    There is no floor: the last step taken (num_iterations - 1) still trains, at
    1 / (cooldown_frac * num_iterations). cooldown_frac = 0 means a constant lr.
    """
    if not 0 <= cooldown_frac <= 1:
        raise ValueError(f"cooldown_frac: must be in [0, 1], got {cooldown_frac}")
    x = _progress(step, num_iterations)
    if x < 1 - cooldown_frac or cooldown_frac == 0:
        return 1.0
    return (1 - x) / cooldown_frac


def muon_momentum(step: int, start: float = 0.85, end: float = 0.95, warmup_steps: int = 300) -> float:
    """Muon's momentum, rising linearly from `start` to `end` over the first `warmup_steps`."""
    if step < 0 or warmup_steps < 0:
        raise ValueError(f"step and warmup_steps: must be >= 0, got {step}, {warmup_steps}")
    frac = min(step / warmup_steps, 1.0) if warmup_steps else 1.0
    return (1 - frac) * start + frac * end
