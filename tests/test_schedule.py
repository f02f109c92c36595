"""The record's schedules (RECORD.md: lr multiplier, Muon momentum). The attention window's
schedule lives in GPTConfig.window_blocks (tests/test_model_record.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ablate.trainer.schedule import lr_multiplier, muon_momentum

N = 5690  # the medium record's steps


def test_lr_is_flat_then_linear_to_zero():
    assert lr_multiplier(0, N) == 1.0
    assert lr_multiplier(1706, N) == 1.0  # x just under 0.3
    for step in (1800, 3000, 4000, 5000):
        x = step / N
        assert lr_multiplier(step, N) == (1 - x) / 0.7
    assert lr_multiplier(N - 1, N) == pytest.approx(1 / (0.7 * N), rel=1e-12)
    assert lr_multiplier(N - 1, N) > 0  # no floor, and not yet zero
    assert lr_multiplier(N, N) == 0.0


def test_lr_cooldown_fraction_is_a_parameter():
    assert lr_multiplier(49, 100, cooldown_frac=0.5) == 1.0
    assert lr_multiplier(75, 100, cooldown_frac=0.5) == (1 - 0.75) / 0.5
    assert lr_multiplier(100, 100, cooldown_frac=0.0) == 1.0  # constant lr
    assert lr_multiplier(0, 100, cooldown_frac=1.0) == 1.0
    assert lr_multiplier(50, 100, cooldown_frac=1.0) == 0.5


def test_lr_refuses_steps_outside_the_run():
    with pytest.raises(ValueError, match="step"):
        lr_multiplier(N + 1, N)
    with pytest.raises(ValueError, match="cooldown_frac"):
        lr_multiplier(0, N, cooldown_frac=1.5)


def test_muon_momentum_warms_up_linearly():
    assert muon_momentum(0) == 0.85
    assert muon_momentum(150) == pytest.approx(0.90, abs=1e-15)
    assert muon_momentum(30) == (1 - 0.1) * 0.85 + 0.1 * 0.95
    assert muon_momentum(300) == 0.95
    assert muon_momentum(5000) == 0.95
    assert muon_momentum(5, start=0.5, end=0.9, warmup_steps=10) == pytest.approx(0.7)
    assert muon_momentum(0, warmup_steps=0) == 0.95


def test_schedule_does_not_import_torch():
    code = "import sys, ablate.trainer.schedule; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
