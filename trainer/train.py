"""One training run, the same code single-process, under torchrun, and on a sweep's warm workers.

The loop is the record's (RECORD.md): our Muon on the blocks' matrices and Adam on tables,
head and scalars; the lr flat then falling to 0 over the final 70% of the steps; Muon's
momentum warmed up. A step reads `tokens_per_step` tokens: each rank reads only its own slice
and runs it in micro-steps of `micro_tokens` (streams of `seq_len` tokens), accumulating their
gradients; then the ranks average gradients (in the parameters' dtype) and the optimizers step. So 1, 2, 4
or 8 workers do the same math on the same tokens.

Time: the clock runs from barrier to barrier and stops only for validation; compile warm-up
(untimed steps on random tokens, then undone) is excluded. Nothing reads the GPU back during
training except the divergence check every `nan_check_every` steps. Rank 0 writes the curve
after every validation point. Ray is an edge: results and checkpoints leave through a Reporter.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from ablate.core import states
from ablate.core.fields import OUTSIDE_RUN
from ablate.model import GPT
from ablate.trainer.config import TrainConfig, TrainConfigError, check_cuda_shapes
from ablate.trainer.data import DataError, StreamPosition, TokenStream, data_vocab, find_shards
from ablate.trainer.muon import Muon
from ablate.trainer.schedule import lr_multiplier, muon_momentum

CHECKPOINT_FILE = "state.pt"
# A run's validation points as it yields them: metrics, and a checkpoint folder when one is due.
Points = Generator[tuple[dict[str, Any], Path | None]]


class Reporter(Protocol):
    """Where validation metrics and checkpoints go (a log, a test); a sweep's workers take the
    points from `training_points` instead."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...


@dataclass
class Result:
    status: str  # completed | diverged
    rows: list[dict[str, Any]]  # the curve (on every rank)
    curve: Path | None  # the file rank 0 wrote
    warmup_ms: float


def build_optimizers(model: GPT, cfg: TrainConfig, fused: bool,
                     compiled: bool = False) -> list[torch.optim.Optimizer]:
    """Adam for tables, head and scalars and Muon for the matrices, in the groups the model
    declares (GPT.param_groups), with the recipe's settings."""
    groups = model.param_groups()
    adam_lr = dict(tables=cfg.lr_embed, head=cfg.lr_head, scalars=cfg.lr_scalar)
    adam = torch.optim.Adam(
        [dict(params=g["params"], lr=adam_lr[g["name"]]) for g in groups if g["optimizer"] == "adam"],
        betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=0.0, fused=fused)
    muon = Muon(
        [dict(params=g["params"], wd_mul=g["wd_mul"]) for g in groups if g["optimizer"] == "muon"],
        lr=cfg.lr_muon, weight_decay=cfg.muon_weight_decay, momentum=cfg.muon_momentum,
        ns_coefficients=cfg.muon_ns_coefficients, ns_steps=cfg.muon_ns_steps,
        ns_dtype=cfg.muon_ns_dtype, compiled=compiled)
    opts = [adam, muon]
    for opt in opts:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return opts


