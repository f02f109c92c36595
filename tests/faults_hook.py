"""Fault injection inside Ray's worker processes, installed through Ray's
`worker_process_setup_hook`: the real trainer runs unchanged until the planted fault.

ABLATE_TEST_FAULTS is a comma-separated list of KIND:K:N rules: at the N-th training forward
of a model with K extra embeddings, `nan` poisons the loss, `raise` raises, `kill` SIGKILLs
rank 1's process and `stop` SIGSTOPs it (a hung worker that Ray still sees alive); each once:
a marker file in ABLATE_TEST_FAULT_DIR remembers it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def install() -> None:
    rules = [r.split(":") for r in os.environ.get("ABLATE_TEST_FAULTS", "").split(",") if r]
    if not rules:
        return
    import weakref

    import torch
    import torch.distributed as dist

    import ablate.model.gpt

    forward = ablate.model.gpt.GPT.forward
    calls = weakref.WeakKeyDictionary()  # per model: a warm worker builds one per trial

    def faulty(self, tokens, targets=None, **kwargs):
        out = forward(self, tokens, targets, **kwargs)
        if targets is None or not torch.is_grad_enabled():
            return out
        calls[self] = n = calls.get(self, 0) + 1
        for kind, k, at in rules:
            if self.config.extra_embeddings != int(k) or n != int(at):
                continue
            if kind == "nan":
                return out * float("nan")
            if kind == "raise":
                raise RuntimeError(f"injected fault at training forward {n}")
            if kind in ("kill", "stop") and dist.is_initialized() and dist.get_rank() == 1:
                marker = Path(os.environ["ABLATE_TEST_FAULT_DIR"]) / f"{kind}-k{k}"
                if not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
        return out

    ablate.model.gpt.GPT.forward = faulty
