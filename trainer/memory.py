"""Peak memory per GPU of a training run, estimated from its config before anything starts.

Parameters, gradients and optimizer state follow exactly from the shapes and dtypes (bf16
tables and matrices on GPUs, fp32 head and scalars; Adam's moments in each parameter's dtype;
Muon's fp32 momentum and 16 extra mantissa bits on the 1/workers of the matrices a rank owns).
Activations and logits grow with the tokens of one micro-step. The logits cost 8 bytes each
(bf16 logits kept for the backward, their fp32 gradient and its bf16 copy for the head's
matmul); the activations' bytes per token, layer and model dimension are calibrated so that
the record (medium, k = 1, 65,536 tokens per GPU on 8 GPUs) comes out at its measured
53,988 MiB. Validation streams are estimated the same way, without gradients, and the peak
is the larger of the two. No torch here: `ablate sweep --dry-run` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablate.model.config import GPTConfig, param_parts
from ablate.trainer.config import TrainConfig

MIB = 2**20
GIB = 2**30
RECORD_PEAK_MIB = 53_988  # medium k = 1 at 65,536 tokens per GPU, 8 GPUs (RECORD.md)
LOGIT_BYTES = 8  # per logit of a training micro-step, bf16 storage
EVAL_LOGIT_BYTES = 10  # per logit of one evaluation chunk: bf16 logits, fp32 copy, fp32 soft cap
EVAL_VECTORS = 4  # model-dimension vectors per token alive at once in a no-grad forward


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (or per CPU process)."""
    params: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    evaluation: int  # peak of a validation step, parameters and optimizer state included

    @property
    def training(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.logits

    @property
    def total(self) -> int:
        return max(self.training, self.evaluation)


def _state_bytes(model: GPTConfig, workers: int, bf16: bool) -> tuple[int, int, int]:
    """(parameters, gradients, optimizer state) in bytes on one rank."""
    tables, matrices, head, scalars = param_parts(model)
    low = 2 if bf16 else 4  # tables' and matrices' storage
    fp32 = head + scalars
    params = (tables + matrices) * low + fp32 * 4
    adam = tables * 2 * low + fp32 * 8
    muon = -(-matrices // workers) * (4 + (2 if bf16 else 0))  # momentum (+ extra bits)
    return params, params, adam + muon


def _activation_bytes_per_unit() -> float:
    """Bytes per token, layer and model dimension, from the record's measured peak."""
    model = GPTConfig.preset("medium", extra_embeddings=1)
    params, grads, optimizer = _state_bytes(model, 8, bf16=True)
    T = 65536
    rest = RECORD_PEAK_MIB * MIB - params - grads - optimizer - T * model.padded_vocab * LOGIT_BYTES
    return rest / (T * model.n_layer * model.d_model)


ACTIVATION_BYTES = _activation_bytes_per_unit()  # about 24: twelve bf16 vectors per layer


def estimate_memory(cfg: TrainConfig, workers: int | None = None, gpu: bool = True) -> MemoryEstimate:
    """Peak bytes on one worker of `cfg` run by `workers` workers (default cfg.workers), on GPUs
    (bf16 storage) or CPUs (fp32: activations and logits take twice the bytes)."""
    workers = workers or cfg.workers
    model = cfg.model
    params, grads, optimizer = _state_bytes(model, workers, bf16=gpu)
    tokens = cfg.micro_tokens_for(workers)
    width = 1 if gpu else 2
    activations = int(tokens * model.n_layer * model.d_model * ACTIVATION_BYTES * width)
    logits = tokens * model.padded_vocab * LOGIT_BYTES * width
    chunk = -(-cfg.val_seq_len // model.eval_chunks)
    evaluation = params + optimizer + width * (chunk * model.padded_vocab * EVAL_LOGIT_BYTES
                                               + cfg.val_seq_len * model.d_model * 2 * EVAL_VECTORS)
    return MemoryEstimate(params, grads, optimizer, activations, logits, evaluation)


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:g} B"


def describe(est: MemoryEstimate) -> str:
    """One line: the peak and its parts."""
    parts = ", ".join(f"{name} {format_bytes(getattr(est, name))}" for name in
                      ("params", "grads", "optimizer", "activations", "logits", "evaluation"))
    return f"{format_bytes(est.total)} ({parts})"
