"""What a trial costs beyond its training: a sweep of N tiny trials on the embedded Ray against
the same N trainings run back to back with `torchrun --nproc_per_node=W -m ablate.trainer train`,
then a longer sweep (24 trials by default) to show the warm workers' cost spread over more.

    .venv/bin/python bench/sweep_overhead.py
    .venv/bin/python bench/sweep_overhead.py --trials 6 --long 24

Prints: each run's wall time, the sweep-to-torchrun ratio, and each trial's fixed cost (its
wall time minus its training time): for the first trial of each concurrency slot counted from
the sweep's start (Tune's start-up and the slot's worker group are its), for the later ones
from Tune starting the trial to its last report.
Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
[sweep]
name = "overhead"
data = "{data}"
seeds = {seeds}

[resources]
workers = {workers}

[fixed]
num_iterations = {steps}
val_every = {val_every}
batch_size = 8
val_tokens = 2048

[axes]
extra_embeddings = {embeddings}
"""


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float | None = None,
        stdout: Path | None = None) -> float | None:
    """Wall seconds of a command, or None if it hung past `timeout` (it and the Ray it
    started, all in its own session, are then killed); its output goes to `stdout`."""
    t0 = time.perf_counter()
    sink = stdout.open("w") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=sink,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return time.perf_counter() - t0


def train_seconds(curve: Path) -> float:
    import pyarrow.parquet as pq
    return pq.read_table(curve, columns=["train_time_ms"])["train_time_ms"][-1].as_py() / 1000


def torchrun(configs, args, data: Path, out: Path, env) -> tuple[float, list[float]]:
    total, fixed = 0.0, []
    for i, cfg in enumerate(configs):
        curve = out / f"torchrun-{i}.parquet"
        sets = [f"-s={k}={v}" for k, v in cfg.items()]
        wall = run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.workers}",
                    "-m", "ablate.trainer", "train", "--data", str(data), "--out", str(curve), *sets],
                   env, ROOT)
        assert wall is not None  # no timeout: a failed run exits the bench
        total += wall
        fixed.append(wall - train_seconds(curve))
    return total, fixed


def grid(trials: int, seeds: int) -> tuple[int, int]:
    """(extra-embedding counts, seeds) for `trials` trials: at most 6 counts (0..5), the rest
    in seeds."""
    tables = min(6, max(1, trials // seeds))
    return tables, max(1, trials // tables)


def sweep(args, data: Path, out: Path, env, trials: int) -> tuple[float | None, list[float], list[float]]:
    """Wall seconds of a sweep of `trials` trials, and the fixed costs of its first trials (one
    per slot, counted from the sweep's start: Tune's start-up and the slot's worker group are
    theirs) and of the others (Tune starting the trial to its end), from its --json-log."""
    import json

    spec = out / f"spec-{trials}.toml"
    tables, seeds = grid(trials, args.seeds)
    spec.write_text(SPEC.format(data=data, seeds=seeds, workers=args.workers, steps=args.steps,
                                val_every=args.val_every, embeddings=list(range(tables))))
    storage, log = out / f"sweep-{trials}", out / f"events-{trials}.jsonl"
    wall = run([sys.executable, "-m", "ablate.cli", "sweep", str(spec), "--storage", str(storage),
                "--json-log"], env, ROOT, timeout=args.timeout, stdout=log)
    if wall is None:
        return None, [], []
    started, ended, begun = {}, {}, None
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "sweep_start":
            begun = event["time"]
        elif event["event"] in ("trial_start", "trial_end"):
            (started if event["event"] == "trial_start" else ended)[event["trial_id"]] = event["time"]
    order = [t for t in sorted(started, key=started.__getitem__) if t in ended]
    train = {t: train_seconds(storage / "overhead" / "curves" / f"{t}.parquet") for t in order}
    first = [ended[t] - (begun or started[t]) - train[t] for t in order[:args.slots]]
    later = [ended[t] - started[t] - train[t] for t in order[args.slots:]]
    return wall, first, later


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--long", type=int, default=24, help="trials of the second sweep (0: none)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a sweep counts as hung")
    args = p.parse_args()
    args.slots = max(1, (os.cpu_count() or 1) // args.workers)  # trials at once (1 CPU a worker)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    tables, seeds = grid(args.trials, args.seeds)
    configs = [dict(extra_embeddings=k, seed=s, num_iterations=args.steps, val_every=args.val_every,
                    batch_size=8, val_tokens=2048)
               for k, s in itertools.product(range(tables), range(seeds))]
    with tempfile.TemporaryDirectory(prefix="ablate-bench-") as tmp:
        out = Path(tmp)
        env.setdefault("RAY_TMPDIR", str(out / "ray"))  # private: no other Ray attaches
        data = out / "data"
        run([sys.executable, "-m", "ablate.trainer", "data", "builtin", "--out", str(data)], env, ROOT)
        base, base_fixed = torchrun(configs, args, data, out, env)
        n = len(configs)
        print(f"{n} trials of {args.steps} tiny steps on {args.workers} gloo workers, "
              f"{os.cpu_count()} CPUs ({time.strftime('%Y-%m-%d')})")
        print(f"torchrun back to back: {base:6.1f} s  ({base / n:.1f} s a run, "
              f"fixed cost {statistics.mean(base_fixed):.1f} s a run)")
        for trials in [n] + ([args.long] if args.long else []):
            wall, first, later = sweep(args, data, out, env, trials)
            if wall is None:
                print(f"sweep of {trials}: hung, killed after {args.timeout:.0f} s")
                continue
            ratio = f"ratio {wall / base:4.2f}  " if trials == n else f"{wall / trials:.1f} s a trial  "
            print(f"sweep of {trials:3d} trials: {wall:6.1f} s  {ratio}"
                  f"fixed cost: first trial of a slot {statistics.mean(first):.2f} s, "
                  f"later trials {statistics.mean(later) if later else float('nan'):.2f} s a trial "
                  f"(median {statistics.median(later) if later else float('nan'):.2f} s)")


if __name__ == "__main__":
    main()
