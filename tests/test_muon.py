"""Our Muon against RECORD.md's formulas, across ranks, and with bf16 storage (CPU, gloo)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate.trainer.muon import Muon, newton_schulz

# RECORD.md's Newton-Schulz triples, written out here so that the test pins the numbers.
TRIPLES = [(4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
           (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012)]
LRS = [0.025, 0.02, 0.01]  # as a schedule would set them, one per step
MOMENTA = [0.85, 0.9, 0.95]


@pytest.fixture(autouse=True)
def one_thread():
    """Results are compared bit for bit with other processes that run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def record_update(weight, grads, wd, wd_mul, ns_dtype):
    """RECORD.md's Muon, step by step, on one fp32 matrix."""
    rows, cols = weight.shape
    w = weight.clone()
    buf = torch.zeros_like(w)
    for g, lr, m in zip(grads, LRS, MOMENTA):
        g = g.float()
        buf = m * buf + (1 - m) * g
        x = (m * buf + (1 - m) * g).to(ns_dtype)
        x = x / (x.norm() + 1e-7)
        if rows > cols:
            x = x.T
        for a, b, c in TRIPLES:
            gram = x @ x.T
            x = a * x + (b * gram + (c * gram) @ gram) @ x  # the record brackets (c*A) @ A
        if rows > cols:
            x = x.T
        w = w * (1 - lr * wd * wd_mul)
        w = w - lr * max(1, rows / cols) ** 0.5 * x.float()
    return w


def run_muon(params, grads_per_step, groups, **kwargs):
    """Steps Muon over `params` (in place) with the given gradients and the test schedule."""
    opt = Muon(groups(params), **kwargs)
    for grads, lr, m in zip(grads_per_step, LRS, MOMENTA):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr, m
        opt.step()
    return opt


@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (32, 32)], ids=["tall", "wide", "square"])
@pytest.mark.parametrize("wd_mul", [1.0, 2.0])
def test_update_equals_record_formulas(shape, ns_dtype, wd_mul):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(shape, generator=gen) * 0.05
    grads = [torch.randn(shape, generator=gen) for _ in LRS]
    p = torch.nn.Parameter(weight.clone())
    run_muon([p], [[g] for g in grads], lambda ps: [{"params": ps, "wd_mul": wd_mul}],
             weight_decay=0.01, ns_dtype=ns_dtype)
    expected = record_update(weight, grads, wd=0.01, wd_mul=wd_mul, ns_dtype=ns_dtype)
    assert torch.equal(p.detach(), expected)
    assert not torch.equal(p.detach(), weight)


def test_weight_decay_multiplier_per_matrix():
    """With a zero gradient the update is zero and only the decay acts: p *= 1 - lr*wd*mul."""
    weight = torch.randn(8, 8)
    plain, doubled = (torch.nn.Parameter(weight.clone()) for _ in range(2))
    opt = Muon([{"params": [plain]}, {"params": [doubled], "wd_mul": 2.0}], lr=0.1, weight_decay=0.5)
    for p in (plain, doubled):
        p.grad = torch.zeros(8, 8)
    opt.step()
    assert torch.equal(plain.detach(), weight * (1 - 0.1 * 0.5))
    assert torch.equal(doubled.detach(), weight * (1 - 0.1 * 0.5 * 2))


def test_newton_schulz_is_nearly_orthogonal():
    grad = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    singular = torch.linalg.svdvals(newton_schulz(grad, TRIPLES, torch.float32))
    assert singular.min() > 0.5 and singular.max() < 1.5


def test_settings_are_constructor_arguments():
    p = torch.nn.Parameter(torch.zeros(4, 4))
    classic = Muon([p], ns_coefficients=[(3.4445, -4.7750, 2.0315)], ns_steps=5, ns_dtype="float32")
    assert classic.ns_coefficients == [(3.4445, -4.7750, 2.0315)] * 5
    assert classic.ns_dtype == torch.float32
    assert Muon([p], ns_steps=3).ns_coefficients == TRIPLES[:3]
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))])
    with pytest.raises(ValueError, match="ns_dtype"):
        Muon([p], ns_dtype="int8")


def truncated(w: torch.Tensor) -> torch.Tensor:
    """The fp32 value with its low 16 bits cleared: exactly a bf16 value."""
    return (w.view(torch.int32) & -65536).view(torch.float32).bfloat16()


def test_bf16_storage_follows_the_fp32_trajectory():
    """The extra bits make a bf16 matrix move exactly as its fp32 master would; the stored
    bf16 is that master truncated."""
    gen = torch.Generator().manual_seed(2)
    stored = torch.nn.Parameter((torch.randn(24, 40, generator=gen) * 0.05).bfloat16())
    master = torch.nn.Parameter(stored.detach().float())  # the extra bits start at zero
    # A small lr: the updates are below bf16's resolution, so only the extra bits keep them.
    steps = 6
    bf16_opt = Muon([stored], lr=1e-4, ns_dtype=torch.float32)
    fp32_opt = Muon([master], lr=1e-4, ns_dtype=torch.float32)
    for _ in range(steps):
        grad = torch.randn(24, 40, generator=gen).bfloat16()
        stored.grad, master.grad = grad, grad.float()
        bf16_opt.step()
        fp32_opt.step()
        assert torch.equal(stored.detach(), truncated(master.detach()))
    low_bits = master.detach().view(torch.int32) & 0xFFFF
    assert torch.equal(bf16_opt.state[stored]["low_bits"].to(torch.int32) + 32768, low_bits)
    initial = (torch.randn(24, 40, generator=torch.Generator().manual_seed(2)) * 0.05).bfloat16()
    assert not torch.equal(stored.detach(), initial)


SHAPES = [(32, 32), (64, 16), (24, 8), (16, 64), (32, 32), (32, 32), (8, 8)]
BF16 = {4}  # one bf16 matrix: its own bucket, gathered in bf16


def make_problem():
    """Same parameters and gradients in every process: odd counts per bucket, mixed dtypes."""
    gen = torch.Generator().manual_seed(3)
    params = []
    for i, shape in enumerate(SHAPES):
        w = torch.randn(shape, generator=gen) * 0.05
        params.append(torch.nn.Parameter(w.bfloat16() if i in BF16 else w))
    grads = [[torch.randn(p.shape, generator=gen).to(p.dtype) for p in params] for _ in LRS]
    return params, grads


def groups(params):
    return [{"params": params[:3]}, {"params": params[3:], "wd_mul": 2.0}]


def sharded_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        params, grads = make_problem()
        opt = run_muon(params, grads, groups, weight_decay=0.01)
        owned = [i for i, p in enumerate(params) if p in opt.state]
        torch.save({"params": [p.detach() for p in params], "owned": owned}, f"{out}/rank{rank}.pt")
        dist.barrier()  # gloo can abort at teardown without it
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sharded_muon_on_two_ranks_equals_one_process(tmp_path):
    """Each matrix is updated by one rank with the same ops as in one process, then copied
    to the others, so the weights agree bit for bit."""
    mp.spawn(sharded_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    params, grads = make_problem()
    run_muon(params, grads, groups, weight_decay=0.01)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for result in results:
        for got, expected in zip(result["params"], params):
            assert got.dtype == expected.dtype
            assert torch.equal(got, expected.detach())
    owned = [set(result["owned"]) for result in results]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(len(SHAPES)))
    assert owned[0] and owned[1]