class Run:
    """The state of one run: model, optimizers, data, clock and curve."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter | None,
                 curve_meta: dict[str, Any] | None = None):
        self.cfg, self.reporter = cfg, reporter
        self.curve_meta = curve_meta or {}  # e.g. the sweep's axes and target, for reports
        self.rank, self.world, self.device, self._own_group = _setup_distributed(cfg)
        self.micro_steps = cfg.micro_steps(self.world)  # refuses a batch that does not split
        self.rows_per_micro = cfg.rows(self.world)
        self.val_steps = cfg.val_steps(self.world)
        vocab = data_vocab(cfg.data)
        if vocab is not None and vocab > cfg.model.vocab_size:
            raise TrainConfigError(f"vocab_size: the data in {cfg.data} has {vocab} tokens, more than the "
                              f"model's vocab_size {cfg.model.vocab_size}")
        self.cuda = self.device.type == "cuda"
        self.compiled = cfg.compile if cfg.compile is not None else self.cuda
        self.nan_check_every = cfg.nan_check_every or (25 if self.cuda else 1)
        vocab_size = cfg.model.vocab_size
        self.stream = TokenStream(find_shards(cfg.data, "train"), vocab_size=vocab_size)
        self.val_files = find_shards(cfg.data, "val")
        self.val_stream = TokenStream(self.val_files, vocab_size=vocab_size)  # rewound at every validation
        self._check_val_set()

        torch.manual_seed(cfg.seed)
        self.model = GPT(cfg.model, max_seq_len=cfg.val_seq_len).to(self.device)
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.cuda)
        if self.bf16:  # the record's precision: bf16 tables and matrices make bf16 activations
            self.model.use_bf16()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if self.world > 1:  # the record broadcasts rank 0's initial weights
            for p in self.params:
                dist.broadcast(p.detach(), 0)
        self.optimizers = build_optimizers(self.model, cfg, fused=True,
                                           compiled=self.compiled and self.cuda)
        if self.compiled:
            if self.cuda:
                import torch._inductor.config as inductor
                inductor.coordinate_descent_tuning = cfg.compile_tuning
            self.net = torch.compile(self.model, dynamic=False)
        else:
            self.net = self.model
        self._windows: dict[int, torch.Tensor] = {}
        self.step, self.clock_ms, self.rows = 0, 0.0, []
        self.restarts: list[int] = []  # steps this run was resumed from, for the curve's metadata
        self.loss_sum = torch.zeros((), device=self.device)  # since the last validation, on device
        self.loss_count = 0
        self.warmup_ms = 0.0
        self.status = states.COMPLETED
        self._t0: float | None = None
        if self.cuda:  # a warm worker's earlier runs: this run's own peak
            torch.cuda.reset_peak_memory_stats(self.device)

    # --- data ---------------------------------------------------------------------------------
    def _to_device(self, tokens: np.ndarray, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (int32) and targets (int64) shaped `shape`; through pinned memory on CUDA so
        that the copy overlaps the GPU's work."""
        t = torch.from_numpy(tokens.astype(np.int32))
        if self.cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t[:-1].view(*shape), t[1:].to(torch.int64).view(*shape)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the step's global batch, tokens [pos + r*S, pos + (r+1)*S + 1)
        for rank r and S tokens per rank, as (micro-steps, streams, seq_len)."""
        per_rank = self.cfg.tokens_per_step // self.world
        tokens = self.stream.next_batch(self.cfg.tokens_per_step, self.rank * per_rank, per_rank + 1)
        return self._to_device(tokens, self.micro_steps, self.rows_per_micro, self.cfg.model.seq_len)

    def _check_val_set(self) -> None:
        """The validation set must fit in the val shards without wrapping round."""
        stream, size = self.val_stream, self.world * self.cfg.val_seq_len
        stream.position = StreamPosition()
        for _ in range(self.val_steps):
            stream.next_batch(size, 0, 0)
        if stream.position.epoch:
            raise DataError(f"{self.val_files[0].parent}: the val shards hold fewer than "
                            f"val_tokens={self.cfg.val_tokens:,} tokens (in streams of {size:,})")

    def window(self) -> torch.Tensor:
        """This step's long attention window in blocks, a tensor so that a compiled model takes
        each new size without recompiling; made once per size (making one is a host copy).
        Validation uses the current step's window too."""
        blocks = self.cfg.model.window_blocks(min(self.step / self.cfg.num_iterations, 1.0))[0]
        if blocks not in self._windows:
            self._windows[blocks] = torch.tensor(blocks, dtype=torch.int32, device=self.device)
        return self._windows[blocks]

    # --- one step, one evaluation -------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on this rank's streams; the mean loss stays on the device."""
        cfg = self.cfg
        mult = lr_multiplier(self.step, cfg.num_iterations, cfg.cooldown_frac)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
        for group in self.optimizers[1].param_groups:
            group["momentum"] = muon_momentum(self.step, cfg.muon_momentum_start, cfg.muon_momentum,
                                              cfg.muon_momentum_warmup)
        window, total = self.window(), None
        for i in range(len(x)):
            loss = self.net(x[i], y[i], window=window)
            (loss / len(x)).backward()
            total = loss.detach() if total is None else total + loss.detach()
        self._average_gradients()
        for opt in self.optimizers:
            opt.step()
        self.model.zero_grad(set_to_none=True)
        assert total is not None  # at least one micro-step
        self.loss_sum += total / len(x)
        self.loss_count += 1

    def _average_gradients(self) -> None:
        """Average every gradient over the ranks, in its own dtype (bf16 for bf16 weights): on
        GPUs one asynchronous all-reduce per parameter in a fixed order, as the record does."""
        if self.world == 1:
            return
        grads = [p.grad for p in self.params if p.grad is not None]  # the same on every rank
        if self.cuda:
            works = [dist.all_reduce(g, op=dist.ReduceOp.AVG, async_op=True) for g in grads]
            for work in works:
                assert work is not None  # async_op=True returns a Work
                work.wait()
            return
        # gloo: no AVG, and a call per tensor costs more than the sums; one flat buffer
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        parts = flat.split([g.numel() for g in grads])
        views = [part.view_as(g) for part, g in zip(parts, grads)]
        torch._foreach_copy_(grads, views)  # pyright: ignore[reportPrivateImportUsage]  # torch's, not in its exports

    def train_loss(self) -> float:
        """Mean training loss since the last validation, over steps and ranks (a host read)."""
        total = self.loss_sum.clone()
        if self.world > 1:
            dist.all_reduce(total)
            total /= self.world
        return total.item() / self.loss_count if self.loss_count else float("nan")

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the fixed validation set, streams of val_seq_len tokens dealt to the
        ranks as the record does (stream s*W + r at evaluation step s)."""
        V, W = self.cfg.val_seq_len, self.world
        stream = self.val_stream
        stream.position = StreamPosition()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        self.model.eval()  # the model then makes its logits in chunks
        for _ in range(self.val_steps):
            x, y = self._to_device(stream.next_batch(W * V, self.rank * V, V + 1), 1, V)
            total += self.net(x, y, window=self.window()).double()
        self.model.train()
        if self.world > 1:
            dist.all_reduce(total)
        return total.item() / (self.val_steps * W)

    # --- the clock ----------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        if self.world > 1:
            dist.barrier(device_ids=[self.device.index] if self.cuda else None)

    def start_clock(self) -> None:
        self._barrier()
        self._t0 = time.perf_counter()

    def stop_clock(self) -> None:
        self._barrier()
        assert self._t0 is not None, "stop_clock before start_clock"
        self.clock_ms += (time.perf_counter() - self._t0) * 1000

    # --- the curve, checkpoints ---------------------------------------------------------
    def record(self, val_loss: float, status: str, train_loss: float | None = None) -> dict[str, Any]:
        cfg, m = self.cfg, self.cfg.model
        if train_loss is None and self.loss_count:
            train_loss = self.train_loss()
        row = dict(
            sweep=cfg.sweep, trial_id=cfg.trial_id, preset=cfg.preset,
            extra_embeddings=m.extra_embeddings, num_iterations=cfg.num_iterations,
            lambda_init=m.lambda_init, token_lambdas=m.token_lambdas, seed=cfg.seed,
            workers=self.world, step=self.step, train_time_ms=self.clock_ms, val_loss=val_loss,
            train_loss=train_loss, tokens_seen=self.step * cfg.tokens_per_step,
            lr=lr_multiplier(self.step, cfg.num_iterations, cfg.cooldown_frac),
            peak_mem_mb=_peak_memory_mb(self.device), lambdas=self.model.mixing_weights(),
            status=status, params=json.dumps(cfg.to_flat() | {"workers": self.world}, default=str))
        self.rows.append(row)
        self.loss_sum.zero_()
        self.loss_count = 0
        return row

    def write_curve(self) -> Path | None:
        if self.rank != 0 or not self.cfg.out:
            return None
        from ablate.results.curves import write_curve  # pyarrow: only where a curve is written
        meta = dict(config=self.cfg.to_flat(), workers=self.world, warmup_ms=self.warmup_ms,
                    restarts=self.restarts,
                    device=str(self.device), torch=torch.__version__, compiled=self.compiled)
        return write_curve(self.cfg.out, self.rows, self.curve_meta | meta)

    def state_dict(self) -> dict[str, Any]:
        """The whole state, on every rank. Muon keeps a matrix's state only on the rank that
        updates it: the ranks' states are merged (a collective), so that a checkpoint resumes
        on any number of workers."""
        muon = self.optimizers[1].state_dict()
        if self.world > 1:
            local = {i: {k: v.cpu() for k, v in s.items()} for i, s in muon["state"].items()}
            parts: list[Any] = [None] * self.world
            dist.all_gather_object(parts, local)
            muon = dict(muon, state={i: s for part in parts for i, s in part.items()})
        return dict(model=self.model.state_dict(),
                    optimizers=[self.optimizers[0].state_dict(), muon],
                    step=self.step, clock_ms=self.clock_ms, rows=self.rows,
                    stream=asdict(self.stream.position), rng=torch.get_rng_state(),
                    restarts=self.restarts,
                    config=json.dumps(self.cfg.to_flat(), default=str))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_same_config(state.get("config"))
        self.model.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        for opt in self.optimizers:  # load_state_dict keeps saved lrs; the schedule resets them
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.step, self.clock_ms, self.rows = state["step"], state["clock_ms"], list(state["rows"])
        self.stream.position = StreamPosition(**state["stream"])
        self.restarts = list(state.get("restarts", []))
        torch.set_rng_state(state["rng"])

    def check_same_config(self, saved: str | None) -> None:
        """Refuse to continue a checkpoint of another config: its curve would splice two runs."""
        if saved is None:  # a checkpoint from before configs were kept in it
            return
        from ablate.trainer.weights import config_differences

        old, new = json.loads(saved), self.cfg.to_flat()
        differ = config_differences(old, new, ignore=OUTSIDE_RUN)
        if differ:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in differ[:3])
            raise TrainConfigError(f"resume: the checkpoint is of another config ({shown}"
                              f"{', ...' if len(differ) > 3 else ''})")

    def checkpoint(self) -> Path | None:
        """Every rank joins in; rank 0 saves the whole state into a fresh folder, which the
        reporter keeps or uploads."""
        state = self.state_dict()
        if self.rank != 0:
            return None
        folder = Path(tempfile.mkdtemp(prefix=f"ablate-ckpt-{self.step:06d}-"))
        torch.save(state, folder / CHECKPOINT_FILE)
        return folder

    def warm_up(self) -> None:
        """Compile before the clock starts: a few steps on random tokens (inputs = targets)
        and one evaluation, then the exact starting weights and optimizer state are restored.
        The data position is untouched, as the record rules require."""
        n = self.cfg.warmup_steps if self.cfg.warmup_steps is not None else (10 if self.compiled else 0)
        if n == 0:
            return
        t0 = time.perf_counter()
        saved_model = copy.deepcopy(self.model.state_dict())
        saved_optimizers = copy.deepcopy([o.state_dict() for o in self.optimizers])
        g = torch.Generator().manual_seed(self.cfg.seed)
        vocab, T = self.cfg.model.vocab_size, self.cfg.model.seq_len
        for _ in range(n):
            shape = (self.micro_steps, self.rows_per_micro, T)
            x = torch.randint(0, vocab, shape, generator=g, dtype=torch.int32).to(self.device)
            self.train_step(x, x.long())
        self.model.eval()
        with torch.no_grad():
            x = torch.randint(0, vocab, (1, self.cfg.val_seq_len), generator=g,
                              dtype=torch.int32).to(self.device)
            self.net(x, x.long(), window=self.window())
        self.model.train()
        self.model.load_state_dict(saved_model)
        for opt, s in zip(self.optimizers, saved_optimizers):
            opt.load_state_dict(s)
        self.loss_sum.zero_()
        self.loss_count = 0
        self._barrier()
        if self.cuda:  # the peak of the run, not of compiling (the record resets it here too)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.warmup_ms = (time.perf_counter() - t0) * 1000

    # --- the loop -------------------------------------------------------------------------
    def run(self, resume: Path | None) -> Result:
        """Train to the end, handing each validation point to the reporter."""
        points = self.points(resume)
        for metrics, checkpoint in points:
            if self.reporter is None:
                continue
            try:
                self.reporter.report(metrics, checkpoint)
            except BaseException as e:  # raised inside the run, which marks its curve failed
                points.throw(e)
        return Result(self.status, self.rows,
                      Path(self.cfg.out) if self.cfg.out and self.rank == 0 else None, self.warmup_ms)

    def points(self, resume: Path | None) -> Points:
        """Train, yielding each validation point's metrics and (rank 0, when one is due) a
        checkpoint folder that lives until the next point is asked for. Every rank yields at
        the same points, so a warm worker group can stop a run between two of them (closing
        the generator) and keep its process group for the next run."""
        cfg = self.cfg
        if resume is not None:
            self.load_state_dict(load_checkpoint(resume))
            self.restarts.append(self.step)
        self.status = states.COMPLETED
        try:
            self.warm_up()
            if resume is None:
                done = self.step == cfg.num_iterations
                yield from self.validate(states.COMPLETED if done else states.RUNNING)
            self.start_clock()
            loss = math.nan  # read below whenever a validation is due
            while self.step < cfg.num_iterations:
                self.train_step(*self.batch())
                self.step += 1
                last = self.step == cfg.num_iterations
                due = self.step % cfg.val_every == 0 or last
                if due or self.step % self.nan_check_every == 0:
                    loss = self.train_loss()  # a host read: every rank gets the same verdict
                    if not math.isfinite(loss):
                        self.stop_clock()
                        self.status = states.DIVERGED
                        yield from self.validate(self.status, val_loss=float("nan"), train_loss=loss)
                        break
                if due:
                    self.stop_clock()
                    yield from self.validate(states.COMPLETED if last else states.RUNNING, train_loss=loss)
                    self.start_clock()
        except GeneratorExit:  # stopped between two points (early stopping): the curve stays as is
            raise
        except BaseException:
            if self.rows:
                self.rows[-1] = self.rows[-1] | {"status": states.FAILED}
                self.write_curve()
            raise
        finally:
            self.close()

    def validate(self, status: str, val_loss: float | None = None,
                 train_loss: float | None = None) -> Points:
        """One validation point: measured and recorded, written where readers find it, then
        handed on with a checkpoint when one is due (removed once the point is passed)."""
        row = self.record(self.evaluate() if val_loss is None else val_loss, status, train_loss)
        self.publish(status)
        ckpt = self.checkpoint() if self.checkpoint_due(status) else None
        try:
            yield _metrics(row), ckpt
        finally:
            if ckpt is not None:
                shutil.rmtree(ckpt, ignore_errors=True)

    def publish(self, status: str) -> None:
        """Rank 0 writes the curve, and at the end the weights, first: a curve that says
        completed has its weights beside it."""
        if status == states.COMPLETED and self.rank == 0:
            from ablate.trainer.weights import save_run_weights
            save_run_weights(self.cfg.out, self.model, self.cfg.to_flat())
        self.write_curve()

    def checkpoint_due(self, status: str) -> bool:
        every = self.cfg.checkpoint_every
        return bool(every) and self.step % every == 0 and status == states.RUNNING

    def close(self) -> None:
        if self._own_group and dist.is_initialized():
            dist.barrier()  # gloo can abort at teardown without it
            dist.destroy_process_group()


def train(cfg: TrainConfig, reporter: Reporter | None = None, resume: str | Path | None = None,
          curve_meta: dict[str, Any] | None = None) -> Result:
    """Run one training; `resume` is a checkpoint folder (or file) to continue from;
    `curve_meta` goes into the curve file's metadata (a sweep's axes and target)."""
    return Run(cfg, reporter, curve_meta).run(Path(resume) if resume is not None else None)


def training_points(cfg: TrainConfig, resume: str | Path | None = None,
                    curve_meta: dict[str, Any] | None = None) -> Points:
    """A run as a generator of its validation points (see Run.points): for a caller that
    drives the run point by point and may stop it between two, as a warm worker does."""
    return Run(cfg, None, curve_meta).points(Path(resume) if resume is not None else None)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainConfigError(f"resume: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "num_iterations", "val_loss", "train_loss", "train_time_ms", "tokens_seen",
            "status")
    return {k: row[k] for k in keys}


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """Join the process group that a sweep's gang or torchrun prepared, or make one from torchrun's
    environment; a plain process runs alone."""
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise TrainConfigError("device: 'cuda' requested but no GPU is visible")
    if cuda:
        check_cuda_shapes(cfg)
        use_expandable_segments()
    own = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
        own = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return rank, world, device, own


ALLOCATOR_SETTINGS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")  # torch's new name, its old one


def use_expandable_segments() -> None:
    """The record's allocator setting: segments that grow in place instead of fragmenting
    the memory as the attention window (and so the activations) grows. Read by torch when it
    first allocates on the GPU; a user's own setting is left as it is."""
    if not any(name in os.environ for name in ALLOCATOR_SETTINGS):
        os.environ["PYTORCH_ALLOC_CONF"] = "expandable_segments:True"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, KiB
