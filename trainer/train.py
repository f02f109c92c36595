"""One training run, the same code single-process, under torchrun, and in a Ray Train worker.

The loop follows the record scripts: Muon on the blocks' matrices and Adam on embeddings,
head and scalars; a flat lr then a linear cooldown; validation at step 0, every `val_every`
steps and at the last step on a fixed token set; a training clock that stops for validation
(after synchronising the device) and excludes compile warm-up. Rank 0 writes the curve after
every validation point. Ray is an edge: results and checkpoints leave through a Reporter.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ablate.model import GPT, ConfigError
from ablate.results.curves import write_curve
from ablate.trainer.config import TrainConfig
from ablate.trainer.data import StreamPosition, TokenStream, data_vocab, find_shards, read_tokens

CHECKPOINT_FILE = "state.pt"


class Reporter(Protocol):
    """Where validation metrics and checkpoints go (a log, Ray Train, a test)."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...


@dataclass
class Result:
    status: str  # completed | diverged
    rows: list[dict[str, Any]]  # the curve (on every rank)
    curve: Path | None  # the file rank 0 wrote
    warmup_ms: float


def lr_multiplier(step: int, cfg: TrainConfig) -> float:
    """Flat, then linear to `final_lr_frac` over the final `cooldown_frac` of the steps."""
    x = step / cfg.num_iterations
    if cfg.cooldown_frac == 0 or x < 1 - cfg.cooldown_frac:
        return 1.0
    w = (1 - x) / cfg.cooldown_frac
    return w + (1 - w) * cfg.final_lr_frac


def build_optimizers(model: GPT, cfg: TrainConfig, fused: bool) -> list[torch.optim.Optimizer]:
    """Muon for the matrices and Adam for tables, head and scalars, in the groups the model
    declares (GPT.param_groups)."""
    groups = model.param_groups()
    adam_lr = dict(tables=cfg.lr_embed, head=cfg.lr_head, scalars=cfg.lr_scalar)
    adam = torch.optim.Adam(
        [dict(params=g["params"], lr=adam_lr[g["name"]]) for g in groups if g["optimizer"] == "adam"],
        betas=cfg.adam_betas, eps=1e-10, fused=fused)
    muon = torch.optim.Muon(
        [dict(params=g["params"], wd_mul=g["wd_mul"]) for g in groups if g["optimizer"] == "muon"],
        lr=cfg.lr_muon, momentum=cfg.muon_momentum, nesterov=True)
    for group in muon.param_groups:  # torch's Muon has no per-group multiplier of its decay
        group["weight_decay"] *= group["wd_mul"]
    opts = [adam, muon]
    for opt in opts:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return opts


