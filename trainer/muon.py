"""Muon for the blocks' 2-D matrices, as the medium record runs it (RECORD.md, Optimizers).

Per matrix: fp32 momentum, a Nesterov-style blend, Newton-Schulz orthogonalisation with one
(a, b, c) triple per iteration, decoupled weight decay scaled by a per-matrix multiplier, and
an update scaled by sqrt(max(1, rows/cols)).

Parameter groups: each group may set `lr`, `weight_decay`, `momentum` and `wd_mul` (the
weight-decay multiplier, default 1), e.g.

    Muon([{"params": attn_matrices}, {"params": mlp_matrices, "wd_mul": 2.0}], lr=0.025)

The trainer owns the schedules (ablate.trainer.schedule): before each step it writes the
scheduled `lr` (base lr times the lr multiplier; the decay anneals with it) and `momentum`
into every group.

Under torch.distributed the orthogonalisation work is shared: every rank must hold the same
parameters in the same order and the same (already averaged) gradients. Matrices are sorted
by size, largest first, and dealt out one per rank in chunks within each (numel, dtype)
bucket (a bucket's last chunk padded); each rank updates its matrix of a chunk, then the
ranks all-gather the chunk, asynchronously, waited for at the end of the step. Optimizer
state (momentum, extra bits) therefore lives only on the rank that owns a matrix: a
checkpoint needs every rank's `state_dict()`.

bf16 parameters stay fp32-exact: the 16 low mantissa bits that bf16 drops are kept in
optimizer state, so the update acts on the fp32 value and the stored bf16 is that value
truncated. The extra bits start at zero: a bf16 parameter's first value is its fp32 value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

import torch
import torch.distributed as dist
from torch import Tensor

from ablate.trainer.config import RECORD_NS_COEFFICIENTS

__all__ = ["Muon", "RECORD_NS_COEFFICIENTS", "newton_schulz"]

def newton_schulz(grad: Tensor, coefficients: Sequence[tuple[float, float, float]],
                  dtype: torch.dtype = torch.bfloat16, eps: float = 1e-7) -> Tensor:
    """An approximately orthogonal matrix with `grad`'s singular vectors, in `dtype`.

    Works on the wide orientation so that X X^T is the smaller Gram matrix. Each iteration
    brackets as the record does, B = b*A + (c*A) @ A: the same in exact arithmetic as
    c*(A @ A), not in bf16.
    """
    x = grad.to(dtype)
    x = x / (x.norm() + eps)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.mT
    for a, b, c in coefficients:
        gram = x @ x.mT
        poly = b * gram + (c * gram) @ gram
        x = a * x + poly @ x
    return x.mT if tall else x


# The low 16 bits (0..65535) are kept in int16, shifted down by 2^15: plain int16/int32 ops
# that every backend supports (uint16 has only partial operator support).
_LOW_OFFSET = 32768


def _fp32_master(param: Tensor, low_bits: Tensor) -> Tensor:
    """The fp32 value whose high half is the stored bf16 and whose low half is `low_bits`."""
    high = param.view(torch.int16).to(torch.int32)
    low = low_bits.to(torch.int32) + _LOW_OFFSET
    return (high * 65536 + low).view(torch.float32)


def _store_fp32(param: Tensor, low_bits: Tensor, master: Tensor) -> None:
    """Write `master` truncated to bf16 into `param`, and its low 16 bits into `low_bits`."""
    bits = master.view(torch.int32)
    param.view(torch.int16).copy_(bits >> 16)
    low_bits.copy_((bits & 0xFFFF) - _LOW_OFFSET)


class Muon(torch.optim.Optimizer):
    """Muon with per-iteration Newton-Schulz coefficients and shared work across ranks.

    Args:
        params: 2-D tensors, or parameter groups (dicts) that may set `lr`, `weight_decay`,
            `momentum` and `wd_mul`.
        lr: learning rate; the schedule scales it, and the weight decay with it.
        weight_decay: decoupled decay, applied as `p *= 1 - lr * weight_decay * wd_mul`.
        momentum: the momentum coefficient m (the trainer warms it up per step).
        ns_coefficients: one (a, b, c) triple per Newton-Schulz iteration.
        ns_steps: iterations to run; None runs one per triple; more than the triples given
            repeats the last one (so a single classic triple with ns_steps=5 also works).
        ns_dtype: the dtype Newton-Schulz runs in (a torch.dtype or its name).
        eps: added to the Frobenius norm before Newton-Schulz normalises by it.
        process_group: the ranks sharing the work; None uses the default group when
            torch.distributed is initialised, else this process updates everything.
        compiled: run Newton-Schulz through torch.compile (one graph per matrix shape), as
            the record compiles its update on GPUs.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.025,
                 weight_decay: float = 0.01, momentum: float = 0.95,
                 ns_coefficients: Sequence[Sequence[float]] = RECORD_NS_COEFFICIENTS,
                 ns_steps: int | None = None, ns_dtype: torch.dtype | str = torch.bfloat16,
                 eps: float = 1e-7, process_group: dist.ProcessGroup | None = None,
                 compiled: bool = False):
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1 or eps < 0:
            raise ValueError(f"Muon: need lr, weight_decay, eps >= 0 and 0 <= momentum < 1, got "
                             f"lr={lr}, weight_decay={weight_decay}, momentum={momentum}, eps={eps}")
        numbers = [tuple(float(v) for v in t) for t in ns_coefficients]
        if not numbers or any(len(t) != 3 for t in numbers):
            raise ValueError(f"ns_coefficients: need one or more (a, b, c) triples, got {ns_coefficients!r}")
        triples = [(a, b, c) for a, b, c in numbers]
        steps = len(triples) if ns_steps is None else ns_steps
        if steps < 0:
            raise ValueError(f"ns_steps: must be >= 0, got {ns_steps}")
        self.ns_coefficients = (triples + [triples[-1]] * steps)[:steps]
        dtype = getattr(torch, ns_dtype, None) if isinstance(ns_dtype, str) else ns_dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"ns_dtype: must be a floating torch dtype, got {ns_dtype!r}")
        self.ns_dtype: torch.dtype = dtype
        self.eps = eps
        self.process_group = process_group
        self._orthogonalize = torch.compile(newton_schulz, dynamic=False) if compiled else newton_schulz
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, wd_mul=1.0)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon: parameters must be 2-D matrices, got shape {tuple(p.shape)}")

    def _world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(self.process_group), dist.get_rank(self.process_group)
        return 1, 0

    # torch.optim.Optimizer.step's two overloads: no closure, no loss.
    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        world, rank = self._world()
        # Every rank derives the same order from the same parameter list, so the owner of a
        # matrix is known everywhere without communication. Largest first balances the chunks.
        items = [(p, group) for group in self.param_groups for p in group["params"]]
        items.sort(key=lambda item: (item[0].numel(), tuple(item[0].shape)), reverse=True)
        if world == 1:
            for p, group in items:
                self._update(p, group)
            return loss

        pending = []
        # all_gather needs one numel and dtype per call: chunk within such buckets.
        buckets: dict[tuple[int, torch.dtype], list[tuple[Tensor, dict]]] = {}
        for p, group in items:
            buckets.setdefault((p.numel(), p.dtype), []).append((p, group))
        for (numel, dtype), bucket in buckets.items():
            for start in range(0, len(bucket), world):
                chunk = bucket[start:start + world]
                for other, _ in chunk[:rank] + chunk[rank + 1:]:
                    self.state.pop(other, None)  # another rank's matrix (e.g. after a resume)
                if rank < len(chunk):
                    mine, group = chunk[rank]
                    self._update(mine, group)
                    send = mine.detach().reshape(-1).clone()
                else:
                    send = torch.empty(numel, dtype=dtype, device=chunk[0][0].device)
                receive = [p.detach().view(-1) for p, _ in chunk]
                receive += [torch.empty_like(send) for _ in range(world - len(chunk))]
                pending.append(dist.all_gather(receive, send, group=self.process_group, async_op=True))
        for work in pending:
            work.wait()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, but every state tensor keeps its saved dtype: torch casts floating
        state to the parameter's dtype and integer state too where the parameter is floating,
        which would round the fp32 momentum to bf16 and turn the int16 extra bits of a bf16
        matrix into bf16 (its fp32 master would change on resume)."""
        saved = {i: dict(s) for i, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for i, tensors in saved.items():
            for key, value in tensors.items():
                if isinstance(value, Tensor):
                    self.state[params[i]][key] = value.to(params[i].device, copy=True)

    def _update(self, p: Tensor, group: dict[str, Any]) -> None:
        if p.grad is None:
            return
        state = self.state[p]
        grad = p.grad.float()
        momentum = group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        buf.copy_(momentum * buf + (1 - momentum) * grad)
        blended = momentum * buf + (1 - momentum) * grad  # Nesterov-style look-ahead
        update = self._orthogonalize(blended, self.ns_coefficients, self.ns_dtype, self.eps)

        if p.dtype == torch.bfloat16:
            if "low_bits" not in state:  # extra bits zero: the first master is the bf16 value
                state["low_bits"] = torch.full(p.shape, -_LOW_OFFSET, dtype=torch.int16, device=p.device)
            master = _fp32_master(p, state["low_bits"])
        else:
            master = p
        lr = group["lr"]
        rows, cols = p.shape
        master.mul_(1 - lr * group["weight_decay"] * group["wd_mul"])
        master.sub_(lr * max(1.0, rows / cols) ** 0.5 * update.to(master.dtype))
        if master is not p:
            _store_fp32(p, state["low_bits"], master)
