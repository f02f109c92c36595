"""`ablate train` and `ablate data`: one local training run, and making token shards.

Also `python -m ablate.trainer ...` (e.g. under `torchrun --nproc_per_node=2 -m ablate.trainer train ...`).
Heavy imports happen inside the commands so that `ablate --help` stays instant.
"""

from __future__ import annotations

import argparse
import shutil
import tomllib
from pathlib import Path
from typing import Any

from ablate.core.states import COMPLETED


def parse_assignments(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """`key=value` pairs; values are read as TOML (1, 0.5, true, "one", [0, 1]) or else as
    text. The one parser of every command's `-s`."""
    from ablate.model.config import ConfigError

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        except RecursionError:
            raise ConfigError(f"{flag} {key.strip()}: value nested too deeply") from None
        out[key.strip()] = value
    return out


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

    from ablate.model.config import ConfigError
    from ablate.trainer.config import TrainConfig
    from ablate.trainer.train import CHECKPOINT_FILE, train

    rank, workers = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    values = parse_assignments(args.set or [])
    values.setdefault("preset", args.preset)
    values.setdefault("data", args.data)
    values.setdefault("out", args.out)
    values.setdefault("workers", workers)  # an identity field (core.fields): the run's own count
    cfg = TrainConfig.from_flat(values)
    ckpt_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    resume = None
    if args.resume:
        resume = Path(args.resume)
        resume = resume / "latest" if (resume / "latest").is_dir() else resume
        ckpt_dir = ckpt_dir or Path(args.resume)
        if not (resume / CHECKPOINT_FILE).is_file() and not resume.is_file():
            raise ConfigError(f"resume: no checkpoint in {args.resume}")
    if ckpt_dir is not None and ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise ConfigError(f"checkpoint-dir: {ckpt_dir} is not a folder")
    out = Path(cfg.out)
    if out.is_dir():
        raise ConfigError(f"out: {out} is a folder; give the curve file to write")
    if out.exists() and resume is None and not args.force:
        raise ConfigError(f"out: {out} exists; refusing to overwrite (use --resume or --force)")
    micro = cfg.micro_steps(workers)  # refuses a batch that does not split over the workers
    if rank == 0:
        from ablate.trainer.memory import describe, estimate_memory
        gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch_cuda())
        print(f"{cfg.tokens_per_step:,} tokens a step = {workers} worker(s) x {micro} micro-step(s) "
              f"x {cfg.micro_tokens_for(workers):,} tokens; estimated peak per "
              f"{'GPU' if gpu else 'worker'}: {describe(estimate_memory(cfg, workers, gpu=gpu))}",
              flush=True)
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


def input_errors() -> tuple[type[Exception], ...]:
    from ablate.model.config import ConfigError
    from ablate.trainer.data import DataError
    return (ConfigError, DataError)


def main(argv: list[str] | None = None) -> int:
    from ablate.results.errors import run_command

    parser = argparse.ArgumentParser(prog="python -m ablate.trainer")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args, input_errors())