class _Run:
    """The state of one run: model, optimizers, data, clock and curve."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter | None,
                 curve_meta: dict[str, Any] | None = None):
        self.cfg, self.reporter = cfg, reporter
        self.curve_meta = curve_meta or {}  # e.g. the sweep's axes and target, for reports
        self.rank, self.world, self.device, self._own_group = _setup_distributed(cfg)
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch_size: {cfg.batch_size} does not split over {self.world} workers")
        vocab = data_vocab(cfg.data)
        if vocab is not None and vocab > cfg.model.vocab_size:
            raise ConfigError(f"vocab_size: the data in {cfg.data} has {vocab} tokens, more than the "
                              f"model's vocab_size {cfg.model.vocab_size}")
        cuda = self.device.type == "cuda"
        self.compiled = cfg.compile if cfg.compile is not None else cuda
        torch.manual_seed(cfg.seed)
        self.model = GPT(cfg.model).to(self.device)
        if cuda:  # the record's precision: bf16 tables and matrices make bf16 activations
            self.model.use_bf16()
        self.optimizers = build_optimizers(self.model, cfg, fused=cuda)
        net = DDP(self.model, device_ids=[self.device.index] if cuda else None) \
            if self.world > 1 else self.model
        self.train_net = torch.compile(net) if self.compiled else net
        self.eval_net = torch.compile(self.model) if self.compiled else self.model
        self.stream = TokenStream(find_shards(cfg.data, "train"))
        T = cfg.model.seq_len
        val = torch.from_numpy(read_tokens(find_shards(cfg.data, "val"), cfg.val_tokens + 1))
        n = cfg.val_tokens // T
        self.val_x = val[: n * T].view(n, T)[self.rank::self.world].contiguous()
        self.val_y = val[1: n * T + 1].view(n, T)[self.rank::self.world].contiguous()
        self.step, self.clock_ms, self.rows = 0, 0.0, []
        self.restarts: list[int] = []  # steps this run was resumed from, for the curve's metadata
        self.loss_sum, self.loss_count = 0.0, 0
        self.warmup_ms = 0.0

    # --- one step, one evaluation -------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch is the same whatever the worker count; each rank takes its rows."""
        B, T = self.cfg.batch_size, self.cfg.model.seq_len
        tokens = torch.from_numpy(self.stream.next(B * T + 1))
        x, y = tokens[:-1].view(B, T), tokens[1:].view(B, T)
        rows = slice(self.rank * B // self.world, (self.rank + 1) * B // self.world)
        return (x[rows].to(self.device, non_blocking=True),
                y[rows].to(self.device, non_blocking=True))

    def window(self) -> torch.Tensor:
        """This step's long attention window in blocks; a tensor, so that a compiled model
        takes each new size without recompiling. Validation uses the current step's too."""
        blocks = self.cfg.model.window_blocks(min(self.step / self.cfg.num_iterations, 1.0))[0]
        return torch.tensor(blocks, dtype=torch.int32, device=self.device)

    def train_step(self) -> float:
        cfg, mult = self.cfg, lr_multiplier(self.step, self.cfg)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult
        frac = min(self.step / cfg.muon_momentum_warmup, 1) if cfg.muon_momentum_warmup else 1
        for group in self.optimizers[1].param_groups:
            group["momentum"] = (1 - frac) * 0.85 + frac * cfg.muon_momentum
        x, y = self.batch()
        loss = self.train_net(x, y, window=self.window())
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        self.model.zero_grad(set_to_none=True)
        loss = loss.detach()
        if self.world > 1:  # all ranks agree on the loss, so they stop together on divergence
            dist.all_reduce(loss, op=dist.ReduceOp.AVG)
        return loss.item()

    @torch.no_grad()
    def evaluate(self) -> float:
        total = torch.zeros(2, device=self.device, dtype=torch.float64)
        per = max(1, self.cfg.batch_size // self.world)
        self.model.eval()  # the model then makes its logits in chunks
        for i in range(0, len(self.val_x), per):
            x = self.val_x[i:i + per].to(self.device)
            y = self.val_y[i:i + per].to(self.device)
            loss = self.eval_net(x, y, window=self.window())
            total += torch.stack([loss.double() * len(x), torch.tensor(len(x), device=self.device)])
        self.model.train()
        if self.world > 1:
            dist.all_reduce(total)
        return (total[0] / total[1]).item()

    # --- the curve, checkpoints ---------------------------------------------------------
    def record(self, val_loss: float, status: str) -> dict[str, Any]:
        cfg, m = self.cfg, self.cfg.model
        row = dict(
            sweep=cfg.sweep, trial_id=cfg.trial_id, preset=cfg.preset,
            extra_embeddings=m.extra_embeddings, num_iterations=cfg.num_iterations,
            lambda_init=m.lambda_init, token_lambdas=m.token_lambdas, seed=cfg.seed,
            workers=self.world, step=self.step, train_time_ms=self.clock_ms, val_loss=val_loss,
            train_loss=self.loss_sum / self.loss_count if self.loss_count else None,
            tokens_seen=self.step * cfg.tokens_per_step, lr=lr_multiplier(self.step, cfg),
            peak_mem_mb=_peak_memory_mb(self.device), lambdas=self.model.mixing_weights(),
            status=status, params=json.dumps(cfg.to_flat() | {"workers": self.world}, default=str))
        self.rows.append(row)
        self.loss_sum, self.loss_count = 0.0, 0
        return row

    def write_curve(self) -> Path | None:
        if self.rank != 0 or not self.cfg.out:
            return None
        meta = dict(config=self.cfg.to_flat(), workers=self.world, warmup_ms=self.warmup_ms,
                    restarts=self.restarts,
                    device=str(self.device), torch=torch.__version__, compiled=self.compiled)
        return write_curve(self.cfg.out, self.rows, self.curve_meta | meta)

    def state_dict(self) -> dict[str, Any]:
        return dict(model=self.model.state_dict(),
                    optimizers=[o.state_dict() for o in self.optimizers],
                    step=self.step, clock_ms=self.clock_ms, rows=self.rows,
                    stream=asdict(self.stream.position), rng=torch.get_rng_state(),
                    restarts=self.restarts,
                    config=json.dumps(self.cfg.to_flat(), default=str))

    def load_state_dict(self, state: dict[str, Any]) -> None:
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

    def checkpoint(self) -> Path | None:
        """Rank 0 saves the whole state into a fresh folder; the reporter keeps or uploads it."""
        if self.rank != 0:
            return None
        folder = Path(tempfile.mkdtemp(prefix=f"ablate-ckpt-{self.step:06d}-"))
        torch.save(self.state_dict(), folder / CHECKPOINT_FILE)
        return folder

    def warm_up(self) -> None:
        """Run a few untimed steps to compile, then restore the exact starting state, as the
        record rules require (compile time is not training time)."""
        n = self.cfg.warmup_steps if self.cfg.warmup_steps is not None else (10 if self.compiled else 0)
        if n == 0:
            return
        t0 = time.perf_counter()
        saved = copy.deepcopy(self.state_dict())
        for _ in range(n):
            self.train_step()
        self.evaluate()
        self.load_state_dict(saved)
        self.loss_sum, self.loss_count = 0.0, 0
        _sync(self.device)
        self.warmup_ms = (time.perf_counter() - t0) * 1000

    # --- the loop -------------------------------------------------------------------------
    def run(self, resume: Path | None) -> Result:
        cfg = self.cfg
        if resume is not None:
            self.load_state_dict(load_checkpoint(resume))
            self.restarts.append(self.step)
        self.warm_up()
        status = "completed"
        resumed_at = self.step if resume is not None else None
        try:
            while True:
                last = self.step == cfg.num_iterations
                if (self.step % cfg.val_every == 0 or last) and self.step != resumed_at:
                    self.validate(status="completed" if last else "running")
                if last:
                    break
                _sync(self.device)
                t0 = time.perf_counter()
                loss = self.train_step()
                _sync(self.device)
                self.clock_ms += (time.perf_counter() - t0) * 1000
                self.step += 1
                if not math.isfinite(loss):
                    self.loss_sum, self.loss_count = loss, 1
                    status = "diverged"
                    self.validate(status, val_loss=float("nan"))
                    break
                self.loss_sum += loss
                self.loss_count += 1
        except BaseException:
            if self.rows:
                self.rows[-1] = self.rows[-1] | {"status": "failed"}
                self.write_curve()
            raise
        finally:
            self.close()
        return Result(status, self.rows, Path(cfg.out) if cfg.out and self.rank == 0 else None,
                      self.warmup_ms)

    def validate(self, status: str, val_loss: float | None = None) -> None:
        if val_loss is None:
            val_loss = self.evaluate()
        row = self.record(val_loss, status)
        self.write_curve()
        ckpt = None
        if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0 \
                and status == "running":
            ckpt = self.checkpoint()
        try:
            if self.reporter is not None:
                self.reporter.report(_metrics(row), ckpt)
        finally:
            if ckpt is not None:
                shutil.rmtree(ckpt, ignore_errors=True)

    def close(self) -> None:
        if self._own_group and dist.is_initialized():
            dist.barrier()  # gloo can abort at teardown without it
            dist.destroy_process_group()


def train(cfg: TrainConfig, reporter: Reporter | None = None, resume: str | Path | None = None,
          curve_meta: dict[str, Any] | None = None) -> Result:
    """Run one training; `resume` is a checkpoint folder (or file) to continue from;
    `curve_meta` goes into the curve file's metadata (a sweep's axes and target)."""
    return _Run(cfg, reporter, curve_meta).run(Path(resume) if resume is not None else None)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"resume: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "num_iterations", "val_loss", "train_loss", "train_time_ms", "tokens_seen",
            "status")
    return {k: row[k] for k in keys}


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device, bool]:
    """Join the process group that Ray Train or torchrun prepared, or make one from torchrun's
    environment; a plain process runs alone."""
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no GPU is visible")
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, KiB
