"""`ablate train` and `ablate data`: one local training run, and making token shards.

`add_commands` is what the trainer gives the `ablate` program (ablate.cli), which also runs
them alone as `python -m ablate.trainer ...` (e.g. under `torchrun --nproc_per_node=2 -m
ablate.trainer train ...`). Bad input is refused with an AblateError (TrainConfigError,
DataError), which the CLI's edge prints as one line. Heavy imports happen inside the
commands so that `ablate --help` stays instant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ablate.core.states import COMPLETED


class LogReporter:
    """Prints each validation point as a record-style log line; keeps the latest checkpoint."""

    def __init__(self, checkpoint_dir: Path | None, rank: int):
        self.checkpoint_dir, self.rank = checkpoint_dir, rank

    def report(self, metrics, checkpoint):
        if self.rank == 0:
            from ablate.results.logs import record_line
            print(record_line(metrics["step"], metrics["num_iterations"], metrics["val_loss"],
                              metrics["train_time_ms"]), flush=True)
        if checkpoint is not None and self.checkpoint_dir is not None:
            target = self.checkpoint_dir / "latest"
            staging = self.checkpoint_dir / ".incoming"
            shutil.rmtree(staging, ignore_errors=True)
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(checkpoint, staging)  # the trainer's temp folder, ours to take
            old = self.checkpoint_dir / ".previous"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)


def cmd_train(args) -> int:
    import os

    from ablate.trainer.config import TrainConfig, TrainConfigError, model_refusals, parse_assignments

    rank, workers = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    values = parse_assignments(args.set or [])
    values.setdefault("preset", args.preset)
    values.setdefault("data", args.data)
    values.setdefault("out", args.out)
    values.setdefault("workers", workers)  # an identity field (core.fields): the run's own count
    cfg = TrainConfig.from_flat(values)
    from ablate.trainer.train import CHECKPOINT_FILE, train  # torch: once the settings are valid

    ckpt_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    resume = None
    if args.resume:
        resume = Path(args.resume)
        resume = resume / "latest" if (resume / "latest").is_dir() else resume
        ckpt_dir = ckpt_dir or Path(args.resume)
        if not (resume / CHECKPOINT_FILE).is_file() and not resume.is_file():
            raise TrainConfigError(f"resume: no checkpoint in {args.resume}")
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise TrainConfigError(f"checkpoint-dir: {ckpt_dir} is not a folder")
    out = Path(cfg.out)
    if out.is_dir():
        raise TrainConfigError(f"out: {out} is a folder; give the curve file to write")
    if out.exists() and resume is None and not args.force:
        raise TrainConfigError(f"out: {out} exists; refusing to overwrite (use --resume or --force)")
    micro = cfg.micro_steps(workers)  # refuses a batch that does not split over the workers
    if rank == 0:
        from ablate.trainer.memory import describe, estimate_memory
        gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch_cuda())
        print(f"{cfg.tokens_per_step:,} tokens a step = {workers} worker(s) x {micro} micro-step(s) "
              f"x {cfg.micro_tokens_for(workers):,} tokens; estimated peak per "
              f"{'GPU' if gpu else 'worker'}: {describe(estimate_memory(cfg, workers, gpu=gpu))}",
              flush=True)
    with model_refusals():  # the model's own refusals, met while the run builds it
        result = train(cfg, LogReporter(ckpt_dir, rank), resume=resume)
    if rank == 0:
        last = result.rows[-1]
        print(f"{result.status}: val_loss {last['val_loss']:.4f} after {last['step']} steps, "
              f"{last['train_time_ms'] / 1000:.1f} s training; curve -> {result.curve}")
    return 0 if result.status == COMPLETED else 1


def torch_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def cmd_data_builtin(args) -> int:
    from ablate.trainer.data import builtin_documents, prepare
    meta = prepare(builtin_documents(), args.out, source="pydoc_data.topics")
    print(f"wrote {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens "
          f"(bytes, vocab {meta['vocab_size']}) to {args.out}")
    return 0


def cmd_data_prepare(args) -> int:
    from ablate.trainer.data import prepare, text_documents
    meta = prepare(text_documents(args.text), args.out, source=", ".join(args.text))
    print(f"wrote {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens "
          f"(bytes, vocab {meta['vocab_size']}) to {args.out}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="run one training locally (or under torchrun)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny, small, medium")
    p.add_argument("--data", default="data/builtin", help="folder of *train*.bin / *val*.bin shards")
    p.add_argument("--out", default="runs/train/curve.parquet", help="the curve file to write")
    p.add_argument("-s", "--set", action="append", metavar="KEY=VALUE",
                   help="any model or trainer field, e.g. -s extra_embeddings=1 -s num_iterations=200")
    p.add_argument("--checkpoint-dir", help="keep the latest checkpoint here")
    p.add_argument("--resume", help="continue from the checkpoint in this folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing curve file")
    p.set_defaults(func=cmd_train)

    d = sub.add_parser("data", help="make token shards")
    dsub = d.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser("builtin", help="shards of the offline corpus (Python's pydoc topics)")
    b.add_argument("--out", default="data/builtin")
    b.set_defaults(func=cmd_data_builtin)
    t = dsub.add_parser("prepare", help="shards of your own UTF-8 text files")
    t.add_argument("--text", nargs="+", required=True)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_data_prepare)

