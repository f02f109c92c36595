"""What a GPU runs, run on CPU where CPU can: the bf16 loop with fp32-exact matrices, a bf16
run resumed bit for bit, the compiled train step as one graph, the compiled Newton-Schulz,
fused Adam, the start-up broadcast, the CUDA-only settings. (What needs CUDA itself:
tests/test_gpu.py, marked `gpu`.)"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from ablate.model import ConfigError
from ablate.trainer.config import RECORD_NS_COEFFICIENTS, TrainConfig, check_cuda_shapes
from ablate.trainer.muon import Muon, _fp32_master, newton_schulz
from ablate.trainer.train import Run, load_checkpoint, use_expandable_segments

from conftest import tiny

EXACT = ("step", "val_loss", "train_loss", "tokens_seen", "lr", "lambdas", "status")


class KeepAt:
    """A reporter that keeps the checkpoint of one step and can crash right after it."""

    def __init__(self, step: int, crash: bool = False):
        self.step, self.crash, self.state = step, crash, None

    def report(self, metrics, checkpoint):
        if checkpoint is not None and metrics["step"] == self.step:
            self.state = load_checkpoint(checkpoint)
            if self.crash:
                raise RuntimeError("worker lost")


def bf16(data_dir, **overrides):
    return tiny(data_dir, precision="bf16", extra_embeddings=1, checkpoint_every=4, **overrides)


def test_the_bf16_loop_stores_tables_and_matrices_in_bf16_and_keeps_their_fp32_masters(data_dir):
    run = Run(bf16(data_dir), None)
    result = run.run(None)
    groups = {g["name"]: g["params"] for g in run.model.param_groups()}
    assert {p.dtype for name in ("attn", "mlp", "tables") for p in groups[name]} == {torch.bfloat16}
    assert {p.dtype for name in ("head", "scalars") for p in groups[name]} == {torch.float32}
    muon = run.optimizers[1]
    for p in groups["attn"] + groups["mlp"]:
        state = muon.state[p]
        assert state["low_bits"].dtype == torch.int16 and state["momentum_buffer"].dtype == torch.float32
        master = _fp32_master(p.detach(), state["low_bits"])
        # the stored bf16 is the master's high half
        assert torch.equal((master.view(torch.int32) >> 16).to(torch.int16), p.detach().view(torch.int16))
    assert any(int(muon.state[p]["low_bits"].ne(-32768).sum()) for p in groups["mlp"])  # extra bits used
    losses = [r["val_loss"] for r in result.rows]
    assert losses[-1] < losses[0] - 1  # it trains


def test_a_bf16_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(tmp_path, data_dir):
    whole = Run(bf16(data_dir, out=str(tmp_path / "a.parquet")), None)
    whole.run(None)
    crash = KeepAt(8, crash=True)
    with pytest.raises(RuntimeError, match="worker lost"):
        Run(bf16(data_dir, out=str(tmp_path / "b.parquet")), crash).run(None)
    lows = [s["low_bits"] for s in crash.state["optimizers"][1]["state"].values()]
    assert lows and all(b.dtype == torch.int16 for b in lows)
    torch.save(crash.state, tmp_path / "state.pt")
    resumed = Run(bf16(data_dir, out=str(tmp_path / "b.parquet")), None)
    resumed.run(tmp_path / "state.pt")
    a, b = (pq.read_table(tmp_path / f"{x}.parquet").to_pylist() for x in "ab")
    assert [{k: r[k] for k in EXACT} for r in a] == [{k: r[k] for k in EXACT} for r in b]
    for name, w in whole.model.state_dict().items():
        assert torch.equal(w, resumed.model.state_dict()[name]), name
    for p, q in zip(whole.optimizers[1].param_groups[0]["params"],
                    resumed.optimizers[1].param_groups[0]["params"]):
        assert torch.equal(whole.optimizers[1].state[p]["low_bits"], resumed.optimizers[1].state[q]["low_bits"])


def test_muon_keeps_int16_extra_bits_and_fp32_momentum_through_a_state_dict():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, 16).bfloat16())
    opt = Muon([p], lr=0.02)
    for _ in range(3):
        p.grad = torch.randn(8, 16).bfloat16()
        opt.step()
    saved = opt.state_dict()
    other = Muon([p], lr=0.02)
    other.load_state_dict(saved)
    for key, dtype in (("low_bits", torch.int16), ("momentum_buffer", torch.float32)):
        assert other.state[p][key].dtype == dtype
        assert torch.equal(other.state[p][key], opt.state[p][key])
    assert other.state[p]["low_bits"].data_ptr() != opt.state[p]["low_bits"].data_ptr()  # a copy


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_compiled_newton_schulz_equals_eager(dtype):
    torch._dynamo.reset()
    compiled = torch.compile(newton_schulz, dynamic=False, fullgraph=True)
    g = torch.Generator().manual_seed(0)
    for shape in ((32, 64), (64, 32)):
        grad = torch.randn(*shape, generator=g)
        eager = newton_schulz(grad, RECORD_NS_COEFFICIENTS, dtype)
        got = compiled(grad, RECORD_NS_COEFFICIENTS, dtype)
        assert got.dtype == dtype
        # Inductor may fuse the scalar multiplies into the matmuls' epilogues: one rounding
        # of bf16 apart at most
        torch.testing.assert_close(got.float(), eager.float(), atol=2e-2 if dtype == torch.bfloat16 else 1e-5,
                                   rtol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_compiled_train_step_is_one_graph_and_trains_as_eager_does(data_dir):
    """The trainer compiles the whole model where the record does; fullgraph here makes any
    graph break an error, forward and backward, at every window size the run meets."""
    import torch._dynamo

    cfg = tiny(data_dir, num_iterations=8, val_every=4, precision="bf16")
    eager = Run(cfg, None)
    compiled = Run(cfg, None)
    torch._dynamo.reset()
    compiled.net = torch.compile(compiled.model, dynamic=False, fullgraph=True)
    for _ in range(cfg.num_iterations):
        x, y = eager.batch()
        compiled.batch()
        eager.train_step(x, y)
        compiled.train_step(x, y)
        eager.step += 1
        compiled.step += 1
    assert abs(eager.train_loss() - compiled.train_loss()) < 0.02
    assert abs(eager.evaluate() - compiled.evaluate()) < 0.02
    eager.close()
    compiled.close()


def test_the_trainer_uses_fused_adam_and_fused_adam_steps_as_the_plain_one(data_dir):
    run = Run(tiny(data_dir), None)
    assert run.optimizers[0].defaults["fused"] is True
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(16, 8).to(dtype)) for _ in range(2)]
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        fused = torch.optim.Adam(params, lr=0.3, betas=(0.8, 0.95), eps=1e-10, fused=True)
        plain = torch.optim.Adam(copies, lr=0.3, betas=(0.8, 0.95), eps=1e-10, foreach=False)
        for _ in range(5):
            grads = [torch.randn(16, 8).to(dtype) for _ in params]
            for p, c, g in zip(params, copies, grads):
                p.grad, c.grad = g.clone(), g.clone()
            fused.step()
            plain.step()
        for p, c in zip(params, copies):
            # bf16: one rounding apart at most
            torch.testing.assert_close(p, c, **(dict(atol=2e-2, rtol=8e-3) if dtype == torch.bfloat16
                                                else dict(atol=1e-6, rtol=0)))


BROADCAST = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from conftest import tiny
    from ablate.trainer.train import Run
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    run = Run(tiny({data!r}, workers=2, seed=rank), None)  # each rank its own init
    torch.save(run.model.state_dict(), {folder!r} + f"/init{{rank}}.pt")
    dist.barrier()
    dist.destroy_process_group()
""")


