"""Curves and weights are created with the user's umask (teammates read shared sweeps), not
with the private 0600 of a temp file."""

import os
import stat

import pytest

from ablate.results.curves import write_curve


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_curves_and_weights_follow_the_umask(tmp_path, umask, mode):
    import torch

    from ablate.trainer.weights import save_weights

    old = os.umask(umask)
    try:
        curve = write_curve(tmp_path / "curves" / "t.parquet",
                            [dict(sweep="s", trial_id="t", step=0, val_loss=3.0, status="running")])
        weights = save_weights(tmp_path / "weights" / "t.safetensors", {"w": torch.zeros(2)}, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(curve).st_mode) == mode
    assert stat.S_IMODE(os.stat(weights).st_mode) == mode
