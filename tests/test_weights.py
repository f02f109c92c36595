"""Final weights in safetensors: where they go, round trip, and refusals that name the file."""

from __future__ import annotations

import pytest
import torch

from ablate.model import GPT, GPTConfig
from ablate.trainer.weights import (
    WeightsError,
    curve_of,
    keeps_weights,
    load_weights,
    save_weights,
    weights_location,
    weights_path,
)

CONFIG = {"preset": "tiny", "trial_id": "t0", "seed": 0, "out": "x", "extra_embeddings": 1}


def test_weights_live_beside_the_curve():
    assert weights_location("/s/demo/curves/t1.parquet") == "/s/demo/weights/t1.safetensors"
    assert weights_location("s3://b/demo/curves/t1.parquet") == "s3://b/demo/weights/t1.safetensors"
    assert weights_location("runs/train/curve.parquet") == "runs/train/curve.safetensors"
    curve = "/s/demo/curves/t1.parquet"
    assert str(curve_of(weights_path(curve))) == curve


def test_kept_by_default_except_the_record_model():
    assert keeps_weights({"preset": "tiny"}) and keeps_weights({"preset": "small"})
    assert not keeps_weights({"preset": "medium"})
    assert keeps_weights({"preset": "medium", "save_weights": True})
    assert not keeps_weights({"preset": "tiny", "save_weights": False})


def test_round_trip_keeps_every_tensor_and_dtype(tmp_path):
    model = GPT(GPTConfig.preset("tiny", extra_embeddings=1)).use_bf16()
    path = save_weights(tmp_path / "weights" / "t0.safetensors", model.state_dict(), CONFIG)
    state, config = load_weights(path, expected=CONFIG | {"out": "moved"})  # placement differs
    assert config == CONFIG
    for name, tensor in model.state_dict().items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor)
    assert [p.name for p in path.parent.iterdir()] == ["t0.safetensors"]  # no temp file left


def test_refusals_name_the_file(tmp_path):
    model = GPT(GPTConfig.preset("tiny"))
    good = save_weights(tmp_path / "good.safetensors", model.state_dict(), CONFIG)
    with pytest.raises(WeightsError, match="missing.safetensors: no weights file"):
        load_weights(tmp_path / "missing.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="cut.safetensors: truncated"):
        load_weights(cut)
    stub = tmp_path / "stub.safetensors"
    stub.write_bytes(good.read_bytes()[:5])
    with pytest.raises(WeightsError, match="stub.safetensors: truncated"):
        load_weights(stub)
    with pytest.raises(WeightsError, match=r"good.safetensors: weights of another config \(seed"):
        load_weights(good, expected=CONFIG | {"seed": 1})
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(WeightsError, match="foreign.safetensors: not an ablate weights file"):
        load_weights(tmp_path / "foreign.safetensors")


def test_a_completed_run_keeps_its_final_weights_unless_told_not_to(tmp_path, data_dir):
    from ablate.results.curves import read_curve, trial_meta
    from ablate.trainer.config import TrainConfig
    from ablate.trainer.train import train

    def run(name, **extra):
        out = tmp_path / "sw" / "curves" / f"{name}.parquet"
        train(TrainConfig.from_flat(dict(preset="tiny", data=str(data_dir), num_iterations=4,
                                         val_every=4, extra_embeddings=1, trial_id=name,
                                         out=str(out), **extra)))
        return out

    curve = run("kept")
    state, _ = load_weights(weights_path(curve), expected=trial_meta(curve)["config"])
    last = read_curve(curve).to_pylist()[-1]
    assert torch.allclose(state["lambdas"], torch.tensor(last["lambdas"]))  # the final model
    assert not weights_path(run("dropped", save_weights=False)).exists()


@pytest.mark.parametrize("header", [
    b"[1, 2]",  # JSON, but not a table
    b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested past any parser's stack
    b'{"x": {"dtype": "F32", "shape": [1000000000000, 1000000000000], "data_offsets": [0, 4]}}',
    b'{"a":',  # cut short
])
def test_hostile_headers_are_refused_naming_the_file(tmp_path, header):
    import struct
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"1234")
    with pytest.raises(WeightsError, match="hostile.safetensors: truncated or not a safetensors file"):
        load_weights(path)


def test_a_header_length_beyond_the_file_is_refused(tmp_path):
    import struct
    path = tmp_path / "long.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(WeightsError, match="long.safetensors: truncated or not a safetensors file"):
        load_weights(path)