def test_every_rank_starts_from_rank_0s_weights(tmp_path, data_dir):
    """Ranks seeded apart start apart: only the start-up broadcast makes them rank 0's."""
    script = tmp_path / "broadcast.py"
    script.write_text(BROADCAST.format(tests=str(Path(__file__).parent), data=str(data_dir),
                                       folder=str(tmp_path)))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script)],
                   check=True, capture_output=True, timeout=240, env=env)
    alone = Run(tiny(data_dir, seed=0), None).model.state_dict()
    other = Run(tiny(data_dir, seed=1), None).model.state_dict()
    assert any(not torch.equal(alone[k], other[k]) for k in alone)  # the seeds do differ
    for rank in (0, 1):
        weights = torch.load(tmp_path / f"init{rank}.pt", weights_only=True)
        for name, w in alone.items():
            assert torch.equal(weights[name], w), (rank, name)


def test_expandable_segments_are_set_unless_the_user_chose_a_setting(monkeypatch):
    for name in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    use_expandable_segments()
    assert os.environ["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.delenv("PYTORCH_ALLOC_CONF")
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    use_expandable_segments()
    assert "PYTORCH_ALLOC_CONF" not in os.environ
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:512"


def test_a_head_size_the_cuda_kernels_cannot_take_is_refused_naming_the_field(data_dir):
    for preset in ("tiny", "small", "medium"):
        check_cuda_shapes(TrainConfig.recipe(preset, data=str(data_dir)))
    cfg = tiny(data_dir, head_dim=8, n_head=4)
    with pytest.raises(ConfigError, match=r"^head_dim: 8 cannot run in FlexAttention's CUDA kernels"):
        check_cuda_shapes(cfg)


def test_the_peak_memory_is_reset_after_the_warm_up(data_dir, monkeypatch):
    """On CUDA the curve's peak memory is the run's, not the compile's: the reset comes after
    the warm-up's steps and before the clock starts."""
    calls = []
    run = Run(tiny(data_dir, warmup_steps=2, num_iterations=4), None)
    run.cuda = True  # the CUDA-only branches of the warm-up, on CPU tensors
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    step = run.train_step
    monkeypatch.setattr(run, "train_step", lambda x, y: (calls.append("step"), step(x, y)))
    run.warm_up()
    assert calls[-1] == "reset" and calls.count("step") == 2 and calls.index("reset") > 1


def test_a_gpu_sweep_whose_head_size_the_kernels_cannot_take_is_refused_before_it_starts(tmp_path, capsys):
    from ablate.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nname = "x"\npreset = "tiny"\n[resources]\nworkers = 1\ngpus_per_worker = 1\n'
                    '[fixed]\nhead_dim = 8\nn_head = 4\n')
    assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("s.toml: head_dim: 8 cannot run in FlexAttention's CUDA "
                                             "kernels (a power of two from 16 is needed)"), err
    assert not (tmp_path / "runs").exists()
