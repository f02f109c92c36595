"""What only a GPU can show: FlexAttention's compiled CUDA kernels at every preset's sizes,
the compiled model training on CUDA, a bf16 run resumed bit for bit on CUDA, an NCCL group.

Marked `gpu`, skipped where no CUDA device is visible; `bash bench/gpu_check.sh` runs them
on a GPU machine from a bare checkout (torch and numpy are all they need). The speed and
peak-memory figures against the record come from bench/gpu_check.py, in the same script.
"""

import os
import tempfile

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

from ablate.model import GPT, GPTConfig
from ablate.model.gpt import attend, block_masks, dense_masks
from ablate.trainer.config import TrainConfig
from ablate.trainer.train import Run, load_checkpoint

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def streams(cfg: GPTConfig, B: int, T: int, seed: int = 0) -> torch.Tensor:
    """Token streams with a document end every ~T/5 tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.eot_token, (B, T), generator=g)
    tokens[torch.rand(B, T, generator=g) < 5 / T] = cfg.eot_token
    return tokens.to(CUDA)


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
def test_compiled_flex_attention_runs_forward_and_backward_at_each_presets_sizes(preset):
    """The mask the model builds on CUDA, through the compiled kernels, against SDPA with the
    dense mask: outputs and gradients, bf16, at the training and validation stream lengths
    (medium on a 4,096-token stream: its dense reference would not fit at 65,536)."""
    cfg = GPTConfig.preset(preset)
    recipe = TrainConfig.recipe(preset)
    lengths = (4096,) if preset == "medium" else (cfg.seq_len, recipe.val_seq_len)
    H, D = cfg.n_head, cfg.head_dim
    flex = torch.compile(flex_attention, dynamic=False)
    for T in lengths:
        tokens = streams(cfg, 2, T)
        for window in sorted({1, cfg.window_blocks(0.5)[0], cfg.window_blocks(1.0)[0]}):
            w = torch.tensor(window, dtype=torch.int32, device=CUDA)
            for bm, dense in zip(block_masks(tokens, cfg, w), dense_masks(tokens, cfg, window)):
                q, k, v = (torch.randn(2, H, T, D, device=CUDA, dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                got = flex(q, k, v, block_mask=bm, scale=cfg.attn_scale)
                grads = torch.autograd.grad(got.float().square().sum(), (q, k, v))
                expected = attend(q, k, v, dense, cfg.attn_scale)
                expected_grads = torch.autograd.grad(expected.float().square().sum(), (q, k, v))
                torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
                for a, b in zip(grads, expected_grads):
                    torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_the_compiled_model_trains_on_cuda_as_one_graph(preset, data_dir):
    """The demo presets on the GPU path: bf16, the whole model compiled with no graph break,
    our compiled Newton-Schulz, fused Adam; the loss falls."""
    import torch._dynamo

    cfg = TrainConfig.recipe(preset, data=str(data_dir), device="cuda", num_iterations=30,
                             val_every=10, val_tokens=4096, warmup_steps=2)
    torch._dynamo.reset()
    run = Run(cfg, None)
    run.net = torch.compile(run.model, dynamic=False, fullgraph=True)
    result = run.run(None)
    losses = [r["val_loss"] for r in result.rows]
    assert result.status == "completed" and losses[-1] < losses[0] - 0.5, losses
    assert next(run.model.blocks[0].mlp.parameters()).dtype == torch.bfloat16


class KeepAt:
    def __init__(self, step: int):
        self.step, self.state = step, None

    def report(self, metrics, checkpoint):
        if checkpoint is not None and metrics["step"] == self.step:
            self.state = load_checkpoint(checkpoint)
            raise RuntimeError("worker lost")


def test_a_bf16_run_on_cuda_resumed_from_its_checkpoint_equals_the_uninterrupted_run(data_dir):
    def cfg():
        return TrainConfig.recipe("tiny", data=str(data_dir), device="cuda", compile=False,
                                  num_iterations=12, val_every=4, checkpoint_every=4, val_tokens=1024,
                                  extra_embeddings=1)

    whole = Run(cfg(), None)
    whole.run(None)
    keep = KeepAt(8)
    with pytest.raises(RuntimeError, match="worker lost"):
        Run(cfg(), keep).run(None)
    folder = tempfile.mkdtemp()
    torch.save(keep.state, os.path.join(folder, "state.pt"))
    resumed = Run(cfg(), None)
    resumed.run(folder)
    assert [r["val_loss"] for r in whole.rows] == [r["val_loss"] for r in resumed.rows]
    for name, w in whole.model.state_dict().items():
        assert torch.equal(w, resumed.model.state_dict()[name]), name


def test_an_nccl_group_on_one_gpu_averages_broadcasts_and_gathers():
    import torch.distributed as dist

    store = dist.FileStore(tempfile.mktemp(prefix="nccl-store-"), 1)
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        x = torch.arange(8, device=CUDA, dtype=torch.bfloat16)
        dist.all_reduce(x, op=dist.ReduceOp.AVG)
        dist.broadcast(x, 0)
        out = [torch.empty_like(x)]
        dist.all_gather(out, x, async_op=True).wait()
        dist.barrier(device_ids=[0])
        assert torch.equal(out[0], torch.arange(8, device=CUDA, dtype=torch.bfloat16))
    finally:
        dist.destroy_process_group()


def test_the_model_holds_its_rotary_tables_on_the_gpu_for_the_validation_length():
    cfg = GPTConfig.preset("small")
    model = GPT(cfg, max_seq_len=512).to(CUDA)
    assert model.rope_cos.device.type == "cuda" and model.rope_cos.shape[0] == 512
    cos, _ = model.rotary(256)
    assert cos.data_ptr() == model.rope_cos.data_ptr()  # a view, not made again
